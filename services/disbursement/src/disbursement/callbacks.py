"""The bank's word on payments: one callback, or a batch's results (回盘) in one signed request, applied in one
transaction. Duplicate and late callbacks change nothing; a settlement posts its ledger transaction, a return
reverses it, a temporary failure is tried again later with backoff, every change is an event.

One code path for both: a single callback is a batch of one. A batch is applied in bulk (its payments read and
locked in one query, its ledger rows and events written with one statement each), so the results of a
million-payment month are booked at the database's pace, not one round trip per payment.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy import insert, select

from disbursement import advances, domain, ledger
from disbursement.models import Entitlement, LedgerEntry, LedgerTransaction, Payment
from shared.contracts.disbursement import PaymentFailed, PaymentReturned, PaymentSettled
from shared.db.base import utcnow
from shared.db.uow import UnitOfWork
from shared.errors import NotFound
from shared.logging import get_logger

log = get_logger(__name__)

# Rows per multi-row statement (eight columns at most: well under the drivers' parameter caps).
CHUNK = 2_000


class PaymentNotFound(NotFound):
    title = "Payment not found"


class BankCallback(BaseModel):
    payment_id: str
    bank_reference: str
    status: Literal["settled", "failed", "returned"]
    reason: str = ""
    # The bank says nothing was paid and the same order may be tried again later.
    temporary: bool = False


class BatchCallback(BaseModel):
    """A batch's results, as the bank reports them in one request."""

    batch_id: str
    results: list[BankCallback] = Field(min_length=1, max_length=5_000)


async def apply_bank_callback(uow: UnitOfWork, callback: BankCallback, max_attempts: int = 8) -> str:
    """Apply the bank's word on one payment; returns the payment's status after it."""
    statuses = await apply_bank_callbacks(uow, [callback], max_attempts)
    if callback.payment_id not in statuses:
        raise PaymentNotFound(f"No payment {callback.payment_id}.")
    return statuses[callback.payment_id]


async def apply_bank_callbacks(
    uow: UnitOfWork, callbacks: Sequence[BankCallback], max_attempts: int = 8
) -> dict[str, str]:
    """Apply the bank's word on many payments in the caller's transaction. Returns each known payment's status
    after it; payments the service does not know are left out (and logged)."""
    session = uow.session
    ids = sorted({c.payment_id for c in callbacks})
    found: dict[str, tuple[Payment, Entitlement]] = {}
    for start in range(0, len(ids), CHUNK):  # locked in id order: two batches never wait on each other in a cycle
        rows = await session.execute(
            select(Payment, Entitlement)
            .join(Entitlement, Entitlement.entitlement_id == Payment.entitlement_id)
            .where(Payment.payment_id.in_(ids[start : start + CHUNK]))
            .order_by(Payment.payment_id)
            .with_for_update()
        )
        found.update((payment.payment_id, (payment, entitlement)) for payment, entitlement in rows)
    unknown = [pid for pid in ids if pid not in found]
    if unknown:
        log.warning("bank_callback_unknown_payments", count=len(unknown), first=unknown[0])
    returned = [c.payment_id for c in callbacks if c.status == "returned" and c.payment_id in found]
    settlements = await _settlement_txns(uow, returned)
    postings: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
    events: list[tuple[Any, str]] = []
    moved: list[tuple[Payment, Entitlement]] = []
    now = utcnow()
    for callback in callbacks:
        if callback.payment_id not in found:
            continue
        payment, entitlement = found[callback.payment_id]
        if _retry_later(payment, callback, max_attempts, now):
            continue
        if callback.status == "failed" and callback.temporary:
            callback = callback.model_copy(
                update={"reason": f"gave up after {payment.attempts} attempts: {callback.reason}"}
            )
        if payment.status == callback.status or not domain.can_move(payment.status, callback.status):
            log.info(
                "bank_callback_ignored",
                payment_id=payment.payment_id,
                current=payment.status,
                incoming=callback.status,
            )
            continue
        payment.status = callback.status
        payment.bank_reference = callback.bank_reference
        payment.updated_at = now
        if callback.status == "settled":
            postings.append(
                _posting(
                    "settlement",
                    payment,
                    entitlement,
                    ledger.holding_account(entitlement),
                    ledger.FUND_BANK,
                    f"{entitlement.programme} {payment.period}",
                )
            )
        elif callback.status == "returned" and payment.payment_id in settlements:
            postings.append(
                _posting(
                    "reversal",
                    payment,
                    entitlement,
                    ledger.FUND_BANK,
                    ledger.holding_account(entitlement),
                    f"returned: {entitlement.programme} {payment.period}",
                    reverses=settlements[payment.payment_id],
                )
            )
        events.append((_event(payment, entitlement, callback), payment.case_id))
        moved.append((payment, entitlement))
    await _post_all(uow, postings)
    await uow.outbox.add_many(events)
    for payment, entitlement in moved:
        await advances.after_bank_outcome(uow, payment, entitlement)
    await session.flush()
    return {pid: payment.status for pid, (payment, _) in found.items()}


