"""Nightly reconciliation finds each kind of mismatch planted on purpose, and nothing when there is none, from
the bank's API and from the bank's statement file alike."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from disbursement import payment_run, reconciliation, service
from disbursement.bank import BankClient
from disbursement.models import Payment
from disbursement.reconciliation import StatementError, read_statement_file, reconcile
from sandbox_bank.app import BankPayment, BankSettings, PaymentOrder, create_app
from shared.auth import Principal
from shared.contracts.eligibility import DeterminationApproved
from shared.settings import DEV_SECRET
from shared.signing import SIGNATURE_HEADER, sign
from tests.conftest import ServiceFactory, api_client

TODAY = datetime.now(UTC).date()


@pytest.fixture(params=["api", "file"])
def statement_dir(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path | None:
    """Where the sandbox bank writes its daily statement file for the job to read (`file`), or None: the job
    fetches the statement from the bank's API. Pages of two rows, so every paged read and write turns pages."""
    monkeypatch.setattr(reconciliation, "PAGE", 2)
    return tmp_path if request.param == "file" else None


class World:
    """The disbursement service (through its API) and a sandbox bank whose statement the test writes; with a
    `statement_dir`, reconciliation reads the bank's statement file instead of asking the bank's API."""

    def __init__(self, client: Any, services: ServiceFactory, statement_dir: Path | None = None) -> None:
        self.client = client
        self.statement_dir = statement_dir
        self.bank_app = create_app(BankSettings(callback_delay_seconds=3600, statement_dir=str(statement_dir or "")))
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
            if self.statement_dir is None:
                found = await reconcile(uow, self.adapter, TODAY)
            else:
                found = await reconcile(uow, None, TODAY, self.statement_dir / f"statement-{TODAY.isoformat()}.csv")
            await uow.commit()
        response = await self.client.get(f"/v1/reconciliations/{TODAY.isoformat()}")
        assert response.status_code == 200
        report = response.json()
        assert report["clean"] == found.clean
        return report


async def test_a_clean_day_reports_nothing(services: ServiceFactory, statement_dir: Path | None) -> None:
    async with api_client(services, "disbursement", role="reconciler") as client:
        world = World(client, services, statement_dir)
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


async def test_each_planted_mismatch_is_found_and_published(
    services: ServiceFactory, statement_dir: Path | None
) -> None:
    from disbursement.models import messaging
    from tests.conftest import count

    async with api_client(services, "disbursement", role="reconciler") as client:
        world = World(client, services, statement_dir)
        fine = [await world.payment() for _ in range(3)]
        for payment in fine:
            world.bank_books(payment)
            await world.we_hear(payment)
        planted = set()
        for _ in range(3):  # three of each, so each kind spans pages of two
            only_ours = await world.payment()  # the ledger says settled; the bank never booked it
            await world.we_hear(only_ours)
            only_theirs = await world.payment()  # the bank booked it; its callback never reached us
            world.bank_books(only_theirs)
            different = await world.payment("700.00")  # both booked it, at different amounts
            world.bank_books(different, amount="770.00")
            await world.we_hear(different)
            planted |= {
                ("missing_at_bank", only_ours.payment_id, only_ours.case_id),
                ("missing_in_ledger", only_theirs.payment_id, only_theirs.case_id),
                ("amount_differs", different.payment_id, different.case_id),
            }
        async with client.runtime.uow() as uow:  # this month's run finished, then a new entitlement appears
            await payment_run.run_payments(uow, f"{TODAY:%Y-%m}", Principal("job", "reconciler", "000000"))
        forgotten = await world.payment()
        planted.add(("due_unpaid", forgotten.entitlement_id, forgotten.case_id))
        report = await world.reconcile()
        found = [
            (m["kind"], m.get("payment_id") or m.get("entitlement_id"), m["case_id"]) for m in report["mismatches"]
        ]
        assert not report["clean"]
        assert sorted(found) == sorted(planted)  # each planted once, nothing else (not one of the fine ones)
        assert report["statement_lines"] == 3 + 3 * 2
        assert report["ledger_transactions"] == 3 + 3 * 2
        differs = next(m for m in report["mismatches"] if m["kind"] == "amount_differs")
        assert differs["detail"] == "ledger 700.00, bank 770.00"
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


def test_a_statement_file_names_its_columns_in_any_order(tmp_path: Path) -> None:
    path = tmp_path / "statement.csv"
    path.write_text("\ufeffstatus,amount,payment_id,at\nsettled,500.00,P1,2026-12-01\n\nreturned,12.5,P2,2026-12-01\n")
    assert list(read_statement_file(path)) == [
        ("P1", "settled", Decimal("500.00")),
        ("P2", "returned", Decimal("12.5")),
    ]


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "must name the columns"),
        ("payment_id,amount\nP1,500.00\n", "must name the columns"),
        ("payment_id,status,amount\nP1,settled,500.00\nP2,settled,five hundred\n", "line 3"),
        ("payment_id,status,amount\nP1,settled,NaN\n", "line 2"),
        ("payment_id,status,amount\nP1,settled\n", "line 2"),
    ],
)
def test_an_unreadable_statement_file_stops_the_job(tmp_path: Path, text: str, says: str) -> None:
    """A line that cannot be read is not skipped: a skipped line would be a mismatch nobody sees."""
    path = tmp_path / "statement.csv"
    path.write_text(text)
    with pytest.raises(StatementError, match=says):
        list(read_statement_file(path))


def test_reconcile_refuses_a_statement_file_that_is_not_there(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from doudi.cli import main

    assert main(["reconcile", "--date", "2026-12-01", "--statement", str(tmp_path / "none.csv")]) == 2
    assert "no such statement file" in capsys.readouterr().err


async def test_an_advance_no_verification_followed_is_a_mismatch(services: ServiceFactory) -> None:
    """Advances against the decisions that followed: aid paid first ten weeks ago and never confirmed or
    flagged is found; one confirmed is not."""
    from datetime import timedelta

    from disbursement import advances
    from disbursement.models import Entitlement
    from shared.contracts.eligibility import DeterminationConfirmed

    async with api_client(services, "disbursement", role="reconciler") as client:
        world = World(client, services)
        paid_first = []
        for _ in range(2):
            grant = DeterminationApproved(
                case_id=str(uuid.uuid4()),
                determination_id=str(uuid.uuid4()),
                programme="temporary_aid",
                region="310115",
                decided_on=TODAY,
                amount=Decimal("1200.00"),
                payment_kind="one_off",
                payee_account="6222021001112223",
                advance=True,
            )
            async with client.runtime.uow() as uow:
                await service.open_entitlement(uow, grant)
                await uow.commit()
            async with client.runtime.sessionmaker.begin() as session:
                payment = (await session.execute(select(Payment).where(Payment.case_id == grant.case_id))).scalar_one()
                entitlement = await session.get(Entitlement, payment.entitlement_id)
                entitlement.created_at -= timedelta(days=70)
            world.bank_books(payment)
            await world.we_hear(payment)
            paid_first.append((grant, payment))
        (confirmed, _), (forgotten, forgotten_payment) = paid_first
        fields = confirmed.model_dump(exclude={"payment_kind", "payee_account", "review_due", "advance"})
        async with client.runtime.uow() as uow:
            await advances.confirm(uow, DeterminationConfirmed(**fields))
            await uow.commit()
        report = await world.reconcile()
        assert [(m["kind"], m["payment_id"], m["case_id"]) for m in report["mismatches"]] == [
            ("advance_undecided", forgotten_payment.payment_id, forgotten.case_id)
        ]
        assert report["ledger_transactions"] == 2  # the confirmation moved money between our own accounts only
