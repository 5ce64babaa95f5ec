from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from eligibility import service
from eligibility.evaluation import EvaluationRefused, evaluate_request
from eligibility.params import ParameterError, catalogue
from shared.authz import PrincipalDep, authorize
from shared.contracts.base import Money
from shared.contracts.intake import HouseholdFacts
from shared.service import RuntimeDep

router = APIRouter(prefix="/v1", tags=["eligibility"], dependencies=[Depends(authorize)])


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


class EvaluationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    region: str = Field(pattern=r"^\d{6}$")
    as_of: date
    parameter_overrides: dict[str, str | int | bool | list[str]] = Field(default_factory=dict, max_length=50)
    household: HouseholdFacts


class ParameterRead(BaseModel):
    name: str
    value: Any
    unit: str
    region: str
    effective: date | None
    verified: bool
    reference: str


class ParameterList(BaseModel):
    region: str
    as_of: date
    parameters: list[ParameterRead]


@router.post("/evaluations")
async def create_evaluation(body: EvaluationRequest) -> dict[str, Any]:
    """What-if evaluation of one household for every programme; nothing is stored."""
    return evaluate_request(body.model_dump(mode="json"))


@router.get("/parameters", response_model=ParameterList)
async def list_parameters(
    region: Annotated[str, Query(pattern=r"^\d{6}$")], as_of: Annotated[date, Query()]
) -> ParameterList:
    """Every parameter in force in a region on a date, with its legal reference and whether it is verified."""
    try:
        resolved = catalogue().resolve(region, as_of)
    except ParameterError as exc:
        raise EvaluationRefused(exc) from None
    return ParameterList(
        region=region,
        as_of=as_of,
        parameters=[
            ParameterRead(
                name=r.name,
                value=list(r.value) if isinstance(r.value, tuple) else r.value,
                unit=r.unit,
                region=r.region,
                effective=r.effective,
                verified=r.verified,
                reference=r.reference,
            )
            for r in sorted(resolved.values(), key=lambda r: r.name)
        ],
    )


@router.get("/determinations/{determination_id}", response_model=DeterminationRead)
async def read_determination(determination_id: str, runtime: RuntimeDep, principal: PrincipalDep) -> DeterminationRead:
    async with runtime.uow() as uow:
        found = await service.get_determination(uow, determination_id, principal)
    return DeterminationRead.model_validate(found, from_attributes=True)
