from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated

import httpx
import uvicorn
from fastapi import FastAPI, Header
from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.contracts.base import Money
from shared.errors import Conflict, NotFound, install_problem_handlers
from shared.logging import configure_logging, get_logger
from shared.settings import DEV_SECRET, SettingsError, load_settings
from shared.signing import SIGNATURE_HEADER, sign

log = get_logger(__name__)


class BankSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SANDBOX_BANK_", env_file=".env", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(default=8005, ge=1, le=65535)
    callback_secret: str = DEV_SECRET
    callback_delay_seconds: float = Field(default=0.05, ge=0)
    # Where the daily statement files are written (one CSV per day); empty: kept in memory only.
    statement_dir: str = ""
    callback_attempts: int = Field(default=6, ge=1)


class PaymentOrder(BaseModel):
    payment_id: str = Field(min_length=1, max_length=64)
    amount: Money
    account: str = Field(pattern=r"^\d{8,30}$")
    callback_url: str


class PaymentAccepted(BaseModel):
    bank_reference: str
    status: str


class PaymentBatch(BaseModel):
    payments: list[PaymentOrder] = Field(min_length=1, max_length=1000)


class BatchLine(BaseModel):
    payment_id: str
    bank_reference: str | None = None
    status: str  # accepted (or the order's current status when sent before) | rejected
    reason: str = ""


class BatchAccepted(BaseModel):
    batch_id: str
    results: list[BatchLine]


@dataclass
class BankPayment:
    order: PaymentOrder
    reference: str
    status: str = "accepted"
    attempts: int = 1
    callbacks: list[str] = field(default_factory=list)


class Bank:
    def __init__(self, settings: BankSettings) -> None:
        self.settings = settings
        self.by_key: dict[str, BankPayment] = {}
        self.statements: dict[str, list[dict[str, str]]] = {}
        self.client = httpx.AsyncClient(timeout=5.0)
        self.tasks: set[asyncio.Task[None]] = set()

    def outcome(self, payment: BankPayment) -> list[tuple[str, str]]:
        account = payment.order.account
        if account.endswith("5555") and payment.attempts == 1:
            return [("failed_temporary", "bank system temporarily unavailable")]
        if account.endswith("0000"):
            return [("failed", "account closed")]
        if account.endswith("9999"):
            return [("settled", ""), ("returned", "account frozen")]
        if account.endswith("7777"):
            return [("settled", ""), ("settled", "")]
        return [("settled", "")]

    async def deliver(self, payment: BankPayment) -> None:
        await asyncio.sleep(self.settings.callback_delay_seconds)
        for status, reason in self.outcome(payment):
            if status != payment.status:  # a duplicated callback is not a second movement of money
                self.book(payment, status)
            payment.status = status
            temporary = status == "failed_temporary"
            body = json.dumps(
                {
                    "payment_id": payment.order.payment_id,
                    "bank_reference": payment.reference,
                    "status": "failed" if temporary else status,
                    "temporary": temporary,
                    "reason": reason,
                }
            ).encode()
            headers = {
                "Content-Type": "application/json",
                SIGNATURE_HEADER: sign(self.settings.callback_secret, body),
            }
            for attempt in range(1, self.settings.callback_attempts + 1):
                try:
                    response = await self.client.post(payment.order.callback_url, content=body, headers=headers)
                    if response.status_code < 500:
                        payment.callbacks.append(f"{status}:{response.status_code}")
                        break
                except httpx.HTTPError as exc:
                    log.warning("callback_failed", payment_id=payment.order.payment_id, error=str(exc))
                await asyncio.sleep(min(5.0, 0.2 * 2**attempt))
            await asyncio.sleep(self.settings.callback_delay_seconds)

    def accept(self, order: PaymentOrder, idempotency_key: str) -> PaymentAccepted:
        existing = self.by_key.get(idempotency_key)
        if existing is not None:
            if existing.order != order:
                raise Conflict("Idempotency-Key reused with a different payment.")
            if existing.status == "failed_temporary":  # the same order, tried again: nothing was paid before
                existing.attempts += 1
                existing.status = "accepted"
                self.start(existing)
            return PaymentAccepted(bank_reference=existing.reference, status=existing.status)
        payment = BankPayment(order=order, reference="SBX" + uuid.uuid4().hex[:16].upper())
        self.by_key[idempotency_key] = payment
        self.start(payment)
        return PaymentAccepted(bank_reference=payment.reference, status=payment.status)

    def start(self, payment: BankPayment) -> None:
        task = asyncio.create_task(self.deliver(payment))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def book(self, payment: BankPayment, status: str) -> None:
        """Money moved (or failed to): a line on today's statement, and in the day's file."""
        if status not in ("settled", "returned"):
            return
        now = datetime.now(UTC)
        line = {
            "bank_reference": payment.reference,
            "payment_id": payment.order.payment_id,
            "amount": str(payment.order.amount),
            "status": status,
            "at": now.isoformat(),
        }
        day = now.date().isoformat()
        self.statements.setdefault(day, []).append(line)
        if self.settings.statement_dir:
            path = Path(self.settings.statement_dir) / f"statement-{day}.csv"
            path.parent.mkdir(parents=True, exist_ok=True)
            new = not path.exists()
            with path.open("a", encoding="utf-8") as out:
                if new:
                    out.write(",".join(line) + "\n")
                out.write(",".join(line.values()) + "\n")


