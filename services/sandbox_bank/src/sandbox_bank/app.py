from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import uuid
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

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
    # How many callbacks are in flight at once (a real bank's delivery queue is bounded too).
    callback_concurrency: int = Field(default=4, ge=1)


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
    # Where the batch's results go in one callback (回盘); without it, each order is called back alone.
    callback_url: str | None = None


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
        self.unwritten: list[tuple[str, dict[str, str]]] = []  # statement lines booked, not yet in the file
        self.sending = asyncio.Semaphore(settings.callback_concurrency)

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

    async def deliver(self, payment: BankPayment, outcomes: list[tuple[str, str]] | None = None) -> None:
        """Call back about one payment, once per outcome (a duplicate callback is sent, not booked twice)."""
        await asyncio.sleep(self.settings.callback_delay_seconds)
        for status, reason in outcomes if outcomes is not None else self.outcome(payment):
            self.move(payment, status)
            response = await self.post_signed(payment.order.callback_url, self.word(payment, status, reason))
            payment.callbacks.append(f"{status}:{response}")
            await asyncio.sleep(self.settings.callback_delay_seconds)

    async def deliver_batch(self, batch_id: str, payments: list[BankPayment], callback_url: str) -> None:
        """A batch's results (回盘) in one signed callback: each order's first outcome. What happens to an order
        afterwards (returned later, a duplicate word) comes in single callbacks, as from a real bank."""
        await asyncio.sleep(self.settings.callback_delay_seconds)
        results, later = [], []
        for payment in payments:
            (status, reason), *rest = self.outcome(payment)
            self.move(payment, status, defer=True)
            results.append(self.word(payment, status, reason))
            if rest:
                later.append((payment, rest))
        self.flush_statement()
        await self.post_signed(callback_url, {"batch_id": batch_id, "results": results})
        for payment, rest in later:
            self.start(payment, rest)

    def word(self, payment: BankPayment, status: str, reason: str) -> dict[str, object]:
        temporary = status == "failed_temporary"
        return {
            "payment_id": payment.order.payment_id,
            "bank_reference": payment.reference,
            "status": "failed" if temporary else status,
            "temporary": temporary,
            "reason": reason,
        }

    async def post_signed(self, url: str, message: dict[str, object]) -> int | None:
        """POST a signed message, retried with backoff while the receiver fails; its status, or None."""
        body = json.dumps(message).encode()
        headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(self.settings.callback_secret, body)}
        for attempt in range(1, self.settings.callback_attempts + 1):
            try:
                async with self.sending:
                    response = await self.client.post(url, content=body, headers=headers)
                if response.status_code < 500:
                    return response.status_code
                log.warning("callback_refused", url=url, status=response.status_code)
                pause = float(response.headers.get("Retry-After", 0) or 0)
            except httpx.HTTPError as exc:
                log.warning("callback_failed", url=url, error=f"{type(exc).__name__}: {exc}")
                pause = 0.0
            await asyncio.sleep(max(pause, min(5.0, 0.2 * 2**attempt)))
        log.error("callback_given_up", url=url, attempts=self.settings.callback_attempts)
        return None

    def accept(self, order: PaymentOrder, idempotency_key: str, start: bool = True) -> tuple[PaymentAccepted, bool]:
        """Take an order (or recognise it); returns the answer and whether it is to be carried out now."""
        existing = self.by_key.get(idempotency_key)
        if existing is not None:
            if existing.order != order:
                raise Conflict("Idempotency-Key reused with a different payment.")
            fresh = existing.status == "failed_temporary"
            if fresh:  # the same order, tried again: nothing was paid before
                existing.attempts += 1
                existing.status = "accepted"
                if start:
                    self.start(existing)
            return PaymentAccepted(bank_reference=existing.reference, status=existing.status), fresh
        payment = BankPayment(order=order, reference="SBX" + uuid.uuid4().hex[:16].upper())
        self.by_key[idempotency_key] = payment
        if start:
            self.start(payment)
        return PaymentAccepted(bank_reference=payment.reference, status=payment.status), True

    def start(self, payment: BankPayment, outcomes: list[tuple[str, str]] | None = None) -> None:
        self.spawn(self.deliver(payment, outcomes))

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def move(self, payment: BankPayment, status: str, defer: bool = False) -> None:
        if status != payment.status:  # a duplicated word is not a second movement of money
            self.book(payment, status, defer)
        payment.status = status

    def book(self, payment: BankPayment, status: str, defer: bool = False) -> None:
        """Money moved: a line on today's statement, and in the day's file (at once, or with `defer` when
        `flush_statement` is called: a batch's lines are written together)."""
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
            self.unwritten.append((day, line))
            if not defer:
                self.flush_statement()

    def flush_statement(self) -> None:
        """Append the lines booked since the last flush to their days' files (one open per day, not per line)."""
        lines, self.unwritten = self.unwritten, []
        by_day: dict[str, list[dict[str, str]]] = {}
        for day, line in lines:
            by_day.setdefault(day, []).append(line)
        for day, booked in by_day.items():
            path = Path(self.settings.statement_dir) / f"statement-{day}.csv"
            path.parent.mkdir(parents=True, exist_ok=True)
            new = not path.exists()
            with path.open("a", encoding="utf-8") as out:
                if new:
                    out.write(",".join(booked[0]) + "\n")
                out.writelines(",".join(line.values()) + "\n" for line in booked)


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
        return bank.accept(order, idempotency_key)[0]

    @app.post("/v1/payment-batches", status_code=202, response_model=BatchAccepted)
    async def submit_batch(
        batch: PaymentBatch, idempotency_key: Annotated[str, Header(alias="Idempotency-Key", max_length=200)]
    ) -> BatchAccepted:
        """Many orders in one request. Each order is idempotent by its own payment id, exactly as if sent
        alone (a batch sent again pays nobody twice); one order the bank refuses does not refuse the rest.
        With a batch `callback_url` the results come back in one callback for the batch (回盘), else one
        callback per order."""
        results, to_carry_out = [], []
        for order in batch.payments:
            try:
                accepted, fresh = bank.accept(order, order.payment_id, start=batch.callback_url is None)
            except Conflict as exc:
                results.append(BatchLine(payment_id=order.payment_id, status="rejected", reason=str(exc)))
                continue
            results.append(BatchLine(payment_id=order.payment_id, **accepted.model_dump()))
            if fresh:
                to_carry_out.append(bank.by_key[order.payment_id])
        if batch.callback_url is not None and to_carry_out:
            bank.spawn(bank.deliver_batch(idempotency_key, to_carry_out, batch.callback_url))
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
