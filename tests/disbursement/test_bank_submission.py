"""The submitter sends pending instructions to the bank in batches; a batch whose answer is lost is sent
again and the bank pays nobody twice."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from sqlalchemy import select

from disbursement import service
from disbursement.bank import BankClient, submit_batch
from disbursement.models import Payment
from sandbox_bank.app import BankSettings, create_app
from tests.conftest import ServiceFactory, manual
from tests.disbursement.test_payments import approved


class LosesAnswers(httpx.AsyncBaseTransport):
    """Delivers each request to the bank, then loses the first `lose` answers (a timeout on the way back)."""

    def __init__(self, app: Any, lose: int) -> None:
        self._bank = httpx.ASGITransport(app=app)
        self.lose = lose
        self.sent = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._bank.handle_async_request(request)
        await response.aread()
        self.sent += 1
        if self.lose > 0:
            self.lose -= 1
            raise httpx.ReadTimeout("the answer never came", request=request)
        return response


async def test_a_batch_whose_answer_was_lost_is_sent_again_and_pays_nobody_twice(services: ServiceFactory) -> None:
    bank_app = create_app(BankSettings(callback_delay_seconds=3600))
    async with manual(services, "disbursement") as runtime, bank_app.router.lifespan_context(bank_app):
        cases = [str(uuid.uuid4()) for _ in range(7)]
        async with runtime.uow() as uow:
            for case_id in cases:
                await service.open_entitlement(uow, approved(case_id))
            await uow.commit()
        transport = LosesAnswers(bank_app, lose=1)
        bank = BankClient(runtime.settings, transport=transport)  # type: ignore[arg-type]
        settings = runtime.settings.model_copy(update={"submit_batch_size": 5})
        try:
            assert await submit_batch(runtime, bank, settings) == 5  # sent, answer lost: still pending
            async with runtime.sessionmaker() as session:
                rows = (await session.execute(select(Payment).where(Payment.case_id.in_(cases)))).scalars().all()
            assert sorted(p.status for p in rows) == ["pending"] * 7
            assert sorted(p.attempts for p in rows) == [0, 0, 1, 1, 1, 1, 1]
            assert await submit_batch(runtime, bank, settings) == 5  # the same five again, then the last two
            assert await submit_batch(runtime, bank, settings) == 2
            assert await submit_batch(runtime, bank, settings) == 0
        finally:
            await bank.close()
        assert transport.sent == 3  # three requests for seven orders
        async with runtime.sessionmaker() as session:
            rows = (await session.execute(select(Payment).where(Payment.case_id.in_(cases)))).scalars().all()
        assert sorted(p.status for p in rows) == ["submitted"] * 7
        held = bank_app.state.bank.by_key
        assert {p.payment_id: p.bank_reference for p in rows} == {pid: held[pid].reference for pid in held}
        assert len(held) == 7  # the batch sent twice paid nobody twice


async def test_a_batch_results_come_back_in_one_callback_and_later_words_one_by_one(services: ServiceFactory) -> None:
    """The sandbox bank answers a batch in one signed callback (回盘): settled, failed, failed for now; a
    return and a duplicate follow alone. Each is booked once and the ledger balances."""
    from disbursement import ledger
    from disbursement.models import LedgerTransaction, messaging
    from tests.conftest import api_client, count, eventually

    bank_app = create_app(BankSettings(callback_delay_seconds=0.01))
    async with api_client(services, "disbursement") as client, bank_app.router.lifespan_context(bank_app):
        bank_app.state.bank.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=client.app), base_url="http://disbursement"
        )
        try:
            accounts = {
                "settles": "6222021001112223",
                "closed": "6222021001110000",
                "returned": "6222021001119999",
                "later": "6222021001115555",
                "twice": "6222021001117777",
            }
            cases = {}
            async with client.runtime.uow() as uow:
                for name, account in accounts.items():
                    cases[name] = str(uuid.uuid4())
                    await service.open_entitlement(uow, approved(cases[name], account=account))
                await uow.commit()
            bank = BankClient(client.runtime.settings, transport=httpx.ASGITransport(app=bank_app))
            try:
                assert await submit_batch(client.runtime, bank, client.runtime.settings) == 5
            finally:
                await bank.close()

            async def statuses() -> dict[str, str]:
                async with client.runtime.sessionmaker() as session:
                    rows = (await session.execute(select(Payment))).scalars().all()
                by_case = {p.case_id: p.status for p in rows}
                return {name: by_case[case_id] for name, case_id in cases.items()}

            expected = {
                "settles": "settled",
                "closed": "failed",
                "returned": "returned",
                "later": "pending",
                "twice": "settled",
            }
            audit = messaging.audit

            async def arrived() -> bool:
                # The return and the repeat come alone after the batch's callback; the repeat changes no status,
                # so wait for both to be recorded before counting what was booked.
                singles = await count(client.runtime, audit, audit.c.action == "bank_callback")
                return singles == 2 and await statuses() == expected

            await eventually(arrived, timeout=10)
            assert await count(client.runtime, audit, audit.c.action == "bank_batch_callback") == 1
            assert await count(client.runtime, LedgerTransaction, LedgerTransaction.kind == "settlement") == 3
            assert await count(client.runtime, LedgerTransaction, LedgerTransaction.kind == "reversal") == 1
            async with client.runtime.sessionmaker() as session:
                debits, credits = await ledger.trial_balance(session)
                later = (await session.execute(select(Payment).where(Payment.case_id == cases["later"]))).scalar_one()
            assert debits == credits
            assert later.next_attempt_at is not None  # tried again after its backoff
            assert later.last_error.startswith("temporary")
        finally:
            await bank_app.state.bank.client.aclose()
