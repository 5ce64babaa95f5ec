"""An officer's steps on a determination, objections during public notice, and the end of notice.

Each step locks the determination row, checks the procedure (workflow.py) and writes its event in the same
transaction; the entrypoint commits.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import date
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from eligibility import domain, gaps, workflow
from eligibility.models import Determination, Verification, messaging
from eligibility.params import ParameterError, catalogue
from eligibility.service import DeterminationNotFound, approved_event, common_fields
from shared import audit, periodic
from shared.auth import Principal
from shared.authz import Forbidden, region_clause
from shared.clock import Clock
from shared.contracts.eligibility import (
    AidGap,
    DeterminationDenied,
    DeterminationNoticed,
    DeterminationObjected,
    Reason,
)
from shared.db.base import utcnow
from shared.db.uow import UnitOfWork
from shared.errors import Conflict
from shared.logging import get_logger
from shared.messaging.context import TraceContext, current_trace, trace
from shared.messaging.envelope import new_traceparent

if TYPE_CHECKING:
    from shared.service import Runtime

log = get_logger(__name__)


class StepNotAllowed(Conflict):
    title = "Not allowed in this state"


async def _locked(uow: UnitOfWork, determination_id: str, principal: Principal) -> Determination:
    found = (
        await uow.session.execute(
            select(Determination)
            .where(Determination.determination_id == determination_id, region_clause(principal, Determination.region))
            .with_for_update()
        )
    ).scalar_one_or_none()
    if found is None:
        raise DeterminationNotFound(f"No determination {determination_id}.")
    return found


def _check_maker_checker(determination: Determination, principal: Principal) -> None:
    if not workflow.may_decide(determination.filed_by, principal.subject):
        raise Forbidden("Whoever filed the case may not decide it: another officer must (maker-checker).")


async def _deny(uow: UnitOfWork, determination: Determination, clock: Clock, extra: list[Reason]) -> None:
    today = clock.today()
    determination.status = "denied"
    determination.decided_on = today
    determination.notice_due = workflow.refusal_notice_due(determination.region, today)
    if extra:
        determination.reasons = [*determination.reasons, *(r.model_dump() for r in extra)]
    categories = domain.need_categories(await _household(uow, determination.case_id), today)
    await uow.outbox.add(
        DeterminationDenied(
            **common_fields(determination), notice_due=determination.notice_due, need_categories=categories
        ),
        key=determination.case_id,
    )


async def approve(uow: UnitOfWork, determination_id: str, principal: Principal, clock: Clock) -> Determination:
    """A grant goes to public notice; a proposed refusal becomes the decision, with its notice deadline."""
    determination = await _locked(uow, determination_id, principal)
    _check_maker_checker(determination, principal)
    try:
        status = workflow.after_approval(determination.status, determination.outcome)
    except workflow.StepRefused as exc:
        raise StepNotAllowed(str(exc), current_status=determination.status) from None
    determination.decided_by = principal.subject
    determination.updated_at = utcnow()
    if status == "denied":
        await _deny(uow, determination, clock, [])
        return determination
    today = clock.today()
    determination.status = "notice"
    determination.traceparent = trace().traceparent
    determination.notice_ends_on = workflow.notice_ends_on(determination.region, today)
    await uow.outbox.add(
        DeterminationNoticed(**common_fields(determination), notice_ends_on=determination.notice_ends_on),
        key=determination.case_id,
    )
    return determination


async def reject(
    uow: UnitOfWork, determination_id: str, principal: Principal, clock: Clock, reason: str
) -> Determination:
    """The officer does not confirm a proposed grant: it is denied, with the officer's reason added."""
    determination = await _locked(uow, determination_id, principal)
    _check_maker_checker(determination, principal)
    try:
        workflow.after_rejection(determination.status, determination.outcome)
    except workflow.StepRefused as exc:
        raise StepNotAllowed(str(exc), current_status=determination.status) from None
    determination.decided_by = principal.subject
    determination.updated_at = utcnow()
    officer = Reason(code="not_confirmed_by_officer", text=reason, source=workflow.REFUSAL_SOURCE)
    await _deny(uow, determination, clock, [officer])
    return determination


