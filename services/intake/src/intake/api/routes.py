from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.responses import JSONResponse

from intake import reviews, service, worklist
from intake.api.schemas import (
    ApplicationCreate,
    ApplicationRead,
    CasePage,
    CaseRead,
    CaseSummary,
    CharityContactRead,
    DeterminationRead,
    DisclosureRead,
    MemberRead,
    PaymentRead,
    ReferralRead,
    Review,
    TimelineEntry,
    TimelineRead,
    Withdrawal,
)
from intake.domain import FULL_ID_ROLES, contact_consent_in_force, is_overdue, mask_id_number
from intake.models import messaging
from intake.settings import vault_for
from shared import audit
from shared.authz import Forbidden, PrincipalDep, authorize, client_of
from shared.contracts.intake import Channel, Programme
from shared.db.uow import UnitOfWork
from shared.idempotency import MAX_KEY_LENGTH, run_once
from shared.logging import get_logger
from shared.service import RuntimeDep

log = get_logger(__name__)
router = APIRouter(prefix="/v1", tags=["cases"], dependencies=[Depends(authorize)])
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", max_length=MAX_KEY_LENGTH)]


@router.post("/applications", status_code=201, response_model=ApplicationRead)
async def create_application(
    body: ApplicationCreate,
    request: Request,
    runtime: RuntimeDep,
    principal: PrincipalDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    location = body.community or body.street or body.region
    if not principal.covers(location):
        raise Forbidden(f"{location} is outside your region {principal.region}.")

    async def action(uow: UnitOfWork) -> tuple[int, dict[str, object]]:
        case = await service.submit_application(uow, body, vault_for(runtime.settings), filed_by=principal.subject)
        await audit.record(
            uow.session,
            messaging.audit,
            principal,
            action="create",
            resource="case",
            resource_id=case.case_id,
            client=client_of(request),
            purpose=f"application via {body.channel}",
        )
        read = ApplicationRead(
            case_id=case.case_id,
            status=case.status,
            region=case.region,
            channel=case.channel,
            programmes=case.programmes,
            created_at=case.created_at,
        )
        return 201, read.model_dump(mode="json")

    status, response, replayed = await run_once(
        runtime.uow,
        messaging.idempotency,
        key=idempotency_key,
        operation="POST /v1/applications",
        body=body.model_dump(mode="json"),
        action=action,
    )
    log.info("application_accepted", case_id=response["case_id"], replayed=replayed, channel=body.channel)
    headers = {"Location": f"/v1/cases/{response['case_id']}"}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return JSONResponse(response, status_code=status, headers=headers)


@router.get("/cases", response_model=CasePage)
async def list_cases(
    runtime: RuntimeDep,
    principal: PrincipalDep,
    region: Annotated[str | None, Query(pattern=r"^\d{2,6}$")] = None,
    street: Annotated[str | None, Query(pattern=r"^\d{9}$|^\d{12}$")] = None,
    community: Annotated[str | None, Query(pattern=r"^\d{12}$|^\d{15}$")] = None,
    status: Annotated[str | None, Query(max_length=30)] = None,
    programme: Annotated[Programme | None, Query()] = None,
    channel: Annotated[Channel | None, Query()] = None,
    overdue: Annotated[bool, Query(description="only cases past their decision deadline")] = False,
    review_due: Annotated[bool, Query(description="only cases whose aid is due for review")] = False,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> CasePage:
    """Worklists by region, street or community, status, programme and channel, newest first, within the
    caller's region. Pages with `cursor` (from `next_cursor`)."""
    filters = {
        "region": region,
        "street": street,
        "community": community,
        "status": status,
        "programme": programme,
        "channel": channel,
        "overdue": "yes" if overdue else None,
        "review_due": "yes" if review_due else None,
    }
    async with runtime.uow() as uow:
        cases, next_cursor = await worklist.list_cases(
            uow, principal, filters=filters, cursor=cursor, limit=limit, today=runtime.clock.today()
        )
    return CasePage(items=[CaseSummary.model_validate(c, from_attributes=True) for c in cases], next_cursor=next_cursor)


@router.get("/cases/{case_id}", response_model=CaseRead)
async def read_case(case_id: str, request: Request, runtime: RuntimeDep, principal: PrincipalDep) -> CaseRead:
    async with runtime.uow() as uow:
        try:
            found = await service.get_case(uow, case_id, principal, client=client_of(request))
        finally:
            await uow.commit()  # the audit entry stays, whether the read was allowed or refused
    case = found["case"]
    vault = vault_for(runtime.settings)
    today = runtime.clock.today()

    def shown(id_number: str) -> str:
        return id_number if principal.role in FULL_ID_ROLES else mask_id_number(id_number)

    return CaseRead(
        case_id=case.case_id,
        status=case.status,
        region=case.region,
        street=case.street,
        community=case.community,
        channel=case.channel,
        programmes=case.programmes,
        submitted_on=case.submitted_on,
        created_at=case.created_at,
        updated_at=case.updated_at,
        verification=case.verification,
        members=[
            MemberRead(
                ref=m.ref,
                name=m.name,
                id_number=shown(vault.decrypt(m.id_number_encrypted)),
                relationship=m.relationship,
                joined_on=m.joined_on,
                left_on=m.left_on,
            )
            for m in found["members"]
        ],
        determinations=[
            DeterminationRead.model_validate(d, from_attributes=True).model_copy(
                update={"overdue": is_overdue(d.status, d.decision_due, today)}
            )
            for d in found["determinations"]
        ],
        payments=[PaymentRead.model_validate(p, from_attributes=True) for p in found["payments"]],
        referrals=[ReferralRead.model_validate(r, from_attributes=True) for r in found["referrals"]],
        contact_phone=vault.decrypt(case.contact_phone_encrypted) if case.contact_phone_encrypted else None,
        charity_contact=CharityContactRead(
            consented=contact_consent_in_force(case.charity_contact_consent, case.charity_contact_withdrawn_at),
            withdrawn_at=case.charity_contact_withdrawn_at,
            disclosures=[DisclosureRead.model_validate(d, from_attributes=True) for d in found["disclosures"]],
        ),
    )


@router.post("/cases/{case_id}/withdrawal", response_model=CaseSummary)
async def withdraw(
    case_id: str, body: Withdrawal, request: Request, runtime: RuntimeDep, principal: PrincipalDep
) -> CaseSummary:
    """The household withdraws its application, or asks to leave the assistance it receives (recorded at
    the window or by its advisor): what is still open is not decided, monthly aid stops after this month,
    and its members may apply again. A closed case answers 409."""
    async with runtime.uow() as uow:
        case = await service.withdraw_case(
            uow, case_id, principal, reason=body.reason, client=client_of(request), today=runtime.clock.today()
        )
        summary = CaseSummary.model_validate(case, from_attributes=True)
        await uow.commit()
    log.info("case_withdrawn", case_id=case_id)
    return summary


@router.post("/cases/{case_id}/reviews", response_model=CaseSummary)
async def review(
    case_id: str, body: Review, request: Request, runtime: RuntimeDep, principal: PrincipalDep
) -> CaseSummary:
    """Record a review of a household receiving aid (yearly, half-yearly with unstable income, or when a
    change is reported), with the household as found now: a person who joined it comes with a new ref, name
    and ID number (409 naming the case if they are on another open case); a member left out has left it and
    may then be on another case. Eligibility verifies the household against its data sources (the case's
    `verification` shows the review's means test, or why it waits) and evaluates it: aid it no longer
    qualifies for stops after this month; aid it still qualifies for goes on to the next review, at the
    amount the rules give now from the month after. Only approved cases whose means test has finished (409
    otherwise)."""
    async with runtime.uow() as uow:
        case = await reviews.review_case(
            uow,
            case_id,
            principal,
            household=body.household,
            kind=body.kind,
            client=client_of(request),
            today=runtime.clock.today(),
            vault=vault_for(runtime.settings),
        )
        summary = CaseSummary.model_validate(case, from_attributes=True)
        await uow.commit()
    return summary


@router.get("/cases/{case_id}/timeline", response_model=TimelineRead)
async def read_timeline(case_id: str, request: Request, runtime: RuntimeDep, principal: PrincipalDep) -> TimelineRead:
    async with runtime.uow() as uow:
        try:
            events = await service.get_timeline(uow, case_id, principal, client=client_of(request))
        finally:
            await uow.commit()
    return TimelineRead(
        case_id=case_id,
        events=[
            TimelineEntry(
                event_id=e.event_id, type=e.event_type, source=e.source, time=e.occurred_at, summary=e.summary
            )
            for e in events
        ],
    )
