from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.db.base import Money, UtcDateTime, new_metadata
from shared.messaging.tables import messaging_tables


class Base(DeclarativeBase):
    metadata = new_metadata()


messaging = messaging_tables(Base.metadata)


class Entitlement(Base):
    """What an approved determination entitles a household to; no payment exists without one."""

    __tablename__ = "entitlements"

    entitlement_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    determination_id: Mapped[str] = mapped_column(String(36), unique=True)
    case_id: Mapped[str] = mapped_column(String(36), index=True)
    programme: Mapped[str] = mapped_column(String(40))
    region: Mapped[str] = mapped_column(String(6))
    kind: Mapped[str] = mapped_column(String(20))  # monthly | one_off | advance
    amount: Mapped[Decimal] = mapped_column(Money())
    first_period: Mapped[str] = mapped_column(String(7))
    # The last month paid once the determination stopped (None: open-ended).
    last_period: Mapped[str | None] = mapped_column(String(7))
    payee_account: Mapped[str] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(20))
    # An advance ("aid first", paid before verification finished): open → confirmed | recovery | cancelled;
    # recovery → recovered | waived. None for every other kind. See advances.py.
    advance_status: Mapped[str | None] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class EntitlementAmount(Base):
    """A change of a monthly entitlement's amount from a period on (the amount opened with is the
    entitlement's own). One per (entitlement, period): a repeated change of the same month replaces it."""

    __tablename__ = "entitlement_amounts"

    entitlement_id: Mapped[str] = mapped_column(ForeignKey("entitlements.entitlement_id"), primary_key=True)
    from_period: Mapped[str] = mapped_column(String(7), primary_key=True)
    amount: Mapped[Decimal] = mapped_column(Money())
    determination_event_id: Mapped[str] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class Payment(Base):
    """One payment instruction. (entitlement, period) is unique in the database: a period is paid once."""

    __tablename__ = "payments"
    __table_args__ = (
        UniqueConstraint("entitlement_id", "period"),
        # The submitter's question, oldest pending first: without it, a sort of every pending row per batch.
        Index("ix_payments_status_created", "status", "created_at"),
    )

    payment_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    entitlement_id: Mapped[str] = mapped_column(ForeignKey("entitlements.entitlement_id"))
    # Not indexed: no query looks payments up by case, and a random key in a million-row index cost every
    # insert and update (three per payment) a write to a random page.
    case_id: Mapped[str] = mapped_column(String(36))
    period: Mapped[str] = mapped_column(String(7))
    amount: Mapped[Decimal] = mapped_column(Money())
    # pending → submitted → settled | failed | returned. Queried through ix_payments_status_created (a second
    # index on status alone cost every insert and update of a million-payment month a write and served nothing).
    status: Mapped[str] = mapped_column(String(20))
    bank_reference: Mapped[str | None] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(default=0)
    # After a failure the bank calls temporary, not before this time (None: as soon as possible).
    next_attempt_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class LedgerTransaction(Base):
    """One balanced posting: its entries' debits equal their credits. Never updated or deleted; a mistake or a
    returned payment is corrected by a new, reversing transaction."""

    __tablename__ = "ledger_transactions"

    txn_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    # settlement | reversal | reclassification (an advance confirmed or flagged) | recovery | write_off
    kind: Mapped[str] = mapped_column(String(30))
    payment_id: Mapped[str] = mapped_column(ForeignKey("payments.payment_id"), index=True)
    reverses: Mapped[str | None] = mapped_column(String(36))
    # Indexed: nightly reconciliation reads one day's postings out of years of them.
    posted_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    description: Mapped[str] = mapped_column(String(200))


class LedgerEntry(Base):
    """A debit or a credit on one account, with the dimensions balances are read by."""

    __tablename__ = "ledger_entries"

    entry_id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    txn_id: Mapped[str] = mapped_column(ForeignKey("ledger_transactions.txn_id"), index=True)
    # benefits_paid | fund_bank | advances_outstanding | recoveries_receivable (ledger.py)
    account: Mapped[str] = mapped_column(String(40))
    side: Mapped[str] = mapped_column(String(6))  # debit | credit
    amount: Mapped[Decimal] = mapped_column(Money())
    programme: Mapped[str] = mapped_column(String(40))
    region: Mapped[str] = mapped_column(String(6))
    # Not indexed, for the reason payments.case_id is not: balances per household read every entry anyway.
    case_id: Mapped[str] = mapped_column(String(36))


class PaymentRun(Base):
    """A monthly payment run: re-running a month resumes it, it never pays a period twice."""

    __tablename__ = "payment_runs"

    run_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    period: Mapped[str] = mapped_column(String(7), index=True)
    scope: Mapped[str] = mapped_column(String(12))
    started_at: Mapped[datetime] = mapped_column(UtcDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    instructed: Mapped[int] = mapped_column(default=0)


class Reconciliation(Base):
    """One night's reconciliation: clean, or the mismatches it found (one line each)."""

    __tablename__ = "reconciliations"

    reconciliation_date: Mapped[date] = mapped_column(primary_key=True)
    ran_at: Mapped[datetime] = mapped_column(UtcDateTime())
    clean: Mapped[bool]
    statement_lines: Mapped[int]
    ledger_transactions: Mapped[int]
    mismatches: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
