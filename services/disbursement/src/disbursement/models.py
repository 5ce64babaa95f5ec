from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import ForeignKey, String, Text, UniqueConstraint
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
    kind: Mapped[str] = mapped_column(String(20))  # monthly | one_off
    amount: Mapped[Decimal] = mapped_column(Money())
    first_period: Mapped[str] = mapped_column(String(7))
    payee_account: Mapped[str] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class Payment(Base):
    """One payment instruction. (entitlement, period) is unique in the database: a period is paid once."""

    __tablename__ = "payments"
    __table_args__ = (UniqueConstraint("entitlement_id", "period"),)

    payment_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    entitlement_id: Mapped[str] = mapped_column(ForeignKey("entitlements.entitlement_id"))
    case_id: Mapped[str] = mapped_column(String(36), index=True)
    period: Mapped[str] = mapped_column(String(7))
    amount: Mapped[Decimal] = mapped_column(Money())
    # pending → submitted → settled | failed | returned
    status: Mapped[str] = mapped_column(String(20), index=True)
    bank_reference: Mapped[str | None] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())
