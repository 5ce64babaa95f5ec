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


def _order(payment_id: str, amount: str = "830.00") -> dict[str, str]:
    return {
        "payment_id": payment_id,
        "amount": amount,
        "account": "6222021001112223",
        "callback_url": "http://127.0.0.1:1/nowhere",
    }


async def test_a_batch_sent_again_pays_nobody_twice_and_one_bad_order_does_not_refuse_the_rest() -> None:
    app = create_app(BankSettings(callback_delay_seconds=3600))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bank") as client,
    ):
        alone = await client.post("/v1/payments", json=_order("b0"), headers={"Idempotency-Key": "b0"})
        batch = {"payments": [_order("b0", amount="1.00"), _order("b1"), _order("b2")]}
        first = await client.post("/v1/payment-batches", json=batch, headers={"Idempotency-Key": "batch-1"})
        again = await client.post("/v1/payment-batches", json=batch, headers={"Idempotency-Key": "batch-1"})
        assert first.status_code == again.status_code == 202
        lines = {line["payment_id"]: line for line in first.json()["results"]}
        assert lines["b0"]["status"] == "rejected"  # b0 was sent before with another amount
        assert "different payment" in lines["b0"]["reason"]
        assert alone.json()["bank_reference"] != lines["b1"]["bank_reference"]
        assert [lines[p]["status"] for p in ("b1", "b2")] == ["accepted", "accepted"]
        assert {line["payment_id"]: line["bank_reference"] for line in again.json()["results"]} == {
            p: line["bank_reference"] for p, line in lines.items()
        }
        assert (await client.get("/v1/summary")).json() == {"payments": 3, "total_amount": "2490.00"}
        too_big = {"payments": [_order(f"x{i}") for i in range(1001)]}
        assert (
            await client.post("/v1/payment-batches", json=too_big, headers={"Idempotency-Key": "b"})
        ).status_code == 422
