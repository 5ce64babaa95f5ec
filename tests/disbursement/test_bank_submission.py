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
