"""Outreach tasks for advisors, and how discovery is doing."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from referral import outreach
from referral.models import messaging
from shared import audit
from shared.authz import PrincipalDep, authorize, client_of
from shared.service import RuntimeDep

router = APIRouter(prefix="/v1", tags=["outreach"], dependencies=[Depends(authorize)])


class TaskRead(BaseModel):
    task_id: str
    lead_id: str
    case_id: str | None
    region: str
    community: str | None
    advisor: str
    programmes: list[str]
    evidence: list[str]
    status: str
    found_on: date
    due_on: date
    escalated: bool
    note: str
    visited_at: datetime | None
    application_case_id: str | None


class TaskList(BaseModel):
    items: list[TaskRead]


class Outcome(BaseModel):
    model_config = ConfigDict(extra="forbid")

    outcome: Literal["visited", "converted", "declined", "unreachable"]
    note: str = Field(default="", max_length=500)
    # converted: the case of the application the household made (channel discovery)
    case_id: str | None = Field(default=None, max_length=36)


@router.get("/outreach-tasks", response_model=TaskList)
async def list_tasks(
    runtime: RuntimeDep,
    principal: PrincipalDep,
    community: Annotated[str | None, Query(pattern=r"^\d{12}$|^\d{15}$")] = None,
    status: Annotated[str | None, Query(max_length=20)] = None,
    mine: Annotated[bool, Query(description="only tasks assigned to me")] = False,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> TaskList:
    """An advisor's visits, the soonest due first, within the caller's region."""
    async with runtime.uow() as uow:
        rows = await outreach.list_tasks(uow, principal, community=community, status=status, mine=mine, limit=limit)
    return TaskList(items=[TaskRead.model_validate(r, from_attributes=True) for r in rows])


@router.post("/outreach-tasks/{task_id}/outcome", response_model=TaskRead)
async def record_outcome(
    task_id: str, body: Outcome, request: Request, runtime: RuntimeDep, principal: PrincipalDep
) -> TaskRead:
    """What the visit came to: visited, converted (the household applied), declined or unreachable."""
    async with runtime.uow() as uow:
        task = await outreach.record_outcome(uow, task_id, principal, body.outcome, body.note, body.case_id)
        read = TaskRead.model_validate(task, from_attributes=True)
        await audit.record(
            uow.session,
            messaging.audit,
            principal,
            action=f"outreach_{body.outcome}",
            resource="outreach_task",
            resource_id=task_id,
            client=client_of(request),
        )
        await uow.commit()
    return read


@router.get("/discovery/summary")
async def discovery_summary(runtime: RuntimeDep, principal: PrincipalDep) -> dict[str, Any]:
    """Whether policy is finding people: leads, tasks by status, conversions, escalations, days to a visit."""
    async with runtime.uow() as uow:
        return await outreach.summary(uow, principal)