async def object_to(
    uow: UnitOfWork, determination_id: str, principal: Principal, clock: Clock, text: str
) -> Determination:
    """An objection during public notice sends the determination back to review."""
    determination = await _locked(uow, determination_id, principal)
    try:
        determination.status = workflow.after_objection(determination.status)
    except workflow.StepRefused as exc:
        raise StepNotAllowed(str(exc), current_status=determination.status) from None
    entry = {"at": clock.now().isoformat(), "by": principal.subject, "text": text}
    determination.objections = [*determination.objections, entry]
    determination.notice_ends_on = None
    determination.updated_at = utcnow()
    await uow.outbox.add(
        DeterminationObjected(**common_fields(determination), objections=len(determination.objections)),
        key=determination.case_id,
    )
    return determination


async def _household(uow: UnitOfWork, case_id: str) -> dict[str, Any]:
    found = (
        await uow.session.execute(select(Verification.household).where(Verification.case_id == case_id))
    ).scalar_one_or_none()
    return found or {}


async def _aid_gaps(uow: UnitOfWork, determination: Determination, today: date) -> list[AidGap]:
    """What approved monthly aid leaves uncovered of the verified household's necessary costs (gaps.py), at
    the standard in force today; none for aid not paid monthly."""
    if determination.payment_kind != "monthly" or determination.monthly_amount is None:
        return []
    verified = (
        await uow.session.execute(select(Verification).where(Verification.case_id == determination.case_id))
    ).scalar_one_or_none()
    if verified is None:
        return []
    try:
        parameters = catalogue().resolve(determination.region, today)
    except ParameterError:
        return []
    threshold = parameters.get("aid_gap.minimum_monthly")
    found = gaps.aid_gaps(
        verified.household,
        programme=determination.programme,
        counted_members=verified.counted_members,
        counted_monthly_income=verified.counted_monthly_income,
        monthly_aid=determination.monthly_amount,
        standard=parameters["subsistence_allowance.standard"].value,
        threshold=threshold.value if threshold is not None else Decimal("0.00"),
    )
    return [AidGap(category=g.category, monthly_amount=g.monthly_amount, reason=g.reason) for g in found]


async def close_notices_once(uow: UnitOfWork, clock: Clock, limit: int = 500) -> int:
    """Approve every determination whose public notice has ended without an objection. Returns how many."""
    today = clock.today()
    rows = (
        (
            await uow.session.execute(
                select(Determination)
                .where(Determination.status == "notice", Determination.notice_ends_on < today)
                .order_by(Determination.notice_ends_on)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
        )
        .scalars()
        .all()
    )
    for determination in rows:
        if not workflow.notice_is_over(determination.status, determination.notice_ends_on, today):
            continue
        determination.status = "approved"
        determination.decided_on = today  # payment runs from the month after this confirmation (S5 第二十一条)
        determination.updated_at = utcnow()
        if determination.payment_kind == "monthly":
            household = await _household(uow, determination.case_id)
            determination.review_due = workflow.review_due(determination.region, today, household)
        uncovered = await _aid_gaps(uow, determination, today)
        context = TraceContext(determination.traceparent or new_traceparent(), str(uuid.uuid4()))
        token = current_trace.set(context)  # the case's trace goes on from the officer's approval
        try:
            await uow.outbox.add(approved_event(determination, gaps=uncovered), key=determination.case_id)
        finally:
            current_trace.reset(token)
    await audit.record_many(
        uow.session,
        messaging.audit,
        audit.worker("eligibility"),
        [
            {
                "action": "approve_after_notice",
                "resource": "determination",
                "resource_id": d.determination_id,
                "purpose": f"public notice ended {d.notice_ends_on} without an objection upheld",
            }
            for d in rows
            if d.status == "approved"
        ],
    )
    return len(rows)


async def close_notices(runtime: Runtime, stop: asyncio.Event) -> None:
    """Worker loop: confirm determinations whose notice has ended, every `notice_check_seconds`."""

    async def step() -> None:
        async with runtime.uow() as uow:
            closed = await close_notices_once(uow, runtime.clock)
            await uow.commit()  # wakes the relay
        if closed:
            log.info("notices_closed", count=closed)

    seconds = float(getattr(runtime.settings, "notice_check_seconds", 30.0))
    await periodic.every(seconds, step, stop, name="notice_closing")
