"""Cross-region attempts in the other services: a record outside the caller's region answers 404."""

from __future__ import annotations

import uuid
from datetime import date
from decimal import Decimal

import pytest
from sqlalchemy import select

from tests.conftest import ServiceFactory, api_client, token


def bearer(services: ServiceFactory, role: str, region: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(services.data_dir, role, region)}"}


@pytest.mark.parametrize(("region", "status"), [("310115", 200), ("310000", 200), ("310112", 404), ("330000", 404)])
async def test_a_determination_outside_the_region_is_404(services: ServiceFactory, region: str, status: int) -> None:
    from eligibility import assessment
    from eligibility.models import Determination
    from shared.contracts.intake import ApplicationSubmitted, HouseholdFacts
    from tests.factories import household_facts

    async with api_client(services, "eligibility") as client:
        case_id = str(uuid.uuid4())
        async with client.runtime.uow() as uow:
            await assessment.assess_application(
                uow,
                ApplicationSubmitted(
                    case_id=case_id,
                    region="310115",
                    channel="window",
                    programmes=[],
                    household=HouseholdFacts.model_validate(household_facts()),
                    submitted_at=date(2021, 8, 15),
                ),
                client.runtime.clock,
            )
            await uow.commit()
        async with client.runtime.sessionmaker() as session:
            determination_id = (
                (await session.execute(select(Determination.determination_id).where(Determination.case_id == case_id)))
                .scalars()
                .first()
            )
        response = await client.get(
            f"/v1/determinations/{determination_id}", headers=bearer(services, "officer", region)
        )
        assert response.status_code == status
        # Deciding is scoped the same way: an officer of another district cannot approve it.
        approve = await client.post(
            f"/v1/determinations/{determination_id}/approve", headers=bearer(services, "officer", region)
        )
        assert approve.status_code == status, approve.text


@pytest.mark.parametrize(("region", "status"), [("310115", 200), ("000000", 200), ("310113", 404)])
async def test_a_payment_outside_the_region_is_404(services: ServiceFactory, region: str, status: int) -> None:
    from disbursement import service
    from disbursement.models import Payment
    from shared.contracts.eligibility import DeterminationApproved

    async with api_client(services, "disbursement") as client:
        case_id = str(uuid.uuid4())
        async with client.runtime.uow() as uow:
            await service.open_entitlement(
                uow,
                DeterminationApproved(
                    case_id=case_id,
                    determination_id=str(uuid.uuid4()),
                    programme="subsistence_allowance",
                    region="310115",
                    decided_on=date(2026, 1, 5),
                    monthly_amount=Decimal("500.00"),
                    payee_account="6222021001112223",
                ),
            )
            await uow.commit()
        async with client.runtime.sessionmaker() as session:
            payment_id = (
                await session.execute(select(Payment.payment_id).where(Payment.case_id == case_id))
            ).scalar_one()
        response = await client.get(f"/v1/payments/{payment_id}", headers=bearer(services, "reconciler", region))
        assert response.status_code == status
