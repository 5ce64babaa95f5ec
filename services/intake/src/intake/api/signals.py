"""POST /v1/signals: other departments' systems report what may put a household in need."""

from __future__ import annotations

from datetime import date

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from intake import signals
from intake.domain import id_number_problem
from intake.models import messaging
from intake.settings import vault_for
from shared import audit
from shared.authz import PrincipalDep, authorize, client_of
from shared.contracts.base import Money
from shared.contracts.intake import SignalKind
from shared.logging import get_logger
from shared.service import RuntimeDep

log = get_logger(__name__)
router = APIRouter(prefix="/v1", tags=["signals"], dependencies=[Depends(authorize)])


class SignalCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source: str = Field(min_length=1, max_length=60, description="the registered source sending it")
    source_id: str = Field(min_length=1, max_length=100, description="the source's own id: a resend is recognised")
    kind: SignalKind
    id_number: str = Field(description="the person the signal is about (18 characters, GB 11643)")
    region: str = Field(pattern=r"^\d{6}$")
    community: str | None = Field(default=None, pattern=r"^\d{12}$|^\d{15}$")
    occurred_on: date
    amount: Money | None = Field(default=None, ge=0, description="a bill, arrears or loss, in yuan")

    @field_validator("id_number")
    @classmethod
    def _valid_id(cls, value: str) -> str:
        problem = id_number_problem(value)
        if problem:
            raise ValueError(f"not a valid resident ID number: {problem}")
        return value


class SignalAccepted(BaseModel):
    signal_id: str
    household_key: str
    matched_case: bool
    recognised: bool = Field(description="true when this source had already sent this source_id")


@router.post("/signals", status_code=201, response_model=SignalAccepted, responses={200: {"model": SignalAccepted}})
async def receive_signal(
    body: SignalCreate, request: Request, runtime: RuntimeDep, principal: PrincipalDep
) -> JSONResponse:
    """Record a department's signal about a person and match it to a household: 201 when new, 200 when the
    source had sent it before (nothing is doubled). An unregistered source or a kind it may not report is a
    422; a token for another source, 403."""
    incoming = signals.SignalIn(**body.model_dump(exclude={"id_number"}), id_number=body.id_number)
    signals.check_source(incoming, principal)
    async with runtime.uow() as uow:
        row, new = await signals.receive(uow, incoming, vault_for(runtime.settings))
        await audit.record(
            uow.session,
            messaging.audit,
            principal,
            action="signal" if new else "signal_resent",
            resource="signal",
            resource_id=row.signal_id,
            client=client_of(request),
            purpose=f"{body.kind} from {body.source}",
        )
        await uow.commit()
    log.info("signal_received", signal_id=row.signal_id, kind=row.kind, new=new, matched=row.case_id is not None)
    accepted = SignalAccepted(
        signal_id=row.signal_id,
        household_key=row.household_key,
        matched_case=row.case_id is not None,
        recognised=not new,
    )
    return JSONResponse(accepted.model_dump(mode="json"), status_code=201 if new else 200)
