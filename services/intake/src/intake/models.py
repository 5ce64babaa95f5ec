from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text, UniqueConstraint, false
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.db.base import Money, UtcDateTime, new_metadata
from shared.messaging.tables import messaging_tables


class Base(DeclarativeBase):
    metadata = new_metadata()


messaging = messaging_tables(Base.metadata)


class Case(Base):
    __tablename__ = "cases"

    case_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    status: Mapped[str] = mapped_column(String(30), index=True)
    region: Mapped[str] = mapped_column(String(6), index=True)
    street: Mapped[str | None] = mapped_column(String(12))
    community: Mapped[str | None] = mapped_column(String(15))
    channel: Mapped[str] = mapped_column(String(20))
    programmes: Mapped[list[str]] = mapped_column(JSON)
    household: Mapped[dict[str, Any]] = mapped_column(JSON)
    payee_account: Mapped[str | None] = mapped_column(String(40))
    submitted_on: Mapped[date]
    verified_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # The means test as the case view shows it: completed (sources, their freshness, differences from the
    # declaration) or delayed (which source, why, when it is tried again).
    verification: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())
    # How the household may be reached, encrypted like an ID number (`shared.pii`); optional.
    contact_phone_encrypted: Mapped[str | None] = mapped_column(Text)
    # Consent, given at application, that a charity which takes on the household's need may have the
    # applicant's name and phone (`consent.py`); withdrawn for good once `charity_contact_withdrawn_at` is set.
    charity_contact_consent: Mapped[bool] = mapped_column(default=False, server_default=false())
    charity_contact_withdrawn_at: Mapped[datetime | None] = mapped_column(UtcDateTime())

    # Worklists page through cases newest first.
    __table_args__ = (Index("ix_cases_created", "created_at", "case_id"),)


class Member(Base):
    """A person on a case. The resident ID number is never stored readable: it is encrypted (AES-GCM, key id
    first) and found through a keyed hash (`shared.pii`)."""

    __tablename__ = "members"

    case_id: Mapped[str] = mapped_column(ForeignKey("cases.case_id"), primary_key=True)
    ref: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(50))
    id_number_encrypted: Mapped[str] = mapped_column(Text)
    id_number_hash: Mapped[str] = mapped_column(String(64), index=True)
    relationship: Mapped[str] = mapped_column(String(20))
    # Membership changes a review recorded: the day a person joined the household (none: on the application)
    # and the day they left it (they are then free to be on another case; the row stays, as history).
    joined_on: Mapped[date | None]
    left_on: Mapped[date | None]


class OpenMembership(Base):
    """A person on a case that is still open: the primary key makes "at most one open case per person" a fact
    the database keeps, even for two applications racing each other. Keyed by the ID number's lookup hash."""

    __tablename__ = "open_memberships"

    id_number_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    case_id: Mapped[str] = mapped_column(String(36), index=True)


class CaseEvent(Base):
    """The timeline: every event about the case, from any service, once."""

    __tablename__ = "case_events"
    __table_args__ = (Index("ix_case_events_case_time", "case_id", "occurred_at", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[str] = mapped_column(String(36))
    event_id: Mapped[str] = mapped_column(String(100), unique=True)
    event_type: Mapped[str] = mapped_column(String(200))
    source: Mapped[str] = mapped_column(String(200))
    occurred_at: Mapped[datetime] = mapped_column(UtcDateTime())
    summary: Mapped[dict[str, Any]] = mapped_column(JSON)


class CaseDetermination(Base):
    __tablename__ = "case_determinations"

    determination_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    case_id: Mapped[str] = mapped_column(String(36), index=True)
    programme: Mapped[str] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(20))
    monthly_amount: Mapped[Decimal | None] = mapped_column(Money())
    amount: Mapped[Decimal | None] = mapped_column(Money())
    reasons: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    decided_on: Mapped[date | None]
    rule: Mapped[str] = mapped_column(String(100), default="")
    # The procedure's dates, as eligibility set them: decision due, end of public notice, refusal notice due.
    decision_due: Mapped[date | None]
    notice_ends_on: Mapped[date | None]
    notice_due: Mapped[date | None]
    review_due: Mapped[date | None]
    # Stopped monthly aid is paid through this month (YYYY-MM): the stop's month, or a phase-out's last.
    last_period: Mapped[str | None] = mapped_column(String(7))


class CasePayment(Base):
    __tablename__ = "case_payments"

    payment_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    case_id: Mapped[str] = mapped_column(String(36), index=True)
    determination_id: Mapped[str] = mapped_column(String(36))
    programme: Mapped[str] = mapped_column(String(40))
    period: Mapped[str] = mapped_column(String(7))
    amount: Mapped[Decimal] = mapped_column(Money())
    status: Mapped[str] = mapped_column(String(20))
    bank_reference: Mapped[str | None] = mapped_column(String(64))
    reason: Mapped[str | None] = mapped_column(String(500))


class CaseReferral(Base):
    __tablename__ = "case_referrals"

    referral_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    case_id: Mapped[str] = mapped_column(String(36), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    category: Mapped[str] = mapped_column(String(30))
    area: Mapped[str] = mapped_column(String(12))
    status: Mapped[str] = mapped_column(String(20))
    amount: Mapped[Decimal | None] = mapped_column(Money())
    organisation: Mapped[str | None] = mapped_column(String(100))
    reason: Mapped[str] = mapped_column(String(200), default="", server_default="")
    outcome: Mapped[str] = mapped_column(String(500), default="", server_default="")


class ContactDisclosure(Base):
    """The applicant's contact details given to a charity holding one of the case's needs, with the
    household's consent: what the case view shows the household. The audit log holds the same, chained."""

    __tablename__ = "contact_disclosures"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[str] = mapped_column(String(36), index=True)
    need_id: Mapped[str] = mapped_column(String(36))
    organisation: Mapped[str] = mapped_column(String(100))
    disclosed_at: Mapped[datetime] = mapped_column(UtcDateTime())


class Signal(Base):
    """Another department's signal about a person. (source, source_id) is unique: a resent signal is
    recognised, not doubled. The person is kept only as their ID number's lookup hash."""

    __tablename__ = "signals"
    __table_args__ = (UniqueConstraint("source", "source_id"),)

    signal_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    source: Mapped[str] = mapped_column(String(60))
    source_id: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(30))
    id_number_hash: Mapped[str] = mapped_column(String(64), index=True)
    region: Mapped[str] = mapped_column(String(6), index=True)
    community: Mapped[str | None] = mapped_column(String(15))
    occurred_on: Mapped[date]
    amount: Mapped[Decimal | None] = mapped_column(Money())
    household_key: Mapped[str] = mapped_column(String(36))
    case_id: Mapped[str | None] = mapped_column(String(36))
    received_at: Mapped[datetime] = mapped_column(UtcDateTime())
