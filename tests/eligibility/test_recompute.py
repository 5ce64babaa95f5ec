"""A new standard from a date: approved monthly amounts are computed again and changed from its month."""

from __future__ import annotations

import uuid
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from eligibility.models import Determination, Verification, messaging
from eligibility.recompute import effective_period, recompute
from shared.db.base import utcnow
from tests.conftest import ServiceFactory, manual
from tests.factories import household_facts


def test_the_new_amount_is_paid_from_the_month_the_standard_applies() -> None:
    assert effective_period(date(2024, 7, 1)) == "2024-07"
    assert effective_period(date(2024, 7, 15)) == "2024-08"  # a month is paid at one amount
    assert effective_period(date(2024, 12, 2)) == "2025-01"


async def approved(runtime: Any, wage: str, monthly: str, programme: str = "subsistence_allowance") -> str:
    facts = household_facts()
    facts["members"][0]["incomes"] = [{"kind": "wage", "monthly": wage}]
    case_id = str(uuid.uuid4())
    async with runtime.uow() as uow:
        uow.session.add(
            Verification(
                verification_id=str(uuid.uuid4()),
                case_id=case_id,
                region="310115",
                community=None,
                sources=["declared"],
                household=facts,
                counted_members=1,
                counted_monthly_income=Decimal(wage),
                per_capita_monthly_income=Decimal(wage),
                completed_at=utcnow(),
            )
        )
        uow.session.add(
            Determination(
                determination_id=str(uuid.uuid4()),
                case_id=case_id,
                programme=programme,
                region="310115",
                status="approved",
                payment_kind="monthly",
                monthly_amount=Decimal(monthly),
                reasons=[],
                rule="t",
                decided_on=date(2024, 3, 10),
                created_at=utcnow(),
            )
        )
        await uow.commit()
    return case_id


async def test_a_new_standard_changes_approved_amounts_from_its_month_once(services: ServiceFactory) -> None:
    """Pudong's standard is 1,510 until 30 June 2024 and 1,595 from 1 July: a household of one with a wage of
    1,000 was paid 510.00 and is paid 595.00 from 2024-07."""
    async with manual(services, "eligibility") as runtime:
        case_id = await approved(runtime, "1000.00", "510.00")
        async with runtime.uow() as uow:
            before = await recompute(uow, date(2024, 6, 1))
        assert (before["changed"], before["unchanged"]) == (0, 1), before  # the old standard gives what is paid
        async with runtime.uow() as uow:
            after = await recompute(uow, date(2024, 7, 1))
        assert (after["changed"], after["from_period"]) == (1, "2024-07"), after
        async with runtime.sessionmaker() as session:
            determination = (
                await session.execute(select(Determination).where(Determination.case_id == case_id))
            ).scalar_one()
        assert determination.monthly_amount == Decimal("595.00")
        assert determination.reasons[-1]["code"] == "standard_changed"
        assert "595.00" in determination.reasons[-1]["text"]
        assert "510.00" in determination.reasons[-1]["text"]
        assert determination.reasons[0]["code"] == "income_below_standard"  # the engine's reasons, in full
        assert determination.reasons[0]["source"]
        outbox = messaging.outbox
        async with runtime.engine.connect() as conn:
            rows = (
                await conn.execute(select(outbox.c.event_type, outbox.c.payload).where(outbox.c.kafka_key == case_id))
            ).all()
        assert [(t, p["from_period"], p["previous_monthly_amount"], p["monthly_amount"]) for t, p in rows] == [
            ("eligibility.determination.changed", "2024-07", "510.00", "595.00")
        ]
        async with runtime.uow() as uow:
            again = await recompute(uow, date(2024, 7, 1))
        assert (again["changed"], again["unchanged"]) == (0, 1)  # safe to run again


async def test_a_household_the_new_rules_no_longer_qualify_is_left_for_a_review(services: ServiceFactory) -> None:
    """A wage of 1,600 is above both standards: recompute does not stop the aid (a review decides), it says
    so."""
    async with manual(services, "eligibility") as runtime:
        case_id = await approved(runtime, "1600.00", "100.00")
        async with runtime.uow() as uow:
            report = await recompute(uow, date(2024, 7, 1))
        assert report["review_needed"] == 1, report
        async with runtime.sessionmaker() as session:
            determination = (
                await session.execute(select(Determination).where(Determination.case_id == case_id))
            ).scalar_one()
        assert (determination.status, determination.monthly_amount) == ("approved", Decimal("100.00"))
