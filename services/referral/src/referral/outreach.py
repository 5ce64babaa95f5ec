"""Outreach tasks: a qualified lead becomes a visit for the advisor answering for the household's community.

    assigned ──visited──▶ visited ──converted (the household applied, channel discovery)──▶ converted
        │                    └──declined──▶ declined
        └──unreachable / declined / converted
A task not visited by its due date (working days) is escalated.
"""

from __future__ import annotations

import asyncio
import tomllib
import uuid
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import Gauge
from sqlalchemy import func, select

from referral.models import OutreachTask, messaging
from shared import audit, periodic
from shared.auth import Principal
from shared.authz import region_clause
from shared.contracts.eligibility import LeadQualified
from shared.contracts.intake import ApplicationSubmitted
from shared.db.base import utcnow
from shared.db.uow import UnitOfWork
from shared.errors import Conflict, NotFound
from shared.logging import get_logger
from shared.workdays import calendar

if TYPE_CHECKING:
    from shared.service import Runtime

log = get_logger(__name__)

ADVISORS = Path(__file__).parent / "advisors.toml"
UNASSIGNED = "unassigned"
MOVES = {
    "assigned": {"visited", "unreachable", "declined", "converted"},
    "visited": {"converted", "declined", "unreachable"},
}


class TaskNotFound(NotFound):
    title = "Outreach task not found"


class TaskClosed(Conflict):
    title = "Not allowed in this state"


@lru_cache(maxsize=1)
def _roster() -> dict[str, dict[str, str]]:
    return tomllib.loads(ADVISORS.read_text(encoding="utf-8"))


def advisor_for(region: str, community: str | None) -> str:
    roster = _roster()
    if community:
        for table, key in (("communities", community), ("streets", community[:9])):
            if key in roster.get(table, {}):
                return roster[table][key]
    return roster.get("districts", {}).get(region, UNASSIGNED)


async def open_task(uow: UnitOfWork, lead: LeadQualified, response_days: int) -> None:
    """One task per lead (a redelivered lead finds its task)."""
    exists = (
        await uow.session.execute(select(OutreachTask.task_id).where(OutreachTask.lead_id == lead.lead_id))
    ).first()
    if exists is not None:
        return
    now = utcnow()
    uow.session.add(
        OutreachTask(
            task_id=str(uuid.uuid4()),
            lead_id=lead.lead_id,
            household_key=lead.household_key,
            case_id=lead.case_id,
            region=lead.region,
            community=lead.community,
            advisor=advisor_for(lead.region, lead.community),
            programmes=list(lead.programmes),
            evidence=list(lead.evidence),
            status="assigned",
            found_on=lead.found_on,
            due_on=calendar().add_working_days(lead.found_on, response_days),
            escalated=False,
            created_at=now,
            updated_at=now,
        )
    )
    await uow.session.flush()


def _scope(principal: Principal) -> Any:
    # A street token sees its communities' tasks (a community code starts with its street's).
    street = func.substr(OutreachTask.community, 1, 9)
    return region_clause(principal, OutreachTask.region, street=street, community=OutreachTask.community)


async def list_tasks(
    uow: UnitOfWork,
    principal: Principal,
    *,
    community: str | None,
    status: str | None,
    mine: bool,
    limit: int,
) -> list[OutreachTask]:
    statement = select(OutreachTask).where(_scope(principal))
    if community:
        statement = statement.where(OutreachTask.community == community)
    if status:
        statement = statement.where(OutreachTask.status == status)
    if mine:
        statement = statement.where(OutreachTask.advisor == principal.subject)
    statement = statement.order_by(OutreachTask.due_on, OutreachTask.task_id).limit(limit)
    return list((await uow.session.execute(statement)).scalars())


async def record_outcome(
    uow: UnitOfWork, task_id: str, principal: Principal, outcome: str, note: str, case_id: str | None
) -> OutreachTask:
    task = (
        await uow.session.execute(
            select(OutreachTask).where(OutreachTask.task_id == task_id, _scope(principal)).with_for_update()
        )
    ).scalar_one_or_none()
    if task is None:
        raise TaskNotFound(f"No outreach task {task_id}.")
    if outcome not in MOVES.get(task.status, set()):
        raise TaskClosed(f"a task that is {task.status} cannot become {outcome}", current_status=task.status)
    now = utcnow()
    task.status = outcome
    task.note = note[:500]
    task.updated_at = now
    if outcome == "visited" or (task.visited_at is None and outcome in ("converted", "declined")):
        task.visited_at = now
    if outcome == "converted":
        task.application_case_id = case_id
    return task


