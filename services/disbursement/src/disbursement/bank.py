"""The bank adapter and the loop that sends pending payment instructions to it.

Instructions go to the bank in batches (`POST /v1/payment-batches`, up to `submit_batch_size` orders); each
order is keyed by its payment id: a retry after a timeout, or after a crash between sending and recording,
is recognised by the bank and never pays twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING

import httpx
from sqlalchemy import bindparam, or_, select, update

from disbursement.models import Entitlement, Payment
from disbursement.settings import DisbursementSettings
from shared.db.base import utcnow
from shared.logging import get_logger

if TYPE_CHECKING:
    from shared.service import Runtime

log = get_logger(__name__)


# Batch keys are uuid5s of the batch's payment ids in this namespace: the same batch always has the same key.
BATCH_NAMESPACE = uuid.UUID("5b0c7f0e-6a1d-4d0e-9a43-0d0b1d5e2a11")


# Payments asked about per round of status queries: one request each, in the submitter's loop, so a round is
# kept short (the next round asks about the rest).
SILENT_PER_ROUND = 100


class BankRefused(str):
    """The bank refused one order of a batch (the text says why); the rest of the batch stands."""


class BankClient:
    """HTTP adapter for a payment gateway (the sandbox bank speaks the same protocol)."""

    def __init__(self, settings: DisbursementSettings, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._client = httpx.AsyncClient(
            base_url=settings.bank_url, timeout=settings.bank_timeout_seconds, transport=transport
        )
        self._callback_url = settings.callback_url
        self._batch_callback_url = None if settings.batch_callback_url == "none" else settings.batch_callback_url

    async def submit(self, payments: Sequence[tuple[Payment, str]]) -> dict[str, str | BankRefused]:
        """Send (payment, account) orders in one batch. The batch's key is derived from its payment ids and
        every order carries its payment id as its own key, so a batch sent again after a timeout (or after a
        crash between sending and recording) pays nobody twice. Returns each payment's bank reference, or why
        the bank refused that order."""
        ids = sorted(payment.payment_id for payment, _ in payments)
        batch_key = str(uuid.uuid5(BATCH_NAMESPACE, ",".join(ids)))
        response = await self._client.post(
            "/v1/payment-batches",
            json={
                "payments": [
                    {
                        "payment_id": payment.payment_id,
                        "amount": str(payment.amount),
                        "account": account,
                        "callback_url": self._callback_url,
                    }
                    for payment, account in payments
                ],
                "callback_url": self._batch_callback_url,
            },
            headers={"Idempotency-Key": batch_key},
        )
        response.raise_for_status()
        answers: dict[str, str | BankRefused] = {}
        for line in response.json()["results"]:
            reference = line.get("bank_reference")
            answers[str(line["payment_id"])] = (
                str(reference) if reference and line["status"] != "rejected" else BankRefused(line.get("reason", ""))
            )
        return answers

    async def statement(self, day: str) -> list[dict[str, str]]:
        """The bank's statement for a day: every settlement and return it booked."""
        response = await self._client.get(f"/v1/statements/{day}")
        response.raise_for_status()
        return list(response.json()["lines"])

    async def status(self, payment_id: str) -> str:
        """The bank's current word on a payment (accepted, settled, failed or returned)."""
        response = await self._client.get(f"/v1/payments/{payment_id}")
        response.raise_for_status()
        return str(response.json()["status"])

    async def close(self) -> None:
        await self._client.aclose()


