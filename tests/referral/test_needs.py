"""A denial publishes a need for each kind of help the household's situation points to, each once per case."""

from __future__ import annotations

import uuid
from decimal import Decimal

from sqlalchemy import select

from referral import service
from referral.models import Need, messaging
from shared.contracts.eligibility import DeterminationDenied
from tests.conftest import ServiceFactory, api_client, count
from tests.factories import TODAY


def denied(case_id: str, categories: list[str]) -> DeterminationDenied:
    return DeterminationDenied(
        case_id=case_id,
        determination_id=str(uuid.uuid4()),
        programme="subsistence_allowance",
        region="310115",
        decided_on=TODAY,
        monthly_amount=Decimal("0.00"),
        need_categories=categories,
    )


async def test_a_need_per_category_once_per_case(services: ServiceFactory) -> None:
    async with api_client(services, "referral") as client:
        case_id = str(uuid.uuid4())
        for event in (denied(case_id, ["medical", "elderly", "food"]), denied(case_id, ["medical", "food"])):
            async with client.runtime.uow() as uow:  # two programmes refused: the second adds nothing
                await service.publish_need_for_denial(uow, event)
                await uow.commit()
        async with client.runtime.sessionmaker() as session:
            categories = (await session.execute(select(Need.category).where(Need.case_id == case_id))).scalars()
            assert sorted(categories) == ["elderly", "food", "medical"]
        outbox = messaging.outbox
        assert await count(client.runtime, outbox, outbox.c.event_type == "referral.need.published") == 3


async def test_a_denial_without_categories_publishes_a_need_for_basic_living(services: ServiceFactory) -> None:
    async with api_client(services, "referral") as client:
        case_id = str(uuid.uuid4())
        async with client.runtime.uow() as uow:
            await service.publish_need_for_denial(uow, denied(case_id, []))
            await uow.commit()
        async with client.runtime.sessionmaker() as session:
            assert list((await session.execute(select(Need.category).where(Need.case_id == case_id))).scalars()) == [
                "food"
            ]
