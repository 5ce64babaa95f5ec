from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from referral import service
from shared.authz import PrincipalDep, authorize
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
