from __future__ import annotations

import json
import uuid
from decimal import Decimal

from sqlalchemy import select

from disbursement import service
from disbursement.models import Entitlement, Payment, messaging
from shared.contracts.eligibility import DeterminationApproved
from shared.settings import DEV_SECRET
from shared.signing import SIGNATURE_HEADER, sign
from tests.conftest import ServiceFactory, api_client, count, deliver_twice, manual
from tests.factories import TODAY


def approved(case_id: str, account: str | None = "6222021001112223") -> DeterminationApproved:
    return DeterminationApproved(
        case_id=case_id,
        determination_id=str(uuid.uuid4()),
        programme="subsistence_allowance",
        region="310115",
        decided_on=TODAY,
        monthly_amount=Decimal("830.00"),
        payee_account=account,
    )


class TestOpenEntitlement:
    async def test_delivered_twice_opens_one_entitlement_and_one_payment(self, services: ServiceFactory) -> None:
        async with manual(services, "disbursement") as runtime:
            case_id = str(uuid.uuid4())
            await deliver_twice(runtime, approved(case_id), key=case_id)
            assert await count(runtime, Entitlement, Entitlement.case_id == case_id) == 1
            assert await count(runtime, Payment, Payment.case_id == case_id) == 1
            assert await count(runtime, messaging.outbox, messaging.outbox.c.kafka_key == case_id) == 1
            async with runtime.sessionmaker() as session:
                payment = (await session.execute(select(Payment).where(Payment.case_id == case_id))).scalar_one()
            assert payment.period == "2026-12"  # the month after approval
            assert payment.amount == Decimal("830.00")
            assert payment.status == "pending"

    async def test_without_a_payee_account_the_payment_is_held(self, services: ServiceFactory) -> None:
        async with manual(services, "disbursement") as runtime:
            case_id = str(uuid.uuid4())
            await deliver_twice(runtime, approved(case_id, account=None), key=case_id)
            async with runtime.sessionmaker() as session:
                payment = (await session.execute(select(Payment).where(Payment.case_id == case_id))).scalar_one()
            assert payment.status == "held"
            assert await count(runtime, messaging.outbox, messaging.outbox.c.kafka_key == case_id) == 0


async def _payment(client: object, case_id: str) -> Payment:
    runtime = client.runtime  # type: ignore[attr-defined]
    async with runtime.uow() as uow:
        await service.open_entitlement(uow, approved(case_id))
        await uow.commit()
    async with runtime.sessionmaker() as session:
        return (await session.execute(select(Payment).where(Payment.case_id == case_id))).scalar_one()


def _signed(body: dict[str, str], secret: str = DEV_SECRET) -> tuple[bytes, dict[str, str]]:
    raw = json.dumps(body).encode()
    return raw, {SIGNATURE_HEADER: sign(secret, raw), "Content-Type": "application/json"}


class TestBankCallback:
    async def test_a_bad_signature_is_refused_with_401_and_changes_nothing(self, services: ServiceFactory) -> None:
        async with api_client(services, "disbursement") as client:
            payment = await _payment(client, str(uuid.uuid4()))
            body = {"payment_id": payment.payment_id, "bank_reference": "R1", "status": "settled"}
            for headers in ({}, _signed(body, secret="not-the-secret")[1]):
                raw = json.dumps(body).encode()
                response = await client.post("/v1/bank/callbacks", content=raw, headers=headers)
                assert response.status_code == 401
                assert response.headers["content-type"] == "application/problem+json"
            async with client.runtime.sessionmaker() as session:
                assert (await session.get(Payment, payment.payment_id)).status == "pending"

    async def test_duplicate_and_late_callbacks_change_nothing(self, services: ServiceFactory) -> None:
        async with api_client(services, "disbursement") as client:
            case_id = str(uuid.uuid4())
            payment = await _payment(client, case_id)
            settled = {"payment_id": payment.payment_id, "bank_reference": "R1", "status": "settled"}
            for _ in range(2):
                raw, headers = _signed(settled)
                response = await client.post("/v1/bank/callbacks", content=raw, headers=headers)
                assert response.status_code == 200
                assert response.json()["status"] == "settled"
            late_failure = {"payment_id": payment.payment_id, "bank_reference": "R1", "status": "failed"}
            raw, headers = _signed(late_failure)
            assert (await client.post("/v1/bank/callbacks", content=raw, headers=headers)).json()["status"] == "settled"
            outbox = messaging.outbox
            assert (
                await count(
                    client.runtime,
                    outbox,
                    outbox.c.kafka_key == case_id,
                    outbox.c.event_type == "disbursement.payment.settled",
                )
                == 1
            )
            assert (
                await count(
                    client.runtime,
                    outbox,
                    outbox.c.kafka_key == case_id,
                    outbox.c.event_type == "disbursement.payment.failed",
                )
                == 0
            )

    async def test_a_callback_for_an_unknown_payment_is_404(self, services: ServiceFactory) -> None:
        async with api_client(services, "disbursement") as client:
            raw, headers = _signed({"payment_id": "nope", "bank_reference": "R", "status": "settled"})
            assert (await client.post("/v1/bank/callbacks", content=raw, headers=headers)).status_code == 404


class TestTemporaryFailures:
    async def test_a_temporary_failure_is_retried_later_then_given_up_after_the_bound(
        self, services: ServiceFactory
    ) -> None:
        from datetime import UTC, datetime

        from sqlalchemy import update

        async with api_client(services, "disbursement", submit_max_attempts=3) as client:
            case_id = str(uuid.uuid4())
            payment = await _payment(client, case_id)
            temporary = {
                "payment_id": payment.payment_id,
                "bank_reference": "R1",
                "status": "failed",
                "temporary": True,
                "reason": "bank system temporarily unavailable",
            }
            for attempt in (1, 2):
                async with client.runtime.engine.begin() as conn:  # the submitter sent it (attempt n)
                    await conn.execute(
                        update(Payment)
                        .where(Payment.payment_id == payment.payment_id)
                        .values(status="submitted", attempts=attempt)
                    )
                raw, headers = _signed(temporary)
                assert (await client.post("/v1/bank/callbacks", content=raw, headers=headers)).json()[
                    "status"
                ] == "pending"
                async with client.runtime.sessionmaker() as session:
                    retried = await session.get(Payment, payment.payment_id)
                assert retried.next_attempt_at > datetime.now(UTC)
                assert retried.last_error.startswith("temporary")
            async with client.runtime.engine.begin() as conn:
                await conn.execute(
                    update(Payment)
                    .where(Payment.payment_id == payment.payment_id)
                    .values(status="submitted", attempts=3)
                )
            raw, headers = _signed(temporary)
            assert (await client.post("/v1/bank/callbacks", content=raw, headers=headers)).json()["status"] == "failed"
            outbox = messaging.outbox
            assert (
                await count(
                    client.runtime,
                    outbox,
                    outbox.c.kafka_key == case_id,
                    outbox.c.event_type == "disbursement.payment.failed",
                )
                == 1
            )
