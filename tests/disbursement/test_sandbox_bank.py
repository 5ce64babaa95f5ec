from __future__ import annotations

import httpx

from sandbox_bank.app import BankSettings, create_app


async def test_a_retried_instruction_is_recognised_not_paid_twice() -> None:
    app = create_app(BankSettings(callback_delay_seconds=3600))
    order = {
        "payment_id": "p1",
        "amount": "830.00",
        "account": "6222021001112223",
        "callback_url": "http://127.0.0.1:1/nowhere",
    }
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bank") as client,
    ):
        first = await client.post("/v1/payments", json=order, headers={"Idempotency-Key": "p1"})
        again = await client.post("/v1/payments", json=order, headers={"Idempotency-Key": "p1"})
        assert first.status_code == again.status_code == 202
        assert first.json()["bank_reference"] == again.json()["bank_reference"]
        assert (await client.get("/v1/summary")).json() == {"payments": 1, "total_amount": "830.00"}
        changed = await client.post("/v1/payments", json={**order, "amount": "1.00"}, headers={"Idempotency-Key": "p1"})
        assert changed.status_code == 409


async def test_an_order_that_failed_temporarily_is_tried_again_when_resubmitted() -> None:
    app = create_app(BankSettings(callback_delay_seconds=3600))
    order = {
        "payment_id": "p5",
        "amount": "10.00",
        "account": "6222021001115555",
        "callback_url": "http://127.0.0.1:1/x",
    }
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bank") as client,
    ):
        await client.post("/v1/payments", json=order, headers={"Idempotency-Key": "p5"})
        held = app.state.bank.by_key["p5"]
        assert app.state.bank.outcome(held) == [("failed_temporary", "bank system temporarily unavailable")]
        held.status = "failed_temporary"  # what its first delivery would have done
        again = await client.post("/v1/payments", json=order, headers={"Idempotency-Key": "p5"})
        assert again.json()["bank_reference"] == held.reference
        assert held.attempts == 2
        assert app.state.bank.outcome(held) == [("settled", "")]
        assert (await client.get("/v1/summary")).json()["payments"] == 1
