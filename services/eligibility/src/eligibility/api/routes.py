from __future__ import annotations

from datetime import date
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel

from eligibility import service
from shared.contracts.base import Money
from shared.service import RuntimeDep

router = APIRouter(prefix="/v1", tags=["determinations"])


class DeterminationRead(BaseModel):
    determination_id: str
    case_id: str
    programme: str
    region: str
    status: str
    monthly_amount: Money | None
    amount: Money | None
    reasons: list[dict[str, Any]]
    rule: str
    decided_on: date


@router.get("/determinations/{determination_id}", response_model=DeterminationRead)
async def read_determination(determination_id: str, runtime: RuntimeDep) -> DeterminationRead:
    async with runtime.uow() as uow:
        found = await service.get_determination(uow, determination_id)
    return DeterminationRead.model_validate(found, from_attributes=True)
