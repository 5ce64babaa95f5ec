"""Intake's use cases. They change state and queue events; the entrypoint that opened the unit of work commits."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy.exc import IntegrityError

from intake.api.schemas import ApplicationCreate
from intake.domain import (
    CLOSED_STATUSES,
    DETERMINATION_RANK,
    DETERMINATION_STATUS,
    IN_PROCEDURE,
    PAYMENT_RANK,
    case_status,
    may_review,
    may_withdraw,
    supersedes,
)
from intake.models import Case, CaseDetermination, CasePayment, CaseReferral, Member, OpenMembership, messaging
from intake.repository import CaseRepository
from shared import audit
from shared.auth import Principal
from shared.authz import region_clause
from shared.contracts.base import Event
from shared.contracts.disbursement import (
    PaymentCancelled,
    PaymentFailed,
    PaymentInstructed,
    PaymentReturned,
    PaymentSettled,
)
from shared.contracts.eligibility import (
    DeterminationApproved,
    DeterminationChanged,
    DeterminationDenied,
    DeterminationNoticed,
    DeterminationObjected,
    DeterminationProposed,
    DeterminationReviewed,
    DeterminationStopped,
    DeterminationWithdrawn,
    VerificationCompleted,
)
from shared.contracts.intake import ApplicationReviewed, ApplicationSubmitted, ApplicationWithdrawn, HouseholdFacts
from shared.contracts.referral import NeedPublished
from shared.db.base import utcnow
from shared.db.uow import UnitOfWork
from shared.errors import Conflict, NotFound, Unprocessable
from shared.logging import get_logger
from shared.pii import PiiVault

log = get_logger(__name__)
SOURCE = "/doudi/intake"
PAYMENT_STATUS = {
    "disbursement.payment.cancelled": "cancelled",
    "disbursement.payment.instructed": "pending",
    "disbursement.payment.settled": "settled",
    "disbursement.payment.failed": "failed",
    "disbursement.payment.returned": "returned",
}


class CaseNotFound(NotFound):
    title = "Case not found"


class PersonInOpenCase(Conflict):
    title = "Already on an open case"


def _already_open(ref: str, case_id: str) -> PersonInOpenCase:
    return PersonInOpenCase(
        f"Member {ref} already belongs to open case {case_id}: follow that case, or close it first.",
        case_id=case_id,
        member=ref,
    )


async def submit_application(uow: UnitOfWork, command: ApplicationCreate, vault: PiiVault, filed_by: str = "") -> Case:
    now = utcnow()
    case_id = str(uuid.uuid4())
    facts = HouseholdFacts.model_validate({**command.household.model_dump(mode="json"), "emergency": command.emergency})
    # Empty means the household asked for nothing in particular: every programme is evaluated anyway.
    programmes = list(command.programmes or [])
    case = Case(
        case_id=case_id,
        status="submitted",
        region=command.region,
        street=command.street,
        community=command.community,
        channel=command.channel,
        programmes=programmes,
        household=facts.model_dump(mode="json"),
        payee_account=command.payee_account,
        submitted_on=now.date(),
        created_at=now,
        updated_at=now,
    )
    members = [
        Member(
            case_id=case_id,
            ref=m.ref,
            name=m.name,
            id_number_encrypted=vault.encrypt(m.id_number),
            id_number_hash=vault.lookup_hash(m.id_number),
            relationship=m.relationship,
        )
        for m in command.household.members
    ]
    repository = CaseRepository(uow.session)
    await _hold_members(uow, repository, case_id, command, vault)
    repository.add(case, members)
    await uow.session.flush()
    event = ApplicationSubmitted(
        case_id=case_id,
        region=command.region,
        street=command.street,
        community=command.community,
        channel=command.channel,
        programmes=programmes,
        household=facts,
        submitted_at=now.date(),
        payee_account=command.payee_account,
        filed_by=filed_by,
    )
    event_id = await uow.outbox.add(event, key=case_id)
    await repository.add_event(
        case_id=case_id,
        event_id=event_id,
        event_type=event.event_type,
        source=SOURCE,
        occurred_at=now,
        summary={
            "channel": command.channel,
            "programmes": programmes,
            "members": len(command.household.members),
        },
    )
    return case


async def _hold_members(
    uow: UnitOfWork, repository: CaseRepository, case_id: str, command: ApplicationCreate, vault: PiiVault
) -> None:
    """A person belongs to at most one open case. Checked first for a clear answer, then kept by the primary
    key of `open_memberships` for two applications racing each other."""
    ref_of: dict[str, str] = {}
    for member in command.household.members:
        for hashed in vault.lookup_hashes(member.id_number):  # every key: rows written before a rotation too
            ref_of[hashed] = member.ref
    found = await repository.open_case_of(list(ref_of))
    if found is not None:
        raise _already_open(ref_of[found[0]], found[1])
    try:
        async with uow.session.begin_nested():
            uow.session.add_all(
                OpenMembership(id_number_hash=vault.lookup_hash(m.id_number), case_id=case_id)
                for m in command.household.members
            )
            await uow.session.flush()
    except IntegrityError:
        found = await repository.open_case_of(list(ref_of))
        raise _already_open(ref_of[found[0]] if found else "?", found[1] if found else "(just filed)") from None


async def record_event(uow: UnitOfWork, event: Event, *, event_id: str, source: str, occurred_at: datetime) -> None:
    """Fold another service's event into the case read model and its timeline. Order-tolerant: events of
    one case can arrive from different topics in any order."""
    case_id: str = event.case_id  # type: ignore[attr-defined]
    repository = CaseRepository(uow.session)
    case = await repository.get(case_id, for_update=True)
    recorded = await repository.add_event(
        case_id=case_id,
        event_id=event_id,
        event_type=event.event_type,
        source=source,
        occurred_at=occurred_at,
        summary=_summary(event),
    )
    # A redelivered event changes nothing; an event for a case this intake never saw stays on the timeline, so
    # nothing is lost, but there is no read model to fold it into (cases originate here, so it cannot happen
    # today).
    if not recorded or case is None:
        return
    match event:
        case VerificationCompleted():
            case.verified_at = case.verified_at or occurred_at
        case (
            DeterminationProposed()
            | DeterminationNoticed()
            | DeterminationObjected()
            | DeterminationApproved()
            | DeterminationDenied()
            | DeterminationWithdrawn()
            | DeterminationStopped()
            | DeterminationReviewed()
            | DeterminationChanged()
        ):
            status = DETERMINATION_STATUS[event.event_type]
            row = await repository.get_determination(event.determination_id)
            if row is None:
                row = CaseDetermination(
                    determination_id=event.determination_id, case_id=case_id, programme=event.programme, status=status
                )
                uow.session.add(row)
            elif not supersedes(DETERMINATION_RANK, row.status, status):
                row = None
            if row is not None:
                row.status = status
                row.monthly_amount = event.monthly_amount
                row.amount = event.amount
                row.reasons = [r.model_dump() for r in event.reasons]
                row.decided_on = event.decided_on
                row.rule = event.rule
                if isinstance(event, DeterminationProposed):
                    row.decision_due = event.decision_due
                if isinstance(event, DeterminationNoticed):
                    row.notice_ends_on = event.notice_ends_on
                elif isinstance(event, DeterminationObjected):
                    row.notice_ends_on = None
                if isinstance(event, DeterminationDenied):
                    row.notice_due = event.notice_due
                if isinstance(event, DeterminationApproved | DeterminationReviewed):
                    row.review_due = event.review_due
                elif isinstance(event, DeterminationStopped):
                    row.review_due = None
        case PaymentInstructed() | PaymentSettled() | PaymentFailed() | PaymentReturned() | PaymentCancelled():
            status = PAYMENT_STATUS[event.event_type]
            payment = await repository.get_payment(event.payment_id)
            if payment is None:
                payment = CasePayment(
                    payment_id=event.payment_id,
                    case_id=case_id,
                    determination_id=event.determination_id,
                    programme=event.programme,
                    period=event.period,
                    amount=event.amount,
                    status=status,
                )
                uow.session.add(payment)
            elif supersedes(PAYMENT_RANK, payment.status, status):
                payment.status = status
                payment.amount = event.amount  # an amount amended before the bank had it
            if isinstance(event, PaymentSettled):
                payment.bank_reference = event.bank_reference
            elif isinstance(event, PaymentFailed | PaymentReturned | PaymentCancelled):
                payment.reason = event.reason
        case NeedPublished():
            if await repository.get_referral(event.need_id) is None:
                uow.session.add(
                    CaseReferral(
                        referral_id=event.need_id,
                        case_id=case_id,
                        kind="charity_need",
                        category=event.category,
                        area=event.area,
                        status="published",
                        amount=event.amount,
                    )
                )
    await uow.session.flush()
    statuses = [d.status for d in await repository.list_determinations(case_id)]
    before = case.status
    if before != "withdrawn":  # a withdrawal is the household's word: later events do not reopen the case
        case.status = case_status(case.verified_at is not None, statuses)
    if case.status in CLOSED_STATUSES and before not in CLOSED_STATUSES:
        await repository.release_members(case_id)
    elif before in CLOSED_STATUSES and case.status not in CLOSED_STATUSES:
        await repository.reclaim_members(case_id)
    case.updated_at = utcnow()


class CaseClosed(Conflict):
    title = "Case closed"


class NotUnderAssistance(Conflict):
    title = "Not receiving aid"


async def review_case(
    uow: UnitOfWork,
    case_id: str,
    principal: Principal,
    *,
    household: HouseholdFacts,
    kind: str,
    client: str,
    today: date,
) -> Case:
    """Record a review of a household receiving aid (on schedule, or a reported change): its facts as found
    now go to eligibility, which evaluates them again and stops or continues the aid."""
    repository = CaseRepository(uow.session)
    case = await _visible_case(uow, repository, case_id, principal, "review", client)
    if not may_review(case.status):
        raise NotUnderAssistance(f"Case {case_id} is {case.status}; only approved cases are reviewed.", case_id=case_id)
    now = utcnow()
    case.household = household.model_dump(mode="json")
    case.updated_at = now
    event = ApplicationReviewed(case_id=case_id, region=case.region, household=household, reviewed_on=today, kind=kind)
    event_id = await uow.outbox.add(event, key=case_id)
    await repository.add_event(
        case_id=case_id,
        event_id=event_id,
        event_type=event.event_type,
        source=SOURCE,
        occurred_at=now,
        summary={"reviewed_on": today.isoformat(), "kind": kind, "by": principal.subject},
    )
    return case


async def withdraw_case(
    uow: UnitOfWork, case_id: str, principal: Principal, *, reason: str, client: str, today: date
) -> Case:
    """The household withdraws its application, or asks to leave the assistance it receives: the case
    closes, its members may apply again, eligibility decides nothing still open and stops monthly aid after
    this month."""
    repository = CaseRepository(uow.session)
    case = await _visible_case(uow, repository, case_id, principal, "withdraw", client)
    if not may_withdraw(case.status):
        raise CaseClosed(f"Case {case_id} is {case.status}; there is nothing to withdraw.", case_id=case_id)
    case = await repository.get(case_id, for_update=True) or case
    now = utcnow()
    case.status = "withdrawn"
    case.updated_at = now
    await repository.release_members(case_id)
    event = ApplicationWithdrawn(case_id=case_id, region=case.region, withdrawn_on=today)
    event_id = await uow.outbox.add(event, key=case_id)
    await repository.add_event(
        case_id=case_id,
        event_id=event_id,
        event_type=event.event_type,
        source=SOURCE,
        occurred_at=now,
        summary={"withdrawn_on": today.isoformat(), "by": principal.subject, "reason": reason[:200]},
    )
    return case


def _summary(event: Event) -> dict[str, Any]:
    data = event.model_dump(mode="json")
    data.pop("case_id", None)
    return data


def case_scope(principal: Principal) -> Any:
    return region_clause(principal, Case.region, Case.street, Case.community)


async def _visible_case(
    uow: UnitOfWork, repository: CaseRepository, case_id: str, principal: Principal, action: str, client: str
) -> Case:
    """The case if the caller's region covers it. Reading a case reads personal data, so every read is
    audited; a case outside the caller's region answers exactly like a missing one, and the attempt is
    audited too."""
    case = await repository.get(case_id, where=case_scope(principal))
    outcome = "ok"
    if case is None:
        outcome = "denied_out_of_region" if await repository.get(case_id) is not None else "not_found"
        if outcome == "denied_out_of_region":
            log.warning("case_outside_region", case_id=case_id, subject=principal.subject, region=principal.region)
    await audit.record(
        uow.session,
        messaging.audit,
        principal,
        action=action,
        resource="case",
        resource_id=case_id,
        outcome=outcome,
        client=client,
    )
    if case is None:
        raise CaseNotFound(f"No case {case_id}.", case_id=case_id)
    return case


async def get_case(uow: UnitOfWork, case_id: str, principal: Principal, client: str = "") -> dict[str, Any]:
    repository = CaseRepository(uow.session)
    case = await _visible_case(uow, repository, case_id, principal, "read", client)
    return {
        "case": case,
        "members": await repository.list_members(case_id),
        "determinations": await repository.list_determinations(case_id),
        "payments": await repository.list_payments(case_id),
        "referrals": await repository.list_referrals(case_id),
    }


async def get_timeline(uow: UnitOfWork, case_id: str, principal: Principal, client: str = "") -> list[Any]:
    repository = CaseRepository(uow.session)
    await _visible_case(uow, repository, case_id, principal, "read_timeline", client)
    return await repository.list_events(case_id)


class BadCursor(Unprocessable):
    title = "Invalid cursor"


def encode_cursor(case: Case) -> str:
    raw = json.dumps([case.created_at.isoformat(), case.case_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        created_at, case_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        return datetime.fromisoformat(created_at), str(case_id)
    except (ValueError, TypeError) as exc:
        raise BadCursor("cursor is not one this service returned", field="cursor") from exc


async def list_cases(
    uow: UnitOfWork,
    principal: Principal,
    *,
    filters: dict[str, str | None],
    cursor: str | None,
    limit: int,
    today: date,
) -> tuple[list[Case], str | None]:
    """A worklist page within the caller's region, newest first, and the cursor of the next page."""
    where: list[Any] = [case_scope(principal)]
    if filters.get("region"):
        where.append(Case.region.startswith(filters["region"]))
    for column in ("street", "community", "status", "channel"):
        if filters.get(column):
            where.append(getattr(Case, column) == filters[column])
    if filters.get("programme"):
        where.append(CaseRepository.has_programme(str(filters["programme"])))
    if filters.get("overdue"):
        where.append(CaseRepository.overdue(IN_PROCEDURE, today))
    if filters.get("review_due"):
        where.append(CaseRepository.review_due(today))
    after = decode_cursor(cursor) if cursor else None
    rows = await CaseRepository(uow.session).page(where, after, limit + 1)
    page, more = rows[:limit], len(rows) > limit
    return page, encode_cursor(page[-1]) if more else None