def _retry_later(payment: Payment, callback: BankCallback, max_attempts: int, now: Any) -> bool:
    """A temporary failure of an order still in flight: pending again, not before its backoff has passed."""
    if not (callback.status == "failed" and callback.temporary and payment.status in ("pending", "submitted")):
        return False
    if payment.attempts >= max_attempts:
        return False
    payment.status = "pending"
    payment.next_attempt_at = now + timedelta(seconds=domain.retry_delay_seconds(payment.attempts))
    payment.last_error = f"temporary: {callback.reason}"[:500]
    payment.updated_at = now
    log.info("payment_retry_scheduled", payment_id=payment.payment_id, attempts=payment.attempts)
    return True


def _event(payment: Payment, entitlement: Entitlement, callback: BankCallback) -> Any:
    common = {
        "case_id": payment.case_id,
        "payment_id": payment.payment_id,
        "determination_id": entitlement.determination_id,
        "programme": entitlement.programme,
        "period": payment.period,
        "amount": payment.amount,
    }
    match callback.status:
        case "settled":
            return PaymentSettled(**common, bank_reference=callback.bank_reference)
        case "failed":
            return PaymentFailed(**common, reason=callback.reason or "failed at the bank")
        case "returned":
            return PaymentReturned(**common, reason=callback.reason or "returned by the bank")


async def _settlement_txns(uow: UnitOfWork, payment_ids: list[str]) -> dict[str, str]:
    """The settlement transaction of each payment that has one (what a return reverses)."""
    found: dict[str, str] = {}
    for start in range(0, len(payment_ids), CHUNK):
        rows = await uow.session.execute(
            select(LedgerTransaction.payment_id, LedgerTransaction.txn_id).where(
                LedgerTransaction.payment_id.in_(payment_ids[start : start + CHUNK]),
                LedgerTransaction.kind == "settlement",
            )
        )
        found.update((pid, txn) for pid, txn in rows)
    return found


def _posting(
    kind: str,
    payment: Payment,
    entitlement: Entitlement,
    debit: str,
    credit: str,
    description: str,
    reverses: str | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    txn_id = str(uuid.uuid4())
    txn = {
        "txn_id": txn_id,
        "kind": kind,
        "payment_id": payment.payment_id,
        "reverses": reverses,
        "posted_at": utcnow(),
        "description": description[:200],
    }
    entries = [
        {
            "txn_id": txn_id,
            "account": account,
            "side": side,
            "amount": payment.amount,
            "programme": entitlement.programme,
            "region": entitlement.region,
            "case_id": payment.case_id,
        }
        for account, side in ((debit, "debit"), (credit, "credit"))
    ]
    ledger.check_balanced(entries)
    return txn, entries


async def _post_all(uow: UnitOfWork, postings: list[tuple[dict[str, Any], list[dict[str, Any]]]]) -> None:
    """Write ledger transactions and their entries, a statement per chunk."""
    for start in range(0, len(postings), CHUNK):
        part = postings[start : start + CHUNK]
        await uow.session.execute(insert(LedgerTransaction), [txn for txn, _ in part])
        await uow.session.execute(insert(LedgerEntry), [entry for _, entries in part for entry in entries])
