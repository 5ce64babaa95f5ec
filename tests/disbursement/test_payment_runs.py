"""Monthly payment runs and the ledger: every entitlement paid exactly once per month, however often the run
is repeated or wherever it stopped; settlements and returns posted as balanced, immutable transactions."""

from __future__ import annotations

import contextlib
import json
import uuid
from datetime import date
from decimal import Decimal

from sqlalchemy import func, select

from disbursement import payment_run, service
from disbursement.ledger import trial_balance
from disbursement.models import LedgerEntry, LedgerTransaction, Payment
from shared.auth import Principal
from shared.contracts.eligibility import DeterminationApproved
from shared.settings import DEV_SECRET
from shared.signing import SIGNATURE_HEADER, sign
from tests.conftest import ServiceFactory, api_client, token

NATIONAL = Principal(subject="test", role="reconciler", region="000000")


async def approve(runtime: object, n: int, *, region: str = "310115", decided: date = date(2026, 1, 10)) -> None:
    async with runtime.uow() as uow:  # type: ignore[attr-defined]
        for i in range(n):
            await service.open_entitlement(
                uow,
                DeterminationApproved(
                    case_id=str(uuid.uuid4()),
                    determination_id=str(uuid.uuid4()),
                    programme="subsistence_allowance",
                    region=region,
                    decided_on=decided,
                    monthly_amount=Decimal("500.00") + i,
                    payee_account="6222021001112223",
                ),
            )
        await uow.commit()


async def payments_for(runtime: object, period: str) -> list[tuple[str, int]]:
    async with runtime.engine.connect() as conn:  # type: ignore[attr-defined]
        rows = await conn.execute(
            select(Payment.entitlement_id, func.count())
            .where(Payment.period == period)
            .group_by(Payment.entitlement_id)
        )
        return [(e, n) for e, n in rows.all()]


class TestPaymentRun:
    async def test_a_full_chunk_goes_in_whatever_the_drivers_parameter_cap(self, services: ServiceFactory) -> None:
        """5,000 entitlements in one chunk: 50,000 values in one INSERT broke the run on PostgreSQL (asyncpg
        takes at most 32,767 parameters); the insert goes in slices."""
        from sqlalchemy import insert

        from disbursement.models import Entitlement
        from shared.db.base import utcnow

        async with api_client(services, "disbursement") as client:
            rows = [
                {
                    "entitlement_id": str(uuid.uuid4()),
                    "determination_id": str(uuid.uuid4()),
                    "case_id": str(uuid.uuid4()),
                    "programme": "subsistence_allowance",
                    "region": "310115",
                    "kind": "monthly",
                    "amount": Decimal("500.00"),
                    "first_period": "2026-01",
                    "payee_account": "6222021001112223",
                    "status": "active",
                    "created_at": utcnow(),
                }
                for _ in range(5_000)
            ]
            async with client.runtime.engine.begin() as conn:
                await conn.execute(insert(Entitlement), rows)
            async with client.runtime.uow() as uow:
                report = await payment_run.run_payments(uow, "2026-03", NATIONAL)
            assert report["payments"] == 5_000
            assert {n for _, n in await payments_for(client.runtime, "2026-03")} == {1}

    async def test_pays_every_entitlement_once_however_often_it_runs(self, services: ServiceFactory) -> None:
        async with api_client(services, "disbursement") as client:
            await approve(client.runtime, 25)
            for _ in range(3):
                async with client.runtime.uow() as uow:
                    await payment_run.run_payments(uow, "2026-03", NATIONAL, chunk=7)
            paid = await payments_for(client.runtime, "2026-03")
            assert len(paid) == 25
            assert all(n == 1 for _, n in paid)

    async def test_a_run_that_died_midway_is_completed_by_running_again(self, services: ServiceFactory) -> None:
        async with api_client(services, "disbursement") as client:
            await approve(client.runtime, 30)
            original = payment_run.repository.add_missing_payments
            calls = 0

            async def dies_on_the_third_chunk(*args: object, **kwargs: object) -> object:
                nonlocal calls
                calls += 1
                if calls == 3:
                    raise RuntimeError("power cut")
                return await original(*args, **kwargs)  # type: ignore[arg-type]

            payment_run.repository.add_missing_payments = dies_on_the_third_chunk  # type: ignore[assignment]
            try:
                async with client.runtime.uow() as uow:
                    with contextlib.suppress(RuntimeError):
                        await payment_run.run_payments(uow, "2026-04", NATIONAL, chunk=10)
            finally:
                payment_run.repository.add_missing_payments = original  # type: ignore[assignment]
            assert len(await payments_for(client.runtime, "2026-04")) == 20  # two chunks committed
            async with client.runtime.uow() as uow:
                report = await payment_run.run_payments(uow, "2026-04", NATIONAL, chunk=10)
            paid = await payments_for(client.runtime, "2026-04")
            assert len(paid) == 30
            assert all(n == 1 for _, n in paid)
            assert report["payments"] == 30

    async def test_a_change_committed_while_the_run_goes_on_is_paid_at_the_new_amount(
        self, services: ServiceFactory
    ) -> None:
        """The run streams the ids due from its start; an amount changed (or an aid stopped) after that, for
        an entitlement the run has not reached, must still be paid as it now stands."""
        from disbursement.models import Entitlement
        from shared.contracts.eligibility import DeterminationChanged, DeterminationStopped

        async with api_client(services, "disbursement") as client:
            await approve(client.runtime, 30)
            async with client.runtime.engine.connect() as conn:
                rows = (
                    await conn.execute(
                        select(Entitlement.determination_id, Entitlement.case_id, Entitlement.entitlement_id).order_by(
                            Entitlement.entitlement_id
                        )
                    )
                ).all()
            (changed_d, changed_case, changed_e), (stopped_d, stopped_case, stopped_e) = rows[-1], rows[-2]
            common = {"programme": "subsistence_allowance", "region": "310115", "decided_on": date(2026, 3, 20)}
            original = payment_run._instruct
            calls = 0

            async def meanwhile(*args: object, **kwargs: object) -> None:
                nonlocal calls
                calls += 1
                if calls == 2:  # between chunks: the last two entitlements are not reached yet
                    async with client.runtime.uow() as uow:
                        await service.change_entitlement(
                            uow,
                            DeterminationChanged(
                                **common,
                                case_id=changed_case,
                                determination_id=changed_d,
                                monthly_amount=Decimal("900.00"),
                                previous_monthly_amount=Decimal("500.00"),
                                from_period="2026-04",
                            ),
                            str(uuid.uuid4()),
                        )
                        await service.stop_entitlement(
                            uow,
                            DeterminationStopped(
                                **common, case_id=stopped_case, determination_id=stopped_d, last_period="2026-03"
                            ),
                        )
                        await uow.commit()
                await original(*args, **kwargs)  # type: ignore[arg-type]

            payment_run._instruct = meanwhile  # type: ignore[assignment]
            try:
                async with client.runtime.uow() as uow:
                    await payment_run.run_payments(uow, "2026-04", NATIONAL, chunk=10)
            finally:
                payment_run._instruct = original  # type: ignore[assignment]
            assert calls == 3
            async with client.runtime.engine.connect() as conn:
                paid = dict(
                    (
                        await conn.execute(
                            select(Payment.entitlement_id, Payment.amount).where(Payment.period == "2026-04")
                        )
                    ).all()
                )
            assert paid[changed_e] == Decimal("900.00")
            assert stopped_e not in paid
            assert len(paid) == 29

    async def test_nothing_is_due_before_the_month_after_approval(self, services: ServiceFactory) -> None:
        async with api_client(services, "disbursement") as client:
            await approve(client.runtime, 3, decided=date(2026, 5, 20))  # first period 2026-06
            async with client.runtime.uow() as uow:
                report = await payment_run.run_payments(uow, "2026-05", NATIONAL)
            assert await payments_for(client.runtime, "2026-05") == []
            assert report["payments"] == 0

    async def test_the_rest_endpoint_scopes_by_region_and_reports(self, services: ServiceFactory) -> None:
        async with api_client(services, "disbursement", role="reconciler", region="310115") as client:
            await approve(client.runtime, 4, region="310115")
            await approve(client.runtime, 2, region="310112")
            response = await client.post("/v1/payment-runs", json={"period": "2026-07"})
            assert response.status_code == 201, response.text
            assert response.json()["payments"] == 4  # Minhang's two are outside this reconciler's region
            assert (await client.post("/v1/payment-runs", json={"period": "2026-13"})).status_code == 422


