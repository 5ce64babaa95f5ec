"""Stuck cases: no progress where the next step was due. Found in the case read model, re-driven by
`doudi redrive --stuck` (run nightly after reconciliation), which has every service send the case's events
again: a lost or skipped event is then applied, and what was applied already is dropped by the inboxes.

A case is stuck when, quiet for `quiet_for`,
- it was submitted and nothing came back from verification (a verification source that is down says so, with
  a `delayed` verification: that case is waiting, not stuck);
- it was verified and no determination followed;
- a determination is still in the procedure past its decision deadline (30 working days, S5 第二十二条).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import or_, select

from intake.domain import IN_PROCEDURE
from intake.models import Case, CaseDetermination
from intake.repository import CaseRepository
from shared.db.uow import UnitOfWork


async def stuck_cases(
    uow: UnitOfWork, *, now: datetime, today: date, quiet_for: timedelta, limit: int = 10_000
) -> list[dict[str, Any]]:
    """The stuck cases, oldest update first, each with why."""
    quiet = Case.updated_at < now - quiet_for
    rows = (
        await uow.session.execute(
            select(Case.case_id, Case.status, Case.verification, Case.updated_at)
            .where(
                quiet,
                or_(Case.status.in_(("submitted", "verified")), CaseRepository.overdue(IN_PROCEDURE, today)),
            )
            .order_by(Case.updated_at)
            .limit(limit)
        )
    ).all()
    ids = [r.case_id for r in rows]
    decided = set(
        (await uow.session.execute(select(CaseDetermination.case_id).where(CaseDetermination.case_id.in_(ids))))
        .scalars()
        .all()
    )
    overdue = set(
        (
            await uow.session.execute(
                select(Case.case_id).where(Case.case_id.in_(ids), CaseRepository.overdue(IN_PROCEDURE, today))
            )
        )
        .scalars()
        .all()
    )
    found = []
    for case_id, status, verification, updated_at in rows:
        if status == "submitted":
            if (verification or {}).get("status") == "delayed":
                continue  # waiting for a verification source, visibly: not lost
            why = "submitted; no verification came back"
        elif status == "verified" and case_id not in decided:
            why = "verified; no determination followed"
        elif case_id in overdue:
            why = "a determination is past its decision deadline"
        else:
            continue
        found.append({"case_id": case_id, "status": status, "since": updated_at.isoformat(), "why": why})
    return found
