from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from referral import charities, service
from referral.models import messaging
from shared import audit
from shared.authz import PrincipalDep, authorize, client_of
from shared.contracts.base import Money
from shared.service import RuntimeDep

router = APIRouter(prefix="/v1", tags=["needs"], dependencies=[Depends(authorize)])


class NeedRead(BaseModel):
    """A need as charities see it: masked, with no name or ID number."""

    need_id: str
    category: str
    area: str
    amount: Money | None
    reason: str
    status: str
    created_at: datetime
    claimed_by: str | None = None
    # The charity's offer an advisor matched it to (two-way claiming), if that is how it was claimed.
    offer_id: str | None = None
    # The household agreed that the charity holding this need may have its contact details: that charity
    # asks intake for them (`GET /v1/needs/{need_id}/contact` on intake), never referral, which holds none.
    consented: bool = False


class NeedList(BaseModel):
    items: list[NeedRead]


@router.get("/needs", response_model=NeedList)
async def list_needs(
    runtime: RuntimeDep,
    principal: PrincipalDep,
    area: Annotated[str | None, Query(pattern=r"^\d{6}$")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> NeedList:
    async with runtime.uow() as uow:
        needs = await service.list_needs(uow, area, limit, principal)
    return NeedList(items=[NeedRead.model_validate(n, from_attributes=True) for n in needs])


class Delivery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    amount: Money | None = Field(default=None, ge=0, description="what the help came to, in yuan, if money")
    note: str = Field(default="", max_length=500)


async def _charity_step(
    request: Request, runtime: Any, principal: Any, need_id: str, action: str, step: Any
) -> NeedRead:
    async with runtime.uow() as uow:
        need = await step(uow)
        read = NeedRead.model_validate(need, from_attributes=True)
        await audit.record(
            uow.session,
            messaging.audit,
            principal,
            action=action,
            resource="need",
            resource_id=need_id,
            client=client_of(request),
        )
        await uow.commit()
    return read


@router.post("/needs/{need_id}/claim", response_model=NeedRead)
async def claim_need(need_id: str, request: Request, runtime: RuntimeDep, principal: PrincipalDep) -> NeedRead:
    """A charity takes a need on: within its categories and areas (404 outside them) and its capacity (409)."""
    return await _charity_step(
        request, runtime, principal, need_id, "claim", lambda uow: charities.claim(uow, need_id, principal)
    )


@router.post("/needs/{need_id}/delivery", response_model=NeedRead)
async def deliver_need(
    need_id: str, body: Delivery, request: Request, runtime: RuntimeDep, principal: PrincipalDep
) -> NeedRead:
    """The charity that claimed a need says the help was given."""
    return await _charity_step(
        request,
        runtime,
        principal,
        need_id,
        "deliver",
        lambda uow: charities.deliver(uow, need_id, principal, body.amount, body.note),
    )
