"""A household's contact details for the charity holding its need (with its consent), and withdrawing it."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel

from intake import consent
from intake.api.schemas import CaseSummary
from intake.settings import vault_for
from shared.authz import PrincipalDep, authorize, client_of
from shared.service import RuntimeDep

router = APIRouter(prefix="/v1", tags=["consent"], dependencies=[Depends(authorize)])


class ContactRead(BaseModel):
    """The applicant's name and phone (null when the household gave none), for the charity holding the need."""

    need_id: str
    category: str
    name: str
    phone: str | None


@router.get("/needs/{need_id}/contact", response_model=ContactRead)
async def read_contact(need_id: str, request: Request, runtime: RuntimeDep, principal: PrincipalDep) -> ContactRead:
    """For the charity that holds a need (claimed it, or its offer was matched to the case) and has not yet
    delivered it: the applicant's name and phone, if the household consented to share them with a charity
    and has not withdrawn that consent (403 otherwise). A need the caller does not hold, or that intake has
    not yet heard was claimed, answers 404; a delivered one 409. Every answer is in the audit log."""
    async with runtime.uow() as uow:
        try:
            found = await consent.disclose_contact(
                uow, need_id, principal, vault_for(runtime.settings), client=client_of(request)
            )
        finally:
            await uow.commit()  # the audit entry stays, whether the details were given or refused
    return ContactRead(need_id=found.need_id, category=found.category, name=found.name, phone=found.phone)


@router.post("/cases/{case_id}/contact-consent/withdrawal", response_model=CaseSummary)
async def withdraw_contact_consent(
    case_id: str, request: Request, runtime: RuntimeDep, principal: PrincipalDep
) -> CaseSummary:
    """The household withdraws its consent to share its contact details with a charity (recorded by its
    advisor or at the window): no charity is given them from now on. Again: no change; 409 when it never
    consented."""
    async with runtime.uow() as uow:
        try:
            case = await consent.withdraw_consent(uow, case_id, principal, client=client_of(request))
            summary = CaseSummary.model_validate(case, from_attributes=True)
        finally:
            await uow.commit()
    return summary
