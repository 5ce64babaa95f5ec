"""Queries of the disbursement service that are more than a lookup."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from disbursement.domain import PAYING
from disbursement.models import Entitlement, EntitlementAmount, Payment
from shared.db.base import utcnow
from shared.db.dialect import insert_for
from shared.ids import new_id

# Rows per multi-row INSERT: ten columns each, so 10,000 parameters, under asyncpg's 32,767 and SQLite's
# 32,766 (a payment run's chunk of 5,000 in one statement broke the run on PostgreSQL).
INSERT_ROWS = 1_000


async def add_missing_payments(
    session: AsyncSession, entitlements: Sequence[Any], period: str
) -> list[tuple[Any, Any]]:
    """Insert a pending payment for each entitlement that has none for `period`: rows of entitlement_id,
    case_id, payee_account and `amount`, the entitlement's amount for the period (`amount_in`). Returns those
    inserted (as rows: payment_id, entitlement_id, case_id, amount, status) with their entitlement, held ones
    left out.
    ON CONFLICT DO NOTHING on the unique (entitlement, period) key makes this safe to repeat and to race."""
    if not entitlements:
        return []
    now = utcnow()
    rows = [
        {
            "payment_id": new_id(),
            "entitlement_id": e.entitlement_id,
            "case_id": e.case_id,
            "period": period,
            "amount": e.amount,
            "status": "pending" if e.payee_account else "held",
            "attempts": 0,
            "last_error": None if e.payee_account else "no payee account on the application",
            "created_at": now,
            "updated_at": now,
        }
        for e in entitlements
    ]
    insert = insert_for(session)
    by_id = {e.entitlement_id: e for e in entitlements}
    created: list[tuple[Any, Any]] = []
    for start in range(0, len(rows), INSERT_ROWS):  # bound parameters per statement stay under the drivers' caps
        # An executemany of one cached statement (SQLAlchemy batches it as multi-row VALUES itself), not a new
        # thousand-row statement to compile per slice: compiling was half the run's time.
        inserted = await session.execute(
            insert(Payment.__table__)
            .on_conflict_do_nothing(index_elements=["entitlement_id", "period"])
            .returning(
                Payment.__table__.c.payment_id,
                Payment.__table__.c.entitlement_id,
                Payment.__table__.c.case_id,
                Payment.__table__.c.amount,
                Payment.__table__.c.status,
            ),
            rows[start : start + INSERT_ROWS],
        )
        created += [(row, by_id[row.entitlement_id]) for row in inserted if row.status == "pending"]
    return created


def due_in(period: str) -> Any:
    """The entitlements a monthly payment is due on for `period`: paying, started, and not stopped before."""
    return and_(
        Entitlement.status.in_(PAYING),
        Entitlement.kind == "monthly",
        Entitlement.first_period <= period,
        or_(Entitlement.last_period.is_(None), Entitlement.last_period >= period),
    )


def amount_in(period: str) -> Any:
    """An entitlement's monthly amount for `period`, as a column of a query on entitlements: the latest
    change from that period or before, else the amount it opened with."""
    changes = EntitlementAmount.__table__
    entitlements = Entitlement.__table__
    latest = (
        select(changes.c.amount)
        .where(changes.c.entitlement_id == entitlements.c.entitlement_id, changes.c.from_period <= period)
        .order_by(changes.c.from_period.desc())
        .limit(1)
        .scalar_subquery()
    )
    return func.coalesce(latest, entitlements.c.amount)