async def converted_by_application(uow: UnitOfWork, application: ApplicationSubmitted) -> None:
    """An application that names the lead it came from converts that lead's visit, whatever the advisor
    recorded so far (a closed task stays closed)."""
    if application.lead_id is None:
        return
    task = (
        await uow.session.execute(
            select(OutreachTask).where(OutreachTask.lead_id == application.lead_id).with_for_update()
        )
    ).scalar_one_or_none()
    if task is None or "converted" not in MOVES.get(task.status, set()):
        return
    now = utcnow()
    task.status = "converted"
    task.application_case_id = application.case_id
    task.visited_at = task.visited_at or now
    task.updated_at = now


async def escalate_overdue(uow: UnitOfWork, today: date) -> int:
    """Tasks nobody has visited by their due date are escalated (to the street's supervisor's list)."""
    rows = (
        (
            await uow.session.execute(
                select(OutreachTask)
                .where(
                    OutreachTask.status == "assigned", OutreachTask.due_on < today, OutreachTask.escalated.is_(False)
                )
                .with_for_update(skip_locked=True)
            )
        )
        .scalars()
        .all()
    )
    for task in rows:
        task.escalated = True
        task.updated_at = utcnow()
    await audit.record_many(
        uow.session,
        messaging.audit,
        audit.worker("referral"),
        [
            {
                "action": "escalate",
                "resource": "outreach_task",
                "resource_id": task.task_id,
                "purpose": f"not visited by {task.due_on}",
            }
            for task in rows
        ],
    )
    return len(rows)


async def summary(uow: UnitOfWork, principal: Principal) -> dict[str, Any]:
    """How discovery is doing in the caller's region: tasks by status, escalations, days from signal to visit."""
    rows = (
        await uow.session.execute(
            select(OutreachTask.status, func.count()).where(_scope(principal)).group_by(OutreachTask.status)
        )
    ).all()
    by_status: dict[str, int] = dict(rows)  # type: ignore[arg-type]
    visited = (
        await uow.session.execute(
            select(OutreachTask.found_on, OutreachTask.visited_at).where(
                _scope(principal), OutreachTask.visited_at.is_not(None)
            )
        )
    ).all()
    days = sorted((visited_at.date() - found_on).days for found_on, visited_at in visited)
    escalated = (
        await uow.session.execute(
            select(func.count()).select_from(OutreachTask).where(_scope(principal), OutreachTask.escalated.is_(True))
        )
    ).scalar_one()
    return {
        "leads": sum(by_status.values()),
        "tasks_by_status": by_status,
        "completed": sum(by_status.get(s, 0) for s in ("converted", "declined", "unreachable")),
        "converted": by_status.get("converted", 0),
        "escalated": escalated,
        "days_signal_to_visit_median": days[len(days) // 2] if days else None,
    }


TASKS = Gauge("doudi_outreach_tasks", "Outreach tasks by status (escalated counted apart)", ["status"])


async def watch_tasks(runtime: Runtime, stop: asyncio.Event) -> None:
    """Worker loop: escalate tasks past their due date, and count tasks by status for /metrics."""

    async def step() -> None:
        async with runtime.uow() as uow:
            escalated = await escalate_overdue(uow, runtime.clock.today())
            await uow.commit()
            counts = dict(
                (
                    await uow.session.execute(select(OutreachTask.status, func.count()).group_by(OutreachTask.status))
                ).all()
            )
            late = (
                await uow.session.execute(
                    select(func.count()).select_from(OutreachTask).where(OutreachTask.escalated.is_(True))
                )
            ).scalar_one()
        for status in ("assigned", "visited", "converted", "declined", "unreachable", *counts):
            TASKS.labels(status).set(counts.get(status, 0))
        TASKS.labels("escalated").set(late)
        if escalated:
            log.warning("outreach_tasks_escalated", count=escalated)

    seconds = float(getattr(runtime.settings, "escalation_check_seconds", 300.0))
    await periodic.every(seconds, step, stop, name="outreach_watch")
