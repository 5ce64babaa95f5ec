from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator

from eligibility import decisions, service
from eligibility.evaluation import EvaluationRefused, evaluate_request
from eligibility.models import messaging
from eligibility.params import ParameterError, catalogue
from shared import audit
from shared.authz import PrincipalDep, authorize, client_of
from shared.contracts.base import Money
from shared.contracts.intake import HouseholdFacts
from shared.errors import DomainError
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
    outcome: str
    decided_by: str | None = None
    decision_due: date | None = None
    notice_ends_on: date | None = None
    notice_due: date | None = None
    objections: int = 0

    @field_validator("objections", mode="before")
    @classmethod
    def _count(cls, value: Any) -> int:
        return len(value) if isinstance(value, list) else int(value or 0)


class Rejection(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=2000, description="Why the officer does not confirm it")


class Objection(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(min_length=1, max_length=4000, description="What the objection says, as received")


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


class DeterminationList(BaseModel):
    items: list[DeterminationRead]


@router.get("/determinations", response_model=DeterminationList)
async def list_determinations(
    runtime: RuntimeDep,
    principal: PrincipalDep,
    case_id: Annotated[str | None, Query(max_length=36)] = None,
    status: Annotated[str | None, Query(max_length=20)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> DeterminationList:
    """What waits for a decision (`status=proposed`, `review`), or one case's determinations, in the caller's
    region, the longest waiting first."""
    async with runtime.uow() as uow:
        rows = await service.list_determinations(uow, principal, case_id=case_id, status=status, limit=limit)
    return DeterminationList(items=[DeterminationRead.model_validate(r, from_attributes=True) for r in rows])


@router.get("/determinations/{determination_id}", response_model=DeterminationRead)
async def read_determination(determination_id: str, runtime: RuntimeDep, principal: PrincipalDep) -> DeterminationRead:
    async with runtime.uow() as uow:
        found = await service.get_determination(uow, determination_id, principal)
    return DeterminationRead.model_validate(found, from_attributes=True)


async def _step(
    request: Request, runtime: Any, principal: Any, determination_id: str, action: str, step: Any, why: str = ""
) -> DeterminationRead:
    async with runtime.uow() as uow:
        try:
            found = await step(uow)
            read = DeterminationRead.model_validate(found, from_attributes=True)
            outcome = "ok"
        except DomainError as exc:
            await uow.rollback()
            outcome, read = f"refused: {exc.status_code}", None
            error = exc
        await audit.record(
            uow.session,
            messaging.audit,
            principal,
            action=action,
            resource="determination",
            resource_id=determination_id,
            outcome=outcome,
            client=client_of(request),
            purpose=why[:200],
        )
        await uow.commit()
    if read is None:
        raise error
    return read


@router.post("/determinations/{determination_id}/approve", response_model=DeterminationRead)
async def approve_determination(
    determination_id: str, request: Request, runtime: RuntimeDep, principal: PrincipalDep
) -> DeterminationRead:
    """An officer confirms the proposal: a grant goes to public notice (7 days), a proposed refusal becomes
    the decision. Whoever filed the case may not (403)."""
    return await _step(
        request,
        runtime,
        principal,
        determination_id,
        "approve",
        lambda uow: decisions.approve(uow, determination_id, principal, runtime.clock),
    )


@router.post("/determinations/{determination_id}/reject", response_model=DeterminationRead)
async def reject_determination(
    determination_id: str, body: Rejection, request: Request, runtime: RuntimeDep, principal: PrincipalDep
) -> DeterminationRead:
    """An officer does not confirm a proposed grant: it is denied with the officer's reason."""
    return await _step(
        request,
        runtime,
        principal,
        determination_id,
        "reject",
        lambda uow: decisions.reject(uow, determination_id, principal, runtime.clock, body.reason),
        body.reason,
    )


@router.post("/determinations/{determination_id}/objections", response_model=DeterminationRead)
async def object_to_determination(
    determination_id: str, body: Objection, request: Request, runtime: RuntimeDep, principal: PrincipalDep
) -> DeterminationRead:
    """Record an objection received during public notice: the determination goes back to review."""
    return await _step(
        request,
        runtime,
        principal,
        determination_id,
        "object",
        lambda uow: decisions.object_to(uow, determination_id, principal, runtime.clock, body.text),
    )
