"""An approval whose monthly aid leaves a gap (a large medical bill, say) publishes a need for it, once per
case and category, shown like any other need."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from referral import service
from referral.models import Need, messaging
from shared.contracts.eligibility import AidGap, DeterminationApproved, DeterminationDenied
from tests.conftest import ServiceFactory, count, deliver_twice, manual
from tests.factories import TODAY

REASON = "medical costs of 1500.00 a month leave 1500.00 a month uncovered after the 1150.00 a month of aid"


def approved(case_id: str, gaps: list[AidGap], programme: str = "subsistence_allowance") -> DeterminationApproved:
    return DeterminationApproved(
        case_id=case_id,
        determination_id=str(uuid.uuid4()),
        programme=programme,
        region="310115",
        decided_on=TODAY,
        monthly_amount=Decimal("1150.00"),
        gaps=gaps,
    )


async def needs_of(runtime: Any, case_id: str) -> dict[str, Need]:
    async with runtime.sessionmaker() as session:
        return {n.category: n for n in (await session.execute(select(Need).where(Need.case_id == case_id))).scalars()}


async def test_an_approval_with_a_gap_delivered_twice_publishes_one_need_for_it(services: ServiceFactory) -> None:
    async with manual(services, "referral") as runtime:
        case_id = str(uuid.uuid4())
        event = approved(case_id, [AidGap(category="medical", monthly_amount=Decimal("1500.00"), reason=REASON)])
        await deliver_twice(runtime, event, key=case_id)
        needs = await needs_of(runtime, case_id)
        assert list(needs) == ["medical"]
        need = needs["medical"]
        assert (need.status, need.amount, need.reason, need.determination_id, need.area) == (
            "published",
            Decimal("1500.00"),
            REASON,
            event.determination_id,
            "310115",
        )
        outbox = messaging.outbox
        async with runtime.engine.connect() as conn:
            (payload,) = (await conn.execute(select(outbox.c.payload).where(outbox.c.kafka_key == case_id))).scalars()
        published = payload if isinstance(payload, dict) else json.loads(payload)
        assert (published["category"], published["amount"], published["reason"]) == ("medical", "1500.00", REASON)


async def test_an_approval_without_a_gap_publishes_nothing(services: ServiceFactory) -> None:
    async with manual(services, "referral") as runtime:
        case_id = str(uuid.uuid4())
        await deliver_twice(runtime, approved(case_id, []), key=case_id)
        assert await count(runtime, Need, Need.case_id == case_id) == 0


async def test_a_category_the_case_already_has_is_not_published_again(services: ServiceFactory) -> None:
    """Refused one programme (a medical need published) and granted another whose aid leaves a medical and an
    education gap: only the education need is new."""
    async with manual(services, "referral") as runtime:
        case_id = str(uuid.uuid4())
        refusal = DeterminationDenied(
            case_id=case_id,
            determination_id=str(uuid.uuid4()),
            programme="temporary_aid",
            region="310115",
            decided_on=TODAY,
            need_categories=["medical", "food"],
        )
        async with runtime.uow() as uow:
            await service.publish_need_for_denial(uow, refusal)
            await uow.commit()
        gaps = [
            AidGap(category="medical", monthly_amount=Decimal("900.00"), reason="medical"),
            AidGap(category="education", monthly_amount=Decimal("400.00"), reason="education"),
        ]
        await deliver_twice(runtime, approved(case_id, gaps), key=case_id)
        needs = await needs_of(runtime, case_id)
        assert sorted(needs) == ["education", "food", "medical"]
        assert needs["medical"].determination_id == refusal.determination_id
        assert needs["education"].amount == Decimal("400.00")
