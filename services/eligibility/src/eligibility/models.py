from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, String, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.db.base import Money, UtcDateTime, new_metadata
from shared.messaging.tables import messaging_tables


class Base(DeclarativeBase):
    metadata = new_metadata()


messaging = messaging_tables(Base.metadata)


class Verification(Base):
    __tablename__ = "verifications"

    verification_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    case_id: Mapped[str] = mapped_column(String(36), unique=True)
    region: Mapped[str] = mapped_column(String(6))
    # Where the household lives (for leads to reach its community's advisor).
    community: Mapped[str | None] = mapped_column(String(15))
    sources: Mapped[list[str]] = mapped_column(JSON)
    household: Mapped[dict[str, Any]] = mapped_column(JSON)
    counted_members: Mapped[int]
    counted_monthly_income: Mapped[Decimal] = mapped_column(Money())
    per_capita_monthly_income: Mapped[Decimal] = mapped_column(Money())
    # Each source's freshness and reach, and where it differed from the declaration (verification.py).
    evidence: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    differences: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    completed_at: Mapped[datetime] = mapped_column(UtcDateTime())


class PendingVerification(Base):
    """An application, or a review of a household receiving aid, whose verification sources could not answer
    yet: retried with backoff until they do. One per case: a later review replaces a review still waiting
    (it holds the household as found more recently)."""

    __tablename__ = "pending_verifications"

    case_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    # `application`: `application` holds the ApplicationSubmitted payload; `review`: the ApplicationReviewed one.
    kind: Mapped[str] = mapped_column(String(20), default="application", server_default="application")
    application: Mapped[dict[str, Any]] = mapped_column(JSON)
    attempts: Mapped[int]
    reason: Mapped[str] = mapped_column(String(500), default="")
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class Determination(Base):
    __tablename__ = "determinations"
    __table_args__ = (UniqueConstraint("case_id", "programme"),)

    determination_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    case_id: Mapped[str] = mapped_column(String(36), index=True)
    programme: Mapped[str] = mapped_column(String(40))
    region: Mapped[str] = mapped_column(String(6))
    status: Mapped[str] = mapped_column(String(20), index=True)
    monthly_amount: Mapped[Decimal | None] = mapped_column(Money())
    amount: Mapped[Decimal | None] = mapped_column(Money())
    reasons: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    rule: Mapped[str] = mapped_column(String(100))
    # The date of the latest step: proposed, approved (payment runs from the month after) or denied.
    decided_on: Mapped[date]
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    # The procedure (workflow.py): what the proposal says, who may not approve it, and its dates.
    outcome: Mapped[str] = mapped_column(String(10), default="grant")
    payment_kind: Mapped[str] = mapped_column(String(10), default="none")
    payee_account: Mapped[str | None] = mapped_column(String(40))
    filed_by: Mapped[str] = mapped_column(String(200), default="")
    decided_by: Mapped[str | None] = mapped_column(String(200))
    decision_due: Mapped[date | None]
    notice_ends_on: Mapped[date | None] = mapped_column(index=True)
    notice_due: Mapped[date | None]
    review_due: Mapped[date | None] = mapped_column(index=True)
    # A stopped monthly determination is paid through this month (YYYY-MM): the month of the stop, or the
    # last month of a phase-out after employment (lifecycle.py), which may lie months ahead.
    last_period: Mapped[str | None] = mapped_column(String(7))
    # What residents said during public notice: [{"at", "by", "text"}]. Never published in events.
    objections: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    updated_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # The trace of the officer's approval: the approval the end of notice writes days later continues it.
    traceparent: Mapped[str] = mapped_column(String(60), default="")


class Lead(Base):
    """A household a signal (or a sweep) shows may qualify: one per signal."""

    __tablename__ = "leads"

    lead_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    signal_id: Mapped[str | None] = mapped_column(String(36), unique=True)
    household_key: Mapped[str] = mapped_column(String(36), index=True)
    case_id: Mapped[str | None] = mapped_column(String(36))
    region: Mapped[str] = mapped_column(String(6), index=True)
    community: Mapped[str | None] = mapped_column(String(15))
    kind: Mapped[str] = mapped_column(String(30))
    programmes: Mapped[list[str]] = mapped_column(JSON)
    evidence: Mapped[list[str]] = mapped_column(JSON)
    found_on: Mapped[date]
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