class TestLedger:
    async def test_settlement_and_return_post_balanced_reversible_transactions(self, services: ServiceFactory) -> None:
        async with api_client(services, "disbursement", role="reconciler", region="000000") as client:
            await approve(client.runtime, 2)
            async with client.runtime.sessionmaker() as session:
                payments = (await session.execute(select(Payment))).scalars().all()
            for payment, outcomes in zip(payments, (["settled"], ["settled", "returned"]), strict=True):
                for status in outcomes:
                    raw = json.dumps(
                        {"payment_id": payment.payment_id, "bank_reference": "R", "status": status}
                    ).encode()
                    for _ in range(2):  # a duplicated callback posts nothing more
                        response = await client.post(
                            "/v1/bank/callbacks",
                            content=raw,
                            headers={SIGNATURE_HEADER: sign(DEV_SECRET, raw), "Content-Type": "application/json"},
                        )
                        assert response.status_code == 200
            async with client.runtime.sessionmaker() as session:
                kinds = sorted((await session.execute(select(LedgerTransaction.kind))).scalars().all())
                debit, credit = await trial_balance(session)
                per_txn = (
                    await session.execute(select(LedgerEntry.txn_id, LedgerEntry.side, LedgerEntry.amount))
                ).all()
            assert kinds == ["reversal", "settlement", "settlement"]
            assert debit == credit
            for txn in {t for t, _, _ in per_txn}:
                assert sum(a for t, s, a in per_txn if t == txn and s == "debit") == sum(
                    a for t, s, a in per_txn if t == txn and s == "credit"
                )
            balances = (await client.get("/v1/ledger/balances", params={"by": "programme"})).json()
            assert balances["balances"] == [
                {"programme": "subsistence_allowance", "transactions": 3, "paid": str(payments[0].amount)}
            ]
            assert balances["trial_balance"]["debits"] == balances["trial_balance"]["credits"]
            households = (await client.get("/v1/ledger/balances", params={"by": "household"})).json()["balances"]
            assert sorted(h["paid"] for h in households) == sorted(["0.00", str(payments[0].amount)])
            officer_elsewhere = {"Authorization": f"Bearer {token(services.data_dir, 'officer', '330000')}"}
            assert (await client.get("/v1/ledger/balances", headers=officer_elsewhere)).json()["balances"] == []


async def test_every_payment_is_exported_end_to_end_within_the_region(services: ServiceFactory) -> None:
    async with api_client(services, "disbursement", role="reconciler", region="310115") as client:
        await approve(client.runtime, 3, region="310115")
        await approve(client.runtime, 2, region="310112")
        response = await client.get("/v1/exports/payments", params={"period": "2026-02"})
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/x-ndjson")
        lines = [json.loads(line) for line in response.text.splitlines()]
        assert len(lines) == 3
        for line in lines:
            assert line["region"] == "310115"
            assert {"payment_id", "entitlement_id", "determination_id", "case_id", "bank_reference", "amount"} <= set(
                line
            )
