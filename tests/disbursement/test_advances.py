"""Advances: an emergency's "aid first" amount paid before verification finished, then confirmed (a benefit
like any other) or flagged (owed back until an officer records it recovered or waived). The ledger
balances after every step and what is owed is read from it."""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from disbursement import ledger, service
from disbursement.models import Entitlement, LedgerTransaction, Payment, messaging
from shared.contracts.eligibility import DeterminationApproved, DeterminationConfirmed, DeterminationFlagged
from shared.settings import DEV_SECRET
from shared.signing import SIGNATURE_HEADER, sign
from tests.conftest import ServiceFactory, api_client, count, deliver_twice
from tests.factories import TODAY

AMOUNT = Decimal("1200.00")


@contextlib.asynccontextmanager
async def officer(services: ServiceFactory, role: str = "officer") -> AsyncIterator[Any]:
    """The service's API as an officer, with a producer so events can also be delivered through its consumer."""
    from shared.messaging.kafka import make_producer

    async with api_client(services, "disbursement", role=role) as client:
        producer = make_producer(client.runtime.settings.kafka_bootstrap_servers)
        await producer.start()
        client.runtime.producer = producer
        try:
            yield client
        finally:
            await producer.stop()


def advance(case_id: str) -> DeterminationApproved:
    return DeterminationApproved(
        case_id=case_id,
        determination_id=str(uuid.uuid4()),
        programme="temporary_aid",
        region="310115",
        decided_on=TODAY,
        amount=AMOUNT,
        payment_kind="one_off",
        payee_account="6222021001112223",
        advance=True,
    )


def verdict(grant: DeterminationApproved, kind: type[Any], **extra: Any) -> Any:
    fields = grant.model_dump()
    for name in ("payment_kind", "payee_account", "review_due", "advance"):
        fields.pop(name, None)
    return kind(**fields, **extra)


def flagged(grant: DeterminationApproved) -> DeterminationFlagged:
    return verdict(grant, DeterminationFlagged, recoverable_amount=AMOUNT)


async def open_advance(client: Any, case_id: str) -> tuple[DeterminationApproved, Payment]:
    grant = advance(case_id)
    async with client.runtime.uow() as uow:
        await service.open_entitlement(uow, grant)
        await uow.commit()
    async with client.runtime.sessionmaker() as session:
        payment = (await session.execute(select(Payment).where(Payment.case_id == case_id))).scalar_one()
    return grant, payment


async def bank_says(client: Any, payment: Payment, status: str) -> None:
    raw = json.dumps({"payment_id": payment.payment_id, "bank_reference": "R1", "status": status}).encode()
    headers = {SIGNATURE_HEADER: sign(DEV_SECRET, raw), "Content-Type": "application/json"}
    response = await client.post("/v1/bank/callbacks", content=raw, headers=headers)
    assert response.status_code == 200, response.text


async def submitted(client: Any, payment: Payment) -> None:
    async with client.runtime.sessionmaker.begin() as session:
        (await session.get(Payment, payment.payment_id)).status = "submitted"


async def accounts(client: Any, case_id: str) -> dict[str, Decimal]:
    """Each account's balance for the case, and the whole ledger's trial balance checked on the way."""
    async with client.runtime.sessionmaker() as session:
        debits, credits = await ledger.trial_balance(session)
        assert debits == credits
        found = await ledger.accounts(session, ledger.LedgerEntry.case_id == case_id)
    return {name: Decimal(value) for name, value in found.items() if Decimal(value) != 0}


async def advance_status(client: Any, case_id: str) -> str | None:
    async with client.runtime.sessionmaker() as session:
        entitlement = (await session.execute(select(Entitlement).where(Entitlement.case_id == case_id))).scalar_one()
    assert entitlement.kind == "advance"
    return entitlement.advance_status


async def events(client: Any, case_id: str) -> list[str]:
    outbox = messaging.outbox
    async with client.runtime.engine.connect() as conn:
        rows = await conn.execute(
            select(outbox.c.event_type).where(outbox.c.kafka_key == case_id).order_by(outbox.c.seq)
        )
        return [t.removeprefix("disbursement.payment.") for t in rows.scalars()]


async def test_a_settled_advance_sits_apart_until_verification_confirms_it(services: ServiceFactory) -> None:
    async with officer(services) as client:
        case_id = str(uuid.uuid4())
        grant, payment = await open_advance(client, case_id)
        assert payment.status == "pending"  # paid at once, not from next month's run
        await bank_says(client, payment, "settled")
        assert await accounts(client, case_id) == {"advances_outstanding": AMOUNT, "fund_bank": -AMOUNT}
        await deliver_twice(client.runtime, verdict(grant, DeterminationConfirmed), key=case_id)
        assert await accounts(client, case_id) == {"benefits_paid": AMOUNT, "fund_bank": -AMOUNT}
        assert await advance_status(client, case_id) == "confirmed"
        # Delivered twice, moved once.
        assert await count(client.runtime, LedgerTransaction, LedgerTransaction.kind == "reclassification") == 1


