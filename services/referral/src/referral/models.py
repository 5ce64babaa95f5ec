from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import JSON, String, UniqueConstraint, false
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.db.base import Money, UtcDateTime, new_metadata
from shared.messaging.tables import messaging_tables


class Base(DeclarativeBase):
    metadata = new_metadata()


messaging = messaging_tables(Base.metadata)


class Need(Base):
    """A household's need, published to charities masked: no name, no ID number."""

    __tablename__ = "needs"
    # A household refused several programmes needs each kind of help once.
    __table_args__ = (UniqueConstraint("case_id", "category"),)

    need_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    case_id: Mapped[str] = mapped_column(String(36), index=True)
    # The denial that published it; None for a need an advisor made by matching a charity's offer.
    determination_id: Mapped[str | None] = mapped_column(String(36), index=True)
    # The charity's offer it was matched to (two-way claiming), if any.
    offer_id: Mapped[str | None] = mapped_column(String(36), index=True)
    category: Mapped[str] = mapped_column(String(30))
    area: Mapped[str] = mapped_column(String(12), index=True)
    amount: Mapped[Decimal | None] = mapped_column(Money())
    reason: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    # published → claimed (by one charity, or matched to its offer) → delivered
    claimed_by: Mapped[str | None] = mapped_column(String(100), index=True)
    delivered_amount: Mapped[Decimal | None] = mapped_column(Money())
    delivery_note: Mapped[str] = mapped_column(String(500), default="")
    updated_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # The household agreed that the charity holding this need may have its contact details from intake
    # (referral holds none); false again once it withdraws that consent.
    consented: Mapped[bool] = mapped_column(default=False, server_default=false())


class OutreachTask(Base):
    """A visit an advisor owes a household a lead found (政策找人)."""

    __tablename__ = "outreach_tasks"

    task_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    lead_id: Mapped[str] = mapped_column(String(36), unique=True)
    household_key: Mapped[str] = mapped_column(String(36))
    case_id: Mapped[str | None] = mapped_column(String(36))
    region: Mapped[str] = mapped_column(String(6), index=True)
    community: Mapped[str | None] = mapped_column(String(15), index=True)
    advisor: Mapped[str] = mapped_column(String(200), index=True)
    programmes: Mapped[list[str]] = mapped_column(JSON)
    evidence: Mapped[list[str]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(20), index=True)
    found_on: Mapped[date]
    due_on: Mapped[date]
    escalated: Mapped[bool] = mapped_column(default=False)
    note: Mapped[str] = mapped_column(String(500), default="")
    visited_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    application_case_id: Mapped[str | None] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class KnownCase(Base):
    """A case as referral knows it from its application: where it is, so that matching an offer to it can be
    scoped to the caller's region and the offer's area. No facts about the household are kept."""

    __tablename__ = "cases"

    case_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    region: Mapped[str] = mapped_column(String(6), index=True)
    street: Mapped[str | None] = mapped_column(String(12))
    community: Mapped[str | None] = mapped_column(String(15))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    # Whether the household's consent to share its contact details with a charity holding its need is in
    # force (given at application, until withdrawn): what its needs say to charities.
    contact_consent: Mapped[bool] = mapped_column(default=False, server_default=false())


class Offer(Base):
    """Help a charity offers (two-way claiming): advisors and officers in its area match it to households,
    each match a need claimed by the charity, up to `capacity` households."""

    __tablename__ = "offers"

    offer_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    organisation: Mapped[str] = mapped_column(String(100), index=True)
    category: Mapped[str] = mapped_column(String(30))
    # The region code as offered, and its prefix (310000 → 31) that cases and callers are matched against.
    area: Mapped[str] = mapped_column(String(6))
    area_prefix: Mapped[str] = mapped_column(String(6), index=True)
    capacity: Mapped[int]
    amount: Mapped[Decimal | None] = mapped_column(Money())
    description: Mapped[str] = mapped_column(String(500))
    matched: Mapped[int] = mapped_column(default=0)
    # open → full (every place matched)
    status: Mapped[str] = mapped_column(String(20), index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class ServiceReferral(Base):
    """A household referred to a provider for a service: counselling, shelter. One per case and kind.

    referred ──accepted──▶ accepted ──completed / no_show
        └──declined
    unassigned: no registered provider of the kind covers the case's area.
    """

    __tablename__ = "service_referrals"
    __table_args__ = (UniqueConstraint("case_id", "kind"),)

    referral_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    case_id: Mapped[str] = mapped_column(String(36), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str] = mapped_column(String(200))
    region: Mapped[str] = mapped_column(String(6), index=True)
    street: Mapped[str | None] = mapped_column(String(12))
    community: Mapped[str | None] = mapped_column(String(15))
    organisation: Mapped[str | None] = mapped_column(String(100), index=True)
    status: Mapped[str] = mapped_column(String(20), index=True)
    outcome: Mapped[str] = mapped_column(String(500), default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())
    accepted_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    closed_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
