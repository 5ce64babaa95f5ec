"""The gap aid leaves: necessary costs the approved monthly aid does not cover, said on the approval for
referral to publish to charities."""

from __future__ import annotations

import json
import uuid
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import select

from eligibility import assessment, decisions, gaps
from eligibility.models import Determination, messaging
from eligibility.params import catalogue
from shared.clock import Clock
from shared.contracts.intake import ApplicationSubmitted, HouseholdFacts
from tests.conftest import ServiceFactory, api_client, token
from tests.factories import household_facts

D = Decimal


def spending(medical: str = "0", education: str = "0", other: str = "0") -> dict[str, Any]:
    return {"expenditures": {"medical_monthly": medical, "education_monthly": education, "other_rigid_monthly": other}}


def gaps_of(
    household: dict[str, Any], *, income: str, aid: str, members: int = 1, programme: str = "x"
) -> list[gaps.Gap]:
    return gaps.aid_gaps(
        household,
        programme=programme,
        counted_members=members,
        counted_monthly_income=D(income),
        monthly_aid=D(aid),
        standard=D("1650.00"),
        threshold=D("200.00"),
    )


class TestTheRule:
    def test_the_allowance_leaves_a_large_medical_bill_uncovered(self) -> None:
        # Income 500, allowance 1150 brings it to the standard; the 1500 a month of medicine comes out of that.
        (gap,) = gaps_of(spending(medical="1500.00"), income="500.00", aid="1150.00", programme="subsistence_allowance")
        assert (gap.category, gap.monthly_amount) == ("medical", D("1500.00"))
        assert "1500.00" in gap.reason
        assert "subsistence allowance" in gap.reason

    def test_no_necessary_costs_no_gap(self) -> None:
        assert gaps_of(spending(), income="500.00", aid="1150.00") == []
        assert gaps_of({}, income="500.00", aid="1150.00") == []

    def test_a_share_below_the_threshold_is_no_gap(self) -> None:
        assert gaps_of(spending(medical="150.00"), income="500.00", aid="1150.00") == []

    def test_the_shortfall_is_shared_over_the_costs_medical_first(self) -> None:
        found = gaps_of(spending(medical="900.00", education="400.00", other="100.00"), income="500.00", aid="1150.00")
        # 1400 short, shared 900 medical, 400 education, 100 other (below 200: not a need).
        assert [(g.category, g.monthly_amount) for g in found] == [("medical", D("900.00")), ("education", D("400.00"))]

    def test_expenditure_hardship_aid_covers_the_costs_it_deducts(self) -> None:
        # Income 2000 less 800 of medicine leaves 1200: the aid pays the 450 to the standard; nothing is left.
        assert gaps_of(spending(medical="800.00"), income="2000.00", aid="450.00") == []

    def test_costs_beyond_income_leave_what_the_standard_cannot_cover(self) -> None:
        # Medicine of 3000 on an income of 1000: the aid pays the whole standard (1650), 2000 a month stay unpaid.
        (gap,) = gaps_of(spending(medical="3000.00"), income="1000.00", aid="1650.00", programme="expenditure_hardship")
        assert (gap.category, gap.monthly_amount) == ("medical", D("2000.00"))

    def test_the_threshold_is_a_parameter_flagged_unverified(self) -> None:
        found = catalogue().resolve("310115", date(2026, 11, 30))["aid_gap.minimum_monthly"]
        assert found.value == D("200.00")
        assert found.verified is False


def submitted(case_id: str, medical: str) -> ApplicationSubmitted:
    facts = household_facts() | spending(medical=medical)
    return ApplicationSubmitted(
        case_id=case_id,
        region="310115",
        channel="window",
        programmes=["subsistence_allowance"],
        household=HouseholdFacts.model_validate(facts),
        submitted_at=date(2026, 11, 2),
        payee_account="6222021001112223",
        filed_by="window-clerk-1",
    )


async def approved_payload(client: Any, services: ServiceFactory, tmp_path: Path, medical: str) -> dict[str, Any]:
    """Assess, have an officer approve, let the notice run out: the approval event as published."""
    case_id = str(uuid.uuid4())
    async with client.runtime.uow() as uow:
        await assessment.assess_application(uow, submitted(case_id, medical), client.runtime.clock)
        await uow.commit()
    async with client.runtime.sessionmaker() as session:
        allowance = (
            await session.execute(
                select(Determination).where(
                    Determination.case_id == case_id, Determination.programme == "subsistence_allowance"
                )
            )
        ).scalar_one()
    officer = {"Authorization": f"Bearer {token(services.data_dir, 'officer', '310115', 'officer-wang')}"}
    approved = await client.post(f"/v1/determinations/{allowance.determination_id}/approve", headers=officer)
    assert approved.status_code == 200, approved.text
    clock = Clock(tmp_path / "offset")
    clock.advance(timedelta(days=8))
    async with client.runtime.uow() as uow:
        assert await decisions.close_notices_once(uow, clock) == 1
        await uow.commit()
    outbox = messaging.outbox
    async with client.runtime.engine.connect() as conn:
        (payload,) = (
            await conn.execute(
                select(outbox.c.payload).where(
                    outbox.c.kafka_key == case_id, outbox.c.event_type == "eligibility.determination.approved"
                )
            )
        ).scalars()
    return payload if isinstance(payload, dict) else json.loads(payload)


class TestOnTheApproval:
    async def test_an_approved_household_with_a_large_medical_bill_has_its_gap_on_the_approval(
        self, services: ServiceFactory, tmp_path: Path
    ) -> None:
        async with api_client(services, "eligibility") as client:
            payload = await approved_payload(client, services, tmp_path, medical="1500.00")
        (gap,) = payload["gaps"]
        assert (gap["category"], gap["monthly_amount"]) == ("medical", "1500.00")
        assert payload["monthly_amount"] in gap["reason"]  # the aid it was measured against

    async def test_without_necessary_costs_the_approval_has_no_gap(
        self, services: ServiceFactory, tmp_path: Path
    ) -> None:
        async with api_client(services, "eligibility") as client:
            payload = await approved_payload(client, services, tmp_path, medical="0.00")
        assert payload["gaps"] == []