def create_app(settings: BankSettings) -> FastAPI:
    bank = Bank(settings)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            for task in bank.tasks:
                task.cancel()
            await bank.client.aclose()

    app = FastAPI(title="doudi sandbox bank", lifespan=lifespan)
    app.state.bank = bank
    install_problem_handlers(app)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": "sandbox_bank"}

    @app.post("/v1/payments", status_code=202, response_model=PaymentAccepted)
    async def submit(
        order: PaymentOrder, idempotency_key: Annotated[str, Header(alias="Idempotency-Key", max_length=200)]
    ) -> PaymentAccepted:
        return bank.accept(order, idempotency_key)

    @app.post("/v1/payment-batches", status_code=202, response_model=BatchAccepted)
    async def submit_batch(
        batch: PaymentBatch, idempotency_key: Annotated[str, Header(alias="Idempotency-Key", max_length=200)]
    ) -> BatchAccepted:
        """Many orders in one request. Each order is idempotent by its own payment id, exactly as if sent
        alone (a batch sent again pays nobody twice); one order the bank refuses does not refuse the rest."""
        results = []
        for order in batch.payments:
            try:
                accepted = bank.accept(order, order.payment_id)
                results.append(BatchLine(payment_id=order.payment_id, **accepted.model_dump()))
            except Conflict as exc:
                results.append(BatchLine(payment_id=order.payment_id, status="rejected", reason=str(exc)))
        return BatchAccepted(batch_id=idempotency_key, results=results)

    @app.get("/v1/payments/{payment_id}", response_model=PaymentAccepted)
    async def status(payment_id: str) -> PaymentAccepted:
        payment = bank.by_key.get(payment_id)
        if payment is None:
            raise NotFound(f"No payment {payment_id}.")
        return PaymentAccepted(bank_reference=payment.reference, status=payment.status)

    @app.get("/v1/statements/{day}")
    async def statement(day: date) -> dict[str, object]:
        """The day's statement: every settlement and return booked that day (UTC)."""
        return {"date": day.isoformat(), "lines": bank.statements.get(day.isoformat(), [])}

    @app.get("/v1/summary")
    async def summary() -> dict[str, object]:
        total = sum((p.order.amount for p in bank.by_key.values()), Decimal("0.00"))
        return {"payments": len(bank.by_key), "total_amount": str(total)}

    return app


def main() -> int:
    try:
        settings = load_settings(BankSettings)
    except SettingsError as exc:
        print(f"sandbox_bank: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    configure_logging("sandbox_bank")
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="warning", access_log=False)
    return 0
