"""The double-entry ledger. A settled payment debits `benefits_paid` and credits `fund_bank` (money left the
programme fund's bank account for a household); a return posts the mirror image. Balances are read per
programme fund, per region and per household from the same entries."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from disbursement.models import Entitlement, LedgerEntry, LedgerTransaction, Payment
from shared.db.base import utcnow

BENEFITS_PAID = "benefits_paid"
FUND_BANK = "fund_bank"


class UnbalancedTransaction(Exception):
    pass


def _entries(
    txn_id: str, debit: str, credit: str, amount: Decimal, payment: Payment, entitlement: Entitlement
) -> list[LedgerEntry]:
    common = {
        "txn_id": txn_id,
        "amount": amount,
        "programme": entitlement.programme,
        "region": entitlement.region,
        "case_id": payment.case_id,
    }
    entries = [LedgerEntry(account=debit, side="debit", **common), LedgerEntry(account=credit, side="credit", **common)]
    debits = sum((e.amount for e in entries if e.side == "debit"), Decimal("0"))
    credits = sum((e.amount for e in entries if e.side == "credit"), Decimal("0"))
    if debits != credits or amount <= 0:
        raise UnbalancedTransaction(f"debits {debits} != credits {credits}")
    return entries


async def post_settlement(session: AsyncSession, payment: Payment, entitlement: Entitlement) -> str:
    txn_id = str(uuid.uuid4())
    session.add(
        LedgerTransaction(
            txn_id=txn_id,
            kind="settlement",
            payment_id=payment.payment_id,
            reverses=None,
            posted_at=utcnow(),
            description=f"{entitlement.programme} {payment.period}",
        )
    )
    await session.flush()
    session.add_all(_entries(txn_id, BENEFITS_PAID, FUND_BANK, payment.amount, payment, entitlement))
    return txn_id


async def post_reversal(session: AsyncSession, payment: Payment, entitlement: Entitlement) -> str | None:
    """Reverse the payment's settlement with a new transaction; None when there is nothing to reverse."""
    original = (
        await session.execute(
            select(LedgerTransaction.txn_id).where(
                LedgerTransaction.payment_id == payment.payment_id, LedgerTransaction.kind == "settlement"
            )
        )
    ).scalar_one_or_none()
    if original is None:
        return None
    txn_id = str(uuid.uuid4())
    session.add(
        LedgerTransaction(
            txn_id=txn_id,
            kind="reversal",
            payment_id=payment.payment_id,
            reverses=original,
            posted_at=utcnow(),
            description=f"returned: {entitlement.programme} {payment.period}",
        )
    )
    await session.flush()
    session.add_all(_entries(txn_id, FUND_BANK, BENEFITS_PAID, payment.amount, payment, entitlement))
    return txn_id


async def balances(session: AsyncSession, by: str, where: Any = None) -> list[dict[str, Any]]:
    """Net benefits paid (debits − credits on `benefits_paid`) grouped by `programme`, `region` or household.
    Summed in Decimal here: SQLite would add the amounts as floats."""
    column = {"programme": LedgerEntry.programme, "region": LedgerEntry.region, "household": LedgerEntry.case_id}[by]
    statement = select(column, LedgerEntry.txn_id, LedgerEntry.side, LedgerEntry.amount).where(
        LedgerEntry.account == BENEFITS_PAID
    )
    if where is not None:
        statement = statement.where(where)
    totals: dict[str, Decimal] = {}
    transactions: dict[str, set[str]] = {}
    for key, txn_id, side, amount in (await session.execute(statement)).all():
        totals[key] = totals.get(key, Decimal("0.00")) + (amount if side == "debit" else -amount)
        transactions.setdefault(key, set()).add(txn_id)
    return [{by: key, "transactions": len(transactions[key]), "paid": str(totals[key])} for key in sorted(totals)]


async def trial_balance(session: AsyncSession) -> tuple[Decimal, Decimal]:
    """Total debits and total credits over the whole ledger: equal when every transaction balances."""
    rows = (await session.execute(select(LedgerEntry.side, LedgerEntry.amount))).all()
    debit = sum((Decimal(str(a)) for s, a in rows if s == "debit"), Decimal("0.00"))
    credit = sum((Decimal(str(a)) for s, a in rows if s == "credit"), Decimal("0.00"))
    return debit, credit
