from __future__ import annotations

import uuid
from datetime import date
from decimal import Decimal

from sqlalchemy import select

from eligibility.models import Determination, Verification, messaging
from shared.contracts.intake import ApplicationSubmitted, HouseholdFacts
from tests.conftest import ServiceFactory, count, deliver_twice, manual
from tests.factories import household_facts


def submitted(case_id: str, wage: str = "500.00") -> ApplicationSubmitted:
    facts = household_facts()
    facts["members"][0]["incomes"][0]["monthly"] = wage
    return ApplicationSubmitted(
        case_id=case_id,
        region="310115",
        channel="window",
        programmes=["subsistence_allowance"],
        household=HouseholdFacts.model_validate(facts),
        submitted_at=date(2021, 8, 15),
        payee_account="6222021001112223",
    )


class TestAssessApplication:
    async def test_delivered_twice_verifies_and_decides_once(self, services: ServiceFactory) -> None:
        async with manual(services, "eligibility") as runtime:
            case_id = str(uuid.uuid4())
            await deliver_twice(runtime, submitted(case_id), key=case_id)
            assert await count(runtime, Verification, Verification.case_id == case_id) == 1
            assert await count(runtime, Determination, Determination.case_id == case_id) == 1
            async with runtime.engine.connect() as conn:
                types = (
                    (
                        await conn.execute(
                            select(messaging.outbox.c.event_type)
                            .where(messaging.outbox.c.kafka_key == case_id)
                            .order_by(messaging.outbox.c.seq)
                        )
                    )
                    .scalars()
                    .all()
                )
            assert types == ["eligibility.verification.completed", "eligibility.determination.proposed"]

    async def test_income_below_the_standard_is_proposed_with_the_gap(self, services: ServiceFactory) -> None:
        async with manual(services, "eligibility") as runtime:
            case_id = str(uuid.uuid4())
            await deliver_twice(runtime, submitted(case_id, wage="500.00"), key=case_id)
            async with runtime.sessionmaker() as session:
                found = (
                    await session.execute(select(Determination).where(Determination.case_id == case_id))
                ).scalar_one()
            assert (found.status, found.outcome) == ("proposed", "grant")  # an officer decides (S5 第二十八条)
            assert found.monthly_amount == Decimal("830.00")  # (1330 - 500) x 1 member, standard of 2021-07-01
            assert found.reasons[0]["source"].startswith("上海市社会救助条例")
            assert found.rule == "rules-engine-v1"

    async def test_income_at_the_standard_is_proposed_for_refusal_with_the_reason(
        self, services: ServiceFactory
    ) -> None:
        async with manual(services, "eligibility") as runtime:
            case_id = str(uuid.uuid4())
            await deliver_twice(runtime, submitted(case_id, wage="1330.00"), key=case_id)
            async with runtime.sessionmaker() as session:
                rows = (await session.execute(select(Determination).where(Determination.case_id == case_id))).scalars()
                found = {d.programme: d for d in rows}
            assert (found["subsistence_allowance"].status, found["subsistence_allowance"].outcome) == (
                "proposed",
                "deny",
            )
            assert found["subsistence_allowance"].reasons[0]["code"] == "income_not_below_standard"
            # One application, all programmes: at the standard it is within the 1.5x margin line.
            assert found["low_income_margin"].outcome == "grant"
            assert set(found) == {"subsistence_allowance", "low_income_margin"}
