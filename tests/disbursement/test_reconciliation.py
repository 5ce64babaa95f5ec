"""Nightly reconciliation finds each kind of mismatch planted on purpose, and nothing when there is none."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import httpx
from sqlalchemy import select

from disbursement import payment_run, service
from disbursement.bank import BankClient
from disbursement.models import Payment
from disbursement.reconciliation import reconcile
from sandbox_bank.app import BankPayment, BankSettings, PaymentOrder, create_app
from shared.auth import Principal
from shared.contracts.eligibility import DeterminationApproved
from shared.settings import DEV_SECRET
from shared.signing import SIGNATURE_HEADER, sign
from tests.conftest import ServiceFactory, api_client

TODAY = datetime.now(UTC).date()


class World:
    """The disbursement service (through its API) and a sandbox bank whose statement the test writes."""

    def __init__(self, client: Any, services: ServiceFactory) -> None:
        self.client = client
        self.bank_app = create_app(BankSettings(callback_delay_seconds=3600))
        self.bank = self.bank_app.state.bank
        self.adapter = BankClient(services.settings("disbursement"), transport=httpx.ASGITransport(app=self.bank_app))

    async def payment(self, amount: str = "500.00") -> Payment:
        case_id = str(uuid.uuid4())
        async with self.client.runtime.uow() as uow:
            await service.open_entitlement(
                uow,
                DeterminationApproved(
                    case_id=case_id,
                    determination_id=str(uuid.uuid4()),
                    programme="subsistence_allowance",
                    region="310115",
                    decided_on=date(2026, 1, 10),
                    monthly_amount=Decimal(amount),
                    payee_account="6222021001112223",
                ),
            )
            await uow.commit()
        async with self.client.runtime.sessionmaker() as session:
            return (await session.execute(select(Payment).where(Payment.case_id == case_id))).scalar_one()

    def bank_books(self, payment: Payment, status: str = "settled", amount: str | None = None) -> None:
        order = PaymentOrder(
            payment_id=payment.payment_id,
            amount=Decimal(amount or str(payment.amount)),
            account="6222021001112223",
            callback_url="http://nowhere",
        )
        self.bank.book(BankPayment(order=order, reference="SBX1"), status)

    async def we_hear(self, payment: Payment, status: str = "settled") -> None:
        raw = json.dumps({"payment_id": payment.payment_id, "bank_reference": "SBX1", "status": status}).encode()
        response = await self.client.post(
            "/v1/bank/callbacks",
            content=raw,
            headers={SIGNATURE_HEADER: sign(DEV_SECRET, raw), "Content-Type": "application/json"},
        )
        assert response.status_code == 200

    async def reconcile(self) -> dict[str, Any]:
        async with self.client.runtime.uow() as uow:
            found = await reconcile(uow, self.adapter, TODAY)
            await uow.commit()
        response = await self.client.get(f"/v1/reconciliations/{TODAY.isoformat()}")
        assert response.status_code == 200
        report = response.json()
        assert report["clean"] == found.clean
        return report


async def test_a_clean_day_reports_nothing(services: ServiceFactory) -> None:
    async with api_client(services, "disbursement", role="reconciler") as client:
        world = World(client, services)
        for _ in range(3):
            payment = await world.payment()
            world.bank_books(payment)
            await world.we_hear(payment)
        returned = await world.payment()
        world.bank_books(returned)
        world.bank_books(returned, "returned")
        await world.we_hear(returned)
        await world.we_hear(returned, "returned")
        report = await world.reconcile()
        assert report["clean"], report["mismatches"]
        assert report["statement_lines"] == 5
        assert report["ledger_transactions"] == 5


async def test_each_planted_mismatch_is_found_and_published(services: ServiceFactory) -> None:
    from disbursement.models import messaging
    from tests.conftest import count

    async with api_client(services, "disbursement", role="reconciler") as client:
        world = World(client, services)
        fine = await world.payment()
        world.bank_books(fine)
        await world.we_hear(fine)
        only_ours = await world.payment()  # the ledger says settled; the bank never booked it
        await world.we_hear(only_ours)
        only_theirs = await world.payment()  # the bank booked it; its callback never reached us
        world.bank_books(only_theirs)
        different = await world.payment("700.00")  # both booked it, at different amounts
        world.bank_books(different, amount="770.00")
        await world.we_hear(different)
        async with client.runtime.uow() as uow:  # this month's run finished, then a new entitlement appears
            await payment_run.run_payments(uow, f"{TODAY:%Y-%m}", Principal("job", "reconciler", "000000"))
        forgotten = await world.payment()
        report = await world.reconcile()
        found = {(m["kind"], m.get("payment_id") or m.get("entitlement_id")) for m in report["mismatches"]}
        assert not report["clean"]
        assert ("missing_at_bank", only_ours.payment_id) in found
        assert ("missing_in_ledger", only_theirs.payment_id) in found
        assert ("amount_differs", different.payment_id) in found
        assert ("due_unpaid", forgotten.entitlement_id) in found
        assert all(payment_id != fine.payment_id for _, payment_id in found)
        outbox = messaging.outbox
        published = await count(client.runtime, outbox, outbox.c.event_type == "disbursement.reconciliation.flagged")
        assert published == len(report["mismatches"])


async def test_no_report_is_404(services: ServiceFactory) -> None:
    async with api_client(services, "disbursement", role="reconciler") as client:
        assert (await client.get("/v1/reconciliations/2001-01-01")).status_code == 404


async def test_a_payment_that_never_called_back_is_asked_about(services: ServiceFactory) -> None:
    from datetime import timedelta

    from sqlalchemy import update

    from disbursement.bank import query_silent_payments
    from disbursement.ledger import trial_balance

    async with api_client(services, "disbursement", role="reconciler") as client:
        world = World(client, services)
        payment = await world.payment()
        world.bank.by_key[payment.payment_id] = BankPayment(
            order=PaymentOrder(
                payment_id=payment.payment_id,
                amount=payment.amount,
                account="6222021001112223",
                callback_url="http://nowhere",
            ),
            reference="SBX9",
            status="settled",
        )
        long_ago = datetime.now(UTC) - timedelta(hours=1)
        async with client.runtime.engine.begin() as conn:
            await conn.execute(
                update(Payment)
                .where(Payment.payment_id == payment.payment_id)
                .values(status="submitted", bank_reference="SBX9", updated_at=long_ago)
            )
        settings = client.runtime.settings
        assert await query_silent_payments(client.runtime, world.adapter, settings) == 1
        assert await query_silent_payments(client.runtime, world.adapter, settings) == 0  # asked once, applied once
        async with client.runtime.sessionmaker() as session:
            assert (await session.get(Payment, payment.payment_id)).status == "settled"
            debit, credit = await trial_balance(session)
        assert debit == credit == payment.amount
        await world.we_hear(payment)  # the late callback that finally arrives changes nothing
        async with client.runtime.sessionmaker() as session:
            assert await trial_balance(session) == (payment.amount, payment.amount)
