"""Service referrals (counselling, shelter): casework follows them by case; providers record each step."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from referral import service_referrals
from referral.models import ServiceReferral, messaging
from shared import audit
from shared.auth import Principal
from shared.authz import PrincipalDep, authorize, client_of
from shared.service import RuntimeDep

router = APIRouter(prefix="/v1", tags=["service referrals"], dependencies=[Depends(authorize)])


class ServiceReferralRead(BaseModel):
    referral_id: str
    # Casework sees the case; a provider does not (it learns whom to see from the advisor, not from here).
    case_id: str | None
    kind: str
    reason: str
    region: str
    community: str | None
    organisation: str | None
    status: str
    outcome: str
    created_at: datetime
    updated_at: datetime
    accepted_at: datetime | None
    closed_at: datetime | None


class ServiceReferralList(BaseModel):
    items: list[ServiceReferralRead]


class ServiceOutcome(BaseModel):
    model_config = ConfigDict(extra="forbid")

    outcome: Literal["accepted", "declined", "completed", "no_show"]
    note: str = Field(default="", max_length=500, description="a short account (not case notes)")


def _read(referral: ServiceReferral, principal: Principal) -> ServiceReferralRead:
    read = ServiceReferralRead.model_validate(referral, from_attributes=True)
    return read.model_copy(update={"case_id": None}) if principal.role == "charity" else read


@router.get("/service-referrals", response_model=ServiceReferralList)
async def list_service_referrals(
    runtime: RuntimeDep,
    principal: PrincipalDep,
    case_id: Annotated[str | None, Query(max_length=36)] = None,
    kind: Annotated[Literal["counselling", "shelter"] | None, Query()] = None,
    status: Annotated[str | None, Query(max_length=20)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> ServiceReferralList:
    """A case's referrals (`case_id`), or a provider's: newest first, within the caller's region (a provider
    sees only those made to it)."""
    async with runtime.uow() as uow:
        rows = await service_referrals.list_referrals(
            uow, principal, case_id=case_id, kind=kind, status=status, limit=limit
        )
    return ServiceReferralList(items=[_read(r, principal) for r in rows])


@router.post("/service-referrals/{referral_id}/outcome", response_model=ServiceReferralRead)
async def record_service_outcome(
    referral_id: str, body: ServiceOutcome, request: Request, runtime: RuntimeDep, principal: PrincipalDep
) -> ServiceReferralRead:
    """The provider's step: accepted or declined; then completed (with what came of it) or no_show. 404 for a
    referral made to someone else, 409 for a step its state does not allow."""
    async with runtime.uow() as uow:
        referral = await service_referrals.record_outcome(uow, referral_id, principal, body.outcome, body.note)
        read = _read(referral, principal)
        await audit.record(
            uow.session,
            messaging.audit,
            principal,
            action=f"service_{body.outcome}",
            resource="service_referral",
            resource_id=referral_id,
            client=client_of(request),
        )
        await uow.commit()
    return read