async def test_flagged_before_the_bank_had_it_the_instruction_is_cancelled_and_nothing_is_owed(
    services: ServiceFactory,
) -> None:
    async with officer(services) as client:
        case_id = str(uuid.uuid4())
        grant, payment = await open_advance(client, case_id)
        await deliver_twice(client.runtime, flagged(grant), key=case_id)
        async with client.runtime.sessionmaker() as session:
            assert (await session.get(Payment, payment.payment_id)).status == "cancelled"
        assert await advance_status(client, case_id) == "cancelled"
        assert await accounts(client, case_id) == {}
        assert await events(client, case_id) == ["instructed", "cancelled"]
        response = await client.post(
            f"/v1/advances/{grant.determination_id}/recovery", json={"outcome": "recovered", "note": "receipt 1"}
        )
        assert response.status_code == 409
        assert "cancelled" in response.json()["detail"]


async def test_flagged_after_settlement_is_owed_back_until_an_officer_records_it_recovered(
    services: ServiceFactory,
) -> None:
    async with officer(services) as client:
        case_id = str(uuid.uuid4())
        grant, payment = await open_advance(client, case_id)
        await bank_says(client, payment, "settled")
        await deliver_twice(client.runtime, flagged(grant), key=case_id)
        assert await advance_status(client, case_id) == "recovery"
        assert await accounts(client, case_id) == {"recoveries_receivable": AMOUNT, "fund_bank": -AMOUNT}
        owed = (await client.get("/v1/advances", params={"status": "recovery"})).json()["advances"]
        assert [(a["case_id"], a["owed"]) for a in owed] == [(case_id, "1200.00")]

        response = await client.post(
            f"/v1/advances/{grant.determination_id}/recovery", json={"outcome": "recovered", "note": "receipt 0042"}
        )
        assert response.status_code == 200, response.text
        assert (response.json()["status"], response.json()["owed"]) == ("recovered", "0.00")
        assert await accounts(client, case_id) == {}  # the money is back in the fund's account
        again = await client.post(
            f"/v1/advances/{grant.determination_id}/recovery", json={"outcome": "waived", "note": "twice"}
        )
        assert again.status_code == 409
        assert await events(client, case_id) == ["instructed", "settled", "recovery_opened", "recovery_closed"]
        assert (await client.get("/v1/advances", params={"status": "recovery"})).json()["advances"] == []


async def test_flagged_while_at_the_bank_a_late_settlement_is_owed_and_can_be_waived(
    services: ServiceFactory,
) -> None:
    async with officer(services) as client:
        case_id = str(uuid.uuid4())
        grant, payment = await open_advance(client, case_id)
        await submitted(client, payment)
        await deliver_twice(client.runtime, flagged(grant), key=case_id)
        early = await client.post(
            f"/v1/advances/{grant.determination_id}/recovery", json={"outcome": "waived", "note": "hardship"}
        )
        assert early.status_code == 409  # nothing is owed until the bank has paid
        await bank_says(client, payment, "settled")
        assert await accounts(client, case_id) == {"recoveries_receivable": AMOUNT, "fund_bank": -AMOUNT}
        response = await client.post(
            f"/v1/advances/{grant.determination_id}/recovery", json={"outcome": "waived", "note": "hardship"}
        )
        assert response.status_code == 200, response.text
        assert await accounts(client, case_id) == {"benefits_paid": AMOUNT, "fund_bank": -AMOUNT}


async def test_flagged_while_at_the_bank_then_failed_there_closes_with_nothing_owed(
    services: ServiceFactory,
) -> None:
    async with officer(services) as client:
        case_id = str(uuid.uuid4())
        grant, payment = await open_advance(client, case_id)
        await submitted(client, payment)
        await deliver_twice(client.runtime, flagged(grant), key=case_id)
        await bank_says(client, payment, "failed")
        assert await advance_status(client, case_id) == "not_paid"
        assert await accounts(client, case_id) == {}
        assert await events(client, case_id) == ["instructed", "recovery_opened", "failed", "recovery_closed"]


async def test_a_returned_advance_under_recovery_is_recovered_by_the_bank(services: ServiceFactory) -> None:
    async with officer(services) as client:
        case_id = str(uuid.uuid4())
        grant, payment = await open_advance(client, case_id)
        await bank_says(client, payment, "settled")
        await deliver_twice(client.runtime, flagged(grant), key=case_id)
        await bank_says(client, payment, "returned")
        assert await advance_status(client, case_id) == "recovered"
        assert await accounts(client, case_id) == {}


async def test_an_ordinary_grant_is_not_an_advance_and_ignores_a_stray_verdict(services: ServiceFactory) -> None:
    async with officer(services) as client:
        case_id = str(uuid.uuid4())
        grant = advance(case_id).model_copy(update={"advance": False})
        async with client.runtime.uow() as uow:
            await service.open_entitlement(uow, grant)
            await uow.commit()
        async with client.runtime.sessionmaker() as session:
            payment = (await session.execute(select(Payment).where(Payment.case_id == case_id))).scalar_one()
            entitlement = await session.get(Entitlement, payment.entitlement_id)
        assert (entitlement.kind, entitlement.advance_status) == ("one_off", None)
        await bank_says(client, payment, "settled")
        await deliver_twice(client.runtime, flagged(grant), key=case_id)
        assert await accounts(client, case_id) == {"benefits_paid": AMOUNT, "fund_bank": -AMOUNT}
        response = await client.post(
            f"/v1/advances/{grant.determination_id}/recovery", json={"outcome": "waived", "note": "x"}
        )
        assert response.status_code == 404
