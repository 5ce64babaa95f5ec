"""The bank's word on payments: one callback, or a batch's results (回盘) in one signed request, applied in one
transaction. Duplicate and late callbacks change nothing; a settlement posts its ledger transaction, a return
reverses it, a temporary failure is tried again later with backoff, every change is an event.

One code path for both: a single callback is a batch of one. A batch is applied in bulk (its payments read and
locked in one query, its ledger rows and events written with one statement each), so the results of a
million-payment month are booked at the database's pace, not one round trip per payment.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy import bindparam, select, update

from disbursement import advances, domain, ledger
from disbursement.models import Entitlement, LedgerEntry, LedgerTransaction, Payment
from shared.contracts.disbursement import PaymentFailed, PaymentReturned, PaymentSettled
from shared.db.base import utcnow
from shared.db.bulk import insert_rows
from shared.db.uow import UnitOfWork
from shared.errors import NotFound
from shared.ids import new_id
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


@dataclass
class _Payment:
    """What applying the bank's word needs of a payment and its entitlement (read as plain rows: a batch of
    thousands is not worth an ORM object each)."""

    payment_id: str
    entitlement_id: str
    case_id: str
    period: str
    amount: Decimal
    status: str
    attempts: int
    determination_id: str
    programme: str
    region: str
    advance_status: str | None


async def apply_bank_callbacks(
    uow: UnitOfWork, callbacks: Sequence[BankCallback], max_attempts: int = 8
) -> dict[str, str]:
    """Apply the bank's word on many payments in the caller's transaction. Returns each known payment's status
    after it; payments the service does not know are left out (and logged)."""
    session = uow.session
    payments, entitlements = Payment.__table__, Entitlement.__table__
    ids = sorted({c.payment_id for c in callbacks})
    found: dict[str, _Payment] = {}
    for start in range(0, len(ids), CHUNK):  # locked in id order: two batches never wait on each other in a cycle
        rows = await session.execute(
            select(
                payments.c.payment_id,
                payments.c.entitlement_id,
                payments.c.case_id,
                payments.c.period,
                payments.c.amount,
                payments.c.status,
                payments.c.attempts,
                entitlements.c.determination_id,
                entitlements.c.programme,
                entitlements.c.region,
                entitlements.c.advance_status,
            )
            .join(entitlements, entitlements.c.entitlement_id == payments.c.entitlement_id)
            .where(payments.c.payment_id.in_(ids[start : start + CHUNK]))
            .order_by(payments.c.payment_id)
            .with_for_update(of=payments)
        )
        found.update((row.payment_id, _Payment(*row)) for row in rows)
    unknown = [pid for pid in ids if pid not in found]
    if unknown:
        log.warning("bank_callback_unknown_payments", count=len(unknown), first=unknown[0])
    returned = [c.payment_id for c in callbacks if c.status == "returned" and c.payment_id in found]
    settlements = await _settlement_txns(uow, returned)
    postings: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
    events: list[tuple[Any, str]] = []
    changes: dict[str, dict[str, Any]] = {}  # payment id → its new column values
    now = utcnow()
    for callback in callbacks:
        payment = found.get(callback.payment_id)
        if payment is None:
            continue
        if _retry_later(payment, callback, max_attempts):
            changes[payment.payment_id] = {
                "status": "pending",
                "next_attempt_at": now + timedelta(seconds=domain.retry_delay_seconds(payment.attempts)),
                "last_error": f"temporary: {callback.reason}"[:500],
            }
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
        changes.setdefault(payment.payment_id, {}).update(
            {"status": callback.status, "bank_reference": callback.bank_reference}
        )
        holding = ledger.holding_account(payment)
        if callback.status == "settled":
            postings.append(
                _posting("settlement", payment, holding, ledger.FUND_BANK, f"{payment.programme} {payment.period}")
            )
        elif callback.status == "returned" and payment.payment_id in settlements:
            postings.append(
                _posting(
                    "reversal",
                    payment,
                    ledger.FUND_BANK,
                    holding,
                    f"returned: {payment.programme} {payment.period}",
                    reverses=settlements[payment.payment_id],
                )
            )
        events.append((_event(payment, callback), payment.case_id))
    await _update_all(uow, changes, now)
    await _post_all(uow, postings)
    await uow.outbox.add_many(events)
    for payment in found.values():  # an advance owed back that the bank failed or returned: nothing is owed
        if payment.advance_status == "recovery" and payment.status in ("failed", "returned"):
            entitlement = await session.get(Entitlement, payment.entitlement_id, populate_existing=True)
            orm_payment = await session.get(Payment, payment.payment_id, populate_existing=True)
            assert entitlement is not None
            assert orm_payment is not None
            await advances.after_bank_outcome(uow, orm_payment, entitlement)
    await session.flush()
    return {pid: payment.status for pid, payment in found.items()}


def _retry_later(payment: _Payment, callback: BankCallback, max_attempts: int) -> bool:
    """A temporary failure of an order still in flight, not yet tried too often: pending again, later."""
    if not (callback.status == "failed" and callback.temporary and payment.status in ("pending", "submitted")):
        return False
    if payment.attempts >= max_attempts:
        return False
    payment.status = "pending"
    log.info("payment_retry_scheduled", payment_id=payment.payment_id, attempts=payment.attempts)
    return True


async def _update_all(uow: UnitOfWork, changes: dict[str, dict[str, Any]], now: Any) -> None:
    """One executemany per shape of change (settled and the like; retry later)."""
    table = Payment.__table__
    by_shape: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for payment_id, values in changes.items():
        by_shape.setdefault(tuple(sorted(values)), []).append({"pid": payment_id, **values})
    for shape, rows in by_shape.items():
        statement = (
            update(table)
            .where(table.c.payment_id == bindparam("pid"))
            .values({**{column: bindparam(column) for column in shape}, "updated_at": now})
        )
        for start in range(0, len(rows), CHUNK):
            await uow.session.execute(statement, rows[start : start + CHUNK])


def _event(payment: _Payment, callback: BankCallback) -> Any:
    common = {
        "case_id": payment.case_id,
        "payment_id": payment.payment_id,
        "determination_id": payment.determination_id,
        "programme": payment.programme,
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
    payment: _Payment,
    debit: str,
    credit: str,
    description: str,
    reverses: str | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    txn_id = new_id()
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
            "programme": payment.programme,
            "region": payment.region,
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
        await insert_rows(uow.session, LedgerTransaction.__table__, [txn for txn, _ in part])
        await insert_rows(uow.session, LedgerEntry.__table__, [entry for _, rows in part for entry in rows])
