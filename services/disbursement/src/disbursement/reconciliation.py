"""Nightly reconciliation: the ledger against the bank's statement for a day, and entitlements against the
payments of the month. Each mismatch is a line in the report and a `disbursement.reconciliation.flagged`
event. A job that owns its transaction (called by `doudi reconcile`); re-running a day replaces its report."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import delete, select

from disbursement import repository
from disbursement.bank import BankClient
from disbursement.models import Entitlement, LedgerEntry, LedgerTransaction, Payment, PaymentRun, Reconciliation
from shared.contracts.disbursement import MismatchFlagged
from shared.db.base import utcnow
from shared.db.uow import UnitOfWork

KIND_OF_TXN = {"settlement": "settled", "reversal": "returned"}


async def reconcile(uow: UnitOfWork, bank: BankClient, day: date) -> Reconciliation:
    session = uow.session
    lines = await bank.statement(day.isoformat())
    start = datetime.combine(day, time.min, tzinfo=UTC)
    posted = (
        await session.execute(
            select(LedgerTransaction.kind, LedgerTransaction.payment_id, LedgerEntry.amount, Payment.case_id)
            .join(LedgerEntry, LedgerEntry.txn_id == LedgerTransaction.txn_id)
            .join(Payment, Payment.payment_id == LedgerTransaction.payment_id)
            .where(
                LedgerTransaction.posted_at >= start,
                LedgerTransaction.posted_at < start + timedelta(days=1),
                LedgerEntry.side == "debit",
            )
        )
    ).all()
    ours = {(payment_id, KIND_OF_TXN[kind]): (amount, case_id) for kind, payment_id, amount, case_id in posted}
    theirs = {(line["payment_id"], line["status"]): Decimal(line["amount"]) for line in lines}
    unknown_cases = await _cases_of(uow, {pid for pid, _ in theirs})
    mismatches: list[dict[str, Any]] = []
    for (payment_id, status), (amount, case_id) in sorted(ours.items()):
        if (payment_id, status) not in theirs:
            mismatches.append(
                {
                    "kind": "missing_at_bank",
                    "case_id": case_id,
                    "payment_id": payment_id,
                    "detail": f"ledger has {status} {amount}; the bank's statement does not",
                }
            )
        elif theirs[(payment_id, status)] != amount:
            mismatches.append(
                {
                    "kind": "amount_differs",
                    "case_id": case_id,
                    "payment_id": payment_id,
                    "detail": f"ledger {amount}, bank {theirs[(payment_id, status)]}",
                }
            )
    for (payment_id, status), amount in sorted(theirs.items()):
        if (payment_id, status) not in ours:
            mismatches.append(
                {
                    "kind": "missing_in_ledger",
                    "case_id": unknown_cases.get(payment_id, "unknown"),
                    "payment_id": payment_id,
                    "detail": f"the bank booked {status} {amount}; the ledger has no such posting",
                }
            )
    mismatches += await _due_unpaid(uow, day)
    await session.execute(delete(Reconciliation).where(Reconciliation.reconciliation_date == day))
    report = Reconciliation(
        reconciliation_date=day,
        ran_at=utcnow(),
        clean=not mismatches,
        statement_lines=len(lines),
        ledger_transactions=len(ours),
        mismatches=mismatches,
    )
    session.add(report)
    for mismatch in mismatches:
        await uow.outbox.add(MismatchFlagged(reconciliation_date=day.isoformat(), **mismatch), key=mismatch["case_id"])
    return report


async def _cases_of(uow: UnitOfWork, payment_ids: set[str]) -> dict[str, str]:
    if not payment_ids:
        return {}
    rows = await uow.session.execute(
        select(Payment.payment_id, Payment.case_id).where(Payment.payment_id.in_(payment_ids))
    )
    return dict(rows.all())


async def _due_unpaid(uow: UnitOfWork, day: date) -> list[dict[str, Any]]:
    """Once the month's payment run has finished, every active monthly entitlement that has started must have
    a payment for the month: nothing due is left unpaid."""
    period = f"{day.year:04d}-{day.month:02d}"
    finished = (
        await uow.session.execute(
            select(PaymentRun.run_id)
            .where(PaymentRun.period == period, PaymentRun.finished_at.is_not(None), PaymentRun.scope == "000000")
            .limit(1)
        )
    ).first()
    if finished is None:
        return []
    paid = select(Payment.entitlement_id).where(Payment.period == period)
    rows = (
        await uow.session.execute(
            select(Entitlement.entitlement_id, Entitlement.case_id).where(
                repository.due_in(period),
                Entitlement.entitlement_id.not_in(paid),
            )
        )
    ).all()
    return [
        {
            "kind": "due_unpaid",
            "case_id": case_id,
            "entitlement_id": entitlement_id,
            "detail": f"no payment for {period} after the month's run",
        }
        for entitlement_id, case_id in rows
    ]


def report_of(reconciliation: Reconciliation) -> dict[str, Any]:
    return {
        "date": reconciliation.reconciliation_date.isoformat(),
        "ran_at": reconciliation.ran_at.isoformat(),
        "clean": reconciliation.clean,
        "statement_lines": reconciliation.statement_lines,
        "ledger_transactions": reconciliation.ledger_transactions,
        "mismatches": reconciliation.mismatches,
    }
