"""Needs say whether the household agreed that the charity holding them may have its contact (from intake;
referral holds none), and stop saying so when it withdraws that consent."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from referral import offers, service
from referral.models import KnownCase, Need, messaging
from shared.contracts.eligibility import DeterminationDenied
from shared.contracts.intake import ApplicationSubmitted, ContactConsentWithdrawn, HouseholdFacts
from tests.conftest import ServiceFactory, api_client, deliver_twice, manual, token
from tests.factories import TODAY, household_facts

FEDERATION = "pudong-charity-federation"


def submitted(consent: bool, case_id: str | None = None) -> ApplicationSubmitted:
    return ApplicationSubmitted(
        case_id=case_id or str(uuid.uuid4()),
        region="310115",
        street="310115001",
        community="310115001001",
        channel="window",
        programmes=[],
        household=HouseholdFacts.model_validate(household_facts()),
        submitted_at=date(2026, 11, 22),
        charity_contact_consent=consent,
    )


def denied(case_id: str) -> DeterminationDenied:
    return DeterminationDenied(
        case_id=case_id,
        determination_id=str(uuid.uuid4()),
        programme="subsistence_allowance",
        region="310115",
        decided_on=TODAY,
        monthly_amount=Decimal("0.00"),
        need_categories=["food"],
    )


async def run(runtime: Any, step: Any) -> None:
    async with runtime.uow() as uow:
        await step(uow)
        await uow.commit()


async def needs_of(runtime: Any, case_id: str) -> list[Need]:
    async with runtime.sessionmaker() as session:
        return list((await session.execute(select(Need).where(Need.case_id == case_id))).scalars())


async def published_payloads(runtime: Any) -> list[dict[str, Any]]:
    outbox = messaging.outbox
    async with runtime.engine.connect() as conn:
        rows = await conn.execute(select(outbox.c.payload).where(outbox.c.event_type == "referral.need.published"))
        return [p if isinstance(p, dict) else json.loads(p) for (p,) in rows]


async def test_a_consenting_households_need_says_so_and_no_contact_travels(services: ServiceFactory) -> None:
    async with api_client(services, "referral") as client:
        consenting, silent = submitted(True), submitted(False)
        for application in (consenting, silent):
            await run(client.runtime, lambda uow, a=application: offers.remember_case(uow, a))
            await run(
                client.runtime, lambda uow, a=application: service.publish_need_for_denial(uow, denied(a.case_id))
            )
        headers = {"Authorization": f"Bearer {token(services.data_dir, 'charity', '310115', FEDERATION)}"}
        listed = {n["need_id"]: n for n in (await client.get("/v1/needs", headers=headers)).json()["items"]}
        (mine,) = await needs_of(client.runtime, consenting.case_id)
        (theirs,) = await needs_of(client.runtime, silent.case_id)
        assert (listed[mine.need_id]["consented"], listed[theirs.need_id]["consented"]) == (True, False)
        payloads = {p["need_id"]: p for p in await published_payloads(client.runtime)}
        assert (payloads[mine.need_id]["consented"], payloads[theirs.need_id]["consented"]) == (True, False)
        assert not {"name", "phone", "id_number", "contact_phone"} & set(payloads[mine.need_id])


async def test_a_need_published_before_the_application_arrived_learns_the_consent(services: ServiceFactory) -> None:
    async with api_client(services, "referral") as client:
        application = submitted(True)
        await run(client.runtime, lambda uow: service.publish_need_for_denial(uow, denied(application.case_id)))
        assert [n.consented for n in await needs_of(client.runtime, application.case_id)] == [False]
        await run(client.runtime, lambda uow: offers.remember_case(uow, application))
        assert [n.consented for n in await needs_of(client.runtime, application.case_id)] == [True]


async def test_a_withdrawal_delivered_twice_unmarks_the_households_needs(services: ServiceFactory) -> None:
    async with manual(services, "referral") as runtime:
        application = submitted(True)
        await run(runtime, lambda uow: offers.remember_case(uow, application))
        await run(runtime, lambda uow: service.publish_need_for_denial(uow, denied(application.case_id)))
        other = submitted(True)
        await run(runtime, lambda uow: offers.remember_case(uow, other))
        await run(runtime, lambda uow: service.publish_need_for_denial(uow, denied(other.case_id)))
        event = ContactConsentWithdrawn(case_id=application.case_id, region="310115", withdrawn_at=datetime.now(UTC))
        await deliver_twice(runtime, event, key=application.case_id)
        assert [n.consented for n in await needs_of(runtime, application.case_id)] == [False]
        assert [n.consented for n in await needs_of(runtime, other.case_id)] == [True]  # another household's stand
        async with runtime.sessionmaker() as session:
            assert (await session.get(KnownCase, application.case_id)).contact_consent is False  # type: ignore[union-attr]
