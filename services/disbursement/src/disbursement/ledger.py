"""The double-entry ledger. A settled payment debits `benefits_paid` and credits `fund_bank` (money left the
programme fund's bank account for a household); a return posts the mirror image. Balances are read per
programme fund, per region and per household from the same entries.

An advance ("aid first", paid before verification finished) is held in `advances_outstanding` until
verification confirms it (moved to `benefits_paid`) or does not support it (moved to
`recoveries_receivable`, where it stays until an officer records it recovered, back into `fund_bank`, or
waived, written off to `benefits_paid`)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from disbursement.models import Entitlement, LedgerEntry, LedgerTransaction, Payment
from shared.db.base import utcnow
from shared.ids import new_id

BENEFITS_PAID = "benefits_paid"
FUND_BANK = "fund_bank"
# Money advanced before verification finished ("aid first"): not yet a benefit, not yet owed back.
ADVANCES_OUTSTANDING = "advances_outstanding"
# Money paid in advance that verification did not support: owed back until recovered or written off.
RECOVERIES_RECEIVABLE = "recoveries_receivable"


class UnbalancedTransaction(Exception):
    pass


def holding_account(entitlement: Any) -> str:
    """The account a payment's money sits in once settled: benefits paid, except for an advance that
    verification has not confirmed (advances outstanding) or has not supported (recoveries receivable).
    `entitlement`: anything with the entitlement's `advance_status`."""
    match entitlement.advance_status:
        case "open":
            return ADVANCES_OUTSTANDING
        case "recovery" | "recovered":  # recovered and then returned by the bank: the household is owed
            return RECOVERIES_RECEIVABLE
        case _:
            return BENEFITS_PAID


def check_balanced(entries: list[dict[str, Any]]) -> None:
    """Debits equal credits, and money moves: every posting is checked before it is written."""
    debits = sum((e["amount"] for e in entries if e["side"] == "debit"), Decimal("0"))
    credits = sum((e["amount"] for e in entries if e["side"] == "credit"), Decimal("0"))
    if debits != credits or debits <= 0:
        raise UnbalancedTransaction(f"debits {debits} != credits {credits}")


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
    rows = [{"account": debit, "side": "debit", **common}, {"account": credit, "side": "credit", **common}]
    check_balanced(rows)
    return [LedgerEntry(**row) for row in rows]


async def post(
    session: AsyncSession,
    kind: str,
    payment: Payment,
    entitlement: Entitlement,
    *,
    debit: str,
    credit: str,
    amount: Decimal,
    description: str,
    reverses: str | None = None,
) -> str:
    """Post one balanced transaction about a payment: `amount` from `credit` to `debit`."""
    txn_id = new_id()
    session.add(
        LedgerTransaction(
            txn_id=txn_id,
            kind=kind,
            payment_id=payment.payment_id,
            reverses=reverses,
            posted_at=utcnow(),
            description=description[:200],
        )
    )
    await session.flush()
    session.add_all(_entries(txn_id, debit, credit, amount, payment, entitlement))
    await session.flush()  # balances read in the same transaction see it
    return txn_id


async def account_balance(session: AsyncSession, account: str, payment_id: str) -> Decimal:
    """Debits − credits on one account for one payment's transactions."""
    rows = (
        await session.execute(
            select(LedgerEntry.side, LedgerEntry.amount)
            .join(LedgerTransaction, LedgerTransaction.txn_id == LedgerEntry.txn_id)
            .where(LedgerTransaction.payment_id == payment_id, LedgerEntry.account == account)
        )
    ).all()
    return sum((a if s == "debit" else -a for s, a in rows), Decimal("0.00"))


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


async def accounts(session: AsyncSession, where: Any = None) -> dict[str, str]:
    """Each account's balance (debits − credits), summed in Decimal."""
    statement = select(LedgerEntry.account, LedgerEntry.side, LedgerEntry.amount)
    if where is not None:
        statement = statement.where(where)
    totals: dict[str, Decimal] = {}
    for account, side, amount in (await session.execute(statement)).all():
        totals[account] = totals.get(account, Decimal("0.00")) + (amount if side == "debit" else -amount)
    return {account: str(totals[account]) for account in sorted(totals)}


async def trial_balance(session: AsyncSession) -> tuple[Decimal, Decimal]:
    """Total debits and total credits over the whole ledger: equal when every transaction balances."""
    rows = (await session.execute(select(LedgerEntry.side, LedgerEntry.amount))).all()
    debit = sum((Decimal(str(a)) for s, a in rows if s == "debit"), Decimal("0.00"))
    credit = sum((Decimal(str(a)) for s, a in rows if s == "credit"), Decimal("0.00"))
    return debit, credit