async def submit_payments(runtime: Runtime, stop: asyncio.Event) -> None:
    """Worker loop: send every pending instruction to the bank, with bounded retries and backoff."""
    settings = runtime.settings
    assert isinstance(settings, DisbursementSettings)
    wake = asyncio.Event()
    runtime.wakers.append(wake.set)
    bank = BankClient(settings)
    failures = 0
    loop = asyncio.get_running_loop()
    last_query = loop.time()
    try:
        while not stop.is_set():
            wake.clear()
            try:
                sent = await submit_batch(runtime, bank, settings)
                failures = 0
            except Exception as exc:  # the database may be briefly away: the instructions wait, none is lost
                failures += 1
                log.error("payment_submitter_failed", error=f"{type(exc).__name__}: {exc}", attempt=failures)
                sent = 0
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), min(30.0, 0.5 * 2**failures))
            if loop.time() - last_query >= settings.status_query_every_seconds:
                last_query = loop.time()
                try:
                    await query_silent_payments(runtime, bank, settings)
                except Exception as exc:
                    log.warning("status_query_failed", error=f"{type(exc).__name__}: {exc}")
            if sent < settings.submit_batch_size:
                waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wake.wait())]
                await asyncio.wait(waiters, timeout=1.0, return_when=asyncio.FIRST_COMPLETED)
                for waiter in waiters:
                    waiter.cancel()
    finally:
        await bank.close()


async def submit_batch(runtime: Runtime, bank: BankClient, settings: DisbursementSettings) -> int:
    async with runtime.sessionmaker() as session:
        rows = (
            await session.execute(
                select(Payment, Entitlement.payee_account)
                .join(Entitlement, Entitlement.entitlement_id == Payment.entitlement_id)
                .where(
                    Payment.status == "pending",
                    Payment.attempts < settings.submit_max_attempts,
                    or_(Payment.next_attempt_at.is_(None), Payment.next_attempt_at <= utcnow()),
                )
                .order_by(Payment.created_at)
                .limit(settings.submit_batch_size)
            )
        ).all()
    if not rows:
        return 0
    try:
        answers = await bank.submit([(payment, account) for payment, account in rows])
    except httpx.HTTPError as exc:  # nothing known of the batch: every order is tried again, keyed as before
        log.warning("bank_submit_failed", payments=len(rows), error=str(exc))
        answers = {payment.payment_id: BankRefused(f"batch not accepted: {exc}") for payment, _ in rows}
        failed = True
    else:
        failed = False
    now = utcnow()
    accepted = [
        {"pid": pid, "reference": answer} for pid, answer in answers.items() if not isinstance(answer, BankRefused)
    ]
    refused = [
        {"pid": pid, "error": str(answer)[:500]} for pid, answer in answers.items() if isinstance(answer, BankRefused)
    ]
    table = Payment.__table__
    async with runtime.sessionmaker.begin() as session:
        if accepted:
            # Only from pending: the bank's callback may already have settled it.
            await session.execute(
                update(table)
                .where(table.c.payment_id == bindparam("pid"), table.c.status == "pending")
                .values(
                    status="submitted",
                    bank_reference=bindparam("reference"),
                    attempts=table.c.attempts + 1,
                    updated_at=now,
                ),
                accepted,
            )
        if refused:
            await session.execute(
                update(table)
                .where(table.c.payment_id == bindparam("pid"))
                .values(attempts=table.c.attempts + 1, last_error=bindparam("error"), updated_at=now),
                refused,
            )
    if failed:
        await asyncio.sleep(min(10.0, 0.2 * 2 ** min(payment.attempts for payment, _ in rows)))
    return len(rows)


async def query_silent_payments(runtime: Runtime, bank: BankClient, settings: DisbursementSettings) -> int:
    """Ask the bank about payments submitted long ago that never called back, and apply what it says exactly
    as a callback would (so a late callback afterwards changes nothing). Returns how many moved."""
    from disbursement.callbacks import BankCallback, apply_bank_callback

    cutoff = utcnow() - timedelta(seconds=settings.status_query_after_seconds)
    async with runtime.sessionmaker() as session:
        silent = (
            await session.execute(
                select(Payment.payment_id, Payment.bank_reference)
                .where(Payment.status == "submitted", Payment.updated_at < cutoff)
                .order_by(Payment.updated_at)
                .limit(SILENT_PER_ROUND)
            )
        ).all()
    moved = 0
    for payment_id, reference in silent:
        status = await bank.status(payment_id)
        if status not in ("settled", "failed", "returned"):
            continue
        async with runtime.uow() as uow:
            callback = BankCallback(
                payment_id=payment_id,
                bank_reference=reference or "",
                status=status,
                reason="status query: no callback received",
            )
            if await apply_bank_callback(uow, callback) == status:
                moved += 1
            await uow.commit()
    return moved
