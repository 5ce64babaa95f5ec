"""Assessing an application: the means test against the data sources, then every programme decided by the
rules engine on the verified facts; applications whose sources are down wait and are tried again."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from eligibility import domain, lifecycle, verification, workflow
from eligibility.evaluation import EvaluationRefused, evaluate_request
from eligibility.models import Determination, Verification
from eligibility.service import approved_event, common_fields
from eligibility.sources import Source, sources_for
from shared import periodic
from shared.clock import Clock
from shared.contracts.eligibility import (
    DeterminationConfirmed,
    DeterminationFlagged,
    DeterminationProposed,
    Reason,
    VerificationCompleted,
)
from shared.contracts.intake import ApplicationReviewed, ApplicationSubmitted
from shared.db.base import utcnow
from shared.db.uow import UnitOfWork
from shared.logging import get_logger

if TYPE_CHECKING:
    from shared.service import Runtime

log = get_logger(__name__)


async def assess_application(
    uow: UnitOfWork,
    application: ApplicationSubmitted,
    clock: Clock,
    sources: Sequence[Source] = (),
    retry_seconds: float = 30.0,
) -> None:
    """Verify the household against the data sources (verification.py) and decide every programme with the
    rules engine on the verified facts ("one application, all programmes"): a determination for each
    programme the household qualifies for, and a denial for each programme it asked for and does not
    qualify for (a denial of the subsistence allowance when it asked for nothing in particular and
    qualifies for nothing). A source that cannot answer parks the application (`pending_verifications`)
    and nothing is decided until it does.

    Every determination but an emergency's "aid first" amount is proposed (workflow.py); the officer's
    approval and public notice follow in `decisions`."""
    session = uow.session
    now = utcnow()
    if await session.scalar(select(Verification.verification_id).where(Verification.case_id == application.case_id)):
        return  # decided already (a retry racing the redelivered event)
    declared = application.household.model_dump(mode="json")
    try:
        report = await verification.verify(declared, sources)
    except verification.VerificationPending as pending:
        await verification.delay(uow, application, pending, now, retry_seconds)
        if application.household.emergency is not None:  # "aid first" does not wait for verification (S8)
            with contextlib.suppress(EvaluationRefused):
                answer = evaluate_request(_request(application, declared), with_trace=True)
                await _decide(uow, application, answer, clock, aid_first_only=True)
        return
    await verification.finished(uow, application.case_id)
    household = report.household
    try:
        answer = evaluate_request(_request(application, household), with_trace=True)
    except EvaluationRefused as exc:
        await uow.outbox.add(
            VerificationCompleted(
                case_id=application.case_id,
                verification_id=str(uuid.uuid4()),
                sources=report.sources,
                counted_members=0,
                counted_monthly_income=Decimal("0.00"),
                per_capita_monthly_income=Decimal("0.00"),
                discrepancies=[f"cannot decide: {exc.detail}", *report.discrepancies()],
                evidence=report.evidence,
                differences=report.differences,
            ),
            key=application.case_id,
        )
        return
    figures = answer["household"]
    record = Verification(
        verification_id=str(uuid.uuid4()),
        case_id=application.case_id,
        region=application.region,
        community=application.community,
        sources=report.sources,
        household=household,
        counted_members=figures["counted_members"],
        counted_monthly_income=Decimal(figures["counted_monthly_income"]),
        per_capita_monthly_income=Decimal(figures["per_capita_monthly_income"]),
        evidence=[e.model_dump(mode="json") for e in report.evidence],
        differences=[d.model_dump(mode="json") for d in report.differences],
        completed_at=now,
    )
    session.add(record)
    await uow.outbox.add(
        VerificationCompleted(
            case_id=application.case_id,
            verification_id=record.verification_id,
            sources=report.sources,
            counted_members=record.counted_members,
            counted_monthly_income=record.counted_monthly_income,
            per_capita_monthly_income=record.per_capita_monthly_income,
            discrepancies=report.discrepancies(),
            evidence=report.evidence,
            differences=report.differences,
        ),
        key=application.case_id,
    )
    await _settle_aid_first(uow, application, answer)
    await _decide(uow, application, answer, clock)


AID_FIRST_SOURCE = "临时救助 先行救助 (S8); 退回 where the declaration was false: 上海市社会救助条例 第五十四条"


async def _settle_aid_first(uow: UnitOfWork, application: ApplicationSubmitted, answer: dict[str, Any]) -> None:
    """An "aid first" amount granted while verification waited (its sources were down) is confirmed when the
    verified figures support it, or flagged for an officer to decide whether it is recovered."""
    granted = (
        await uow.session.execute(
            select(Determination).where(
                Determination.case_id == application.case_id,
                Determination.programme == "temporary_aid",
                Determination.payment_kind == "one_off",
                Determination.status == "approved",
            )
        )
    ).scalar_one_or_none()
    if granted is None or granted.amount is None:
        return
    result = next((r for r in answer["results"] if r["programme"] == "temporary_aid"), None)
    verified = domain.decision_from(result) if result else None
    supported = verified is not None and verified.eligible and (verified.amount or 0) >= granted.amount
    granted.updated_at = utcnow()
    if supported:
        granted.reasons = [
            *granted.reasons,
            Reason(
                code="aid_first_confirmed", text="verification supports the aid granted first", source=AID_FIRST_SOURCE
            ).model_dump(),
        ]
        await uow.outbox.add(DeterminationConfirmed(**common_fields(granted)), key=application.case_id)
        return
    granted.status = "recovery"
    why = [r.model_dump() for r in (verified.reasons if verified else [])]
    granted.reasons = [
        *granted.reasons,
        *why,
        Reason(
            code="aid_first_not_supported",
            text=f"verification does not support the {granted.amount:.2f} granted first; an officer decides",
            source=AID_FIRST_SOURCE,
        ).model_dump(),
    ]
    await uow.outbox.add(
        DeterminationFlagged(**common_fields(granted), recoverable_amount=granted.amount), key=application.case_id
    )


def _request(application: ApplicationSubmitted, household: dict[str, Any]) -> dict[str, Any]:
    return {"region": application.region, "as_of": application.submitted_at.isoformat(), "household": household}


async def _decide(
    uow: UnitOfWork,
    application: ApplicationSubmitted,
    answer: dict[str, Any],
    clock: Clock,
    aid_first_only: bool = False,
) -> None:
    """A determination for every programme the answer grants, or denies one that was asked for; programmes
    already decided for the case (an "aid first" grant made while verification waited) are left alone."""
    session = uow.session
    now, today = utcnow(), clock.today()
    decided = set(
        (await session.execute(select(Determination.programme).where(Determination.case_id == application.case_id)))
        .scalars()
        .all()
    )
    asked = set(application.programmes) or {"subsistence_allowance"}
    results = {r["programme"]: r for r in answer["results"]}
    due = workflow.decision_due(application.region, application.submitted_at)
    for programme, result in results.items():
        if (not result["eligible"] and programme not in asked) or programme in decided:
            continue
        decision = domain.decision_from(result)
        # An emergency's "aid first" amount is approved at once, before verification and without an officer;
        # everything else is proposed and waits for one (no direct inclusion: S5 第二十八条).
        aid_first = programme == "temporary_aid" and decision.payment_kind == "one_off"
        if aid_first_only and not aid_first:
            continue
        determination = Determination(
            determination_id=str(uuid.uuid4()),
            case_id=application.case_id,
            programme=programme,
            region=application.region,
            status="approved" if aid_first else "proposed",
            outcome="grant" if decision.eligible else "deny",
            payment_kind=decision.payment_kind,
            payee_account=application.payee_account,
            filed_by=application.filed_by,
            monthly_amount=decision.monthly_amount,
            amount=decision.amount,
            reasons=[r.model_dump() for r in decision.reasons],
            rule=domain.RULE,
            decided_on=today,
            decision_due=None if aid_first else due,
            objections=[],
            created_at=now,
            updated_at=now,
        )
        session.add(determination)
        if aid_first:
            # Granted while verification waits: paid as an advance, which verification confirms or flags.
            await uow.outbox.add(approved_event(determination, advance=aid_first_only), key=application.case_id)
        else:
            await uow.outbox.add(
                DeterminationProposed(**common_fields(determination), outcome=determination.outcome, decision_due=due),
                key=application.case_id,
            )
    await session.flush()


async def retry_verifications_once(uow: UnitOfWork, clock: Clock, sources: Sequence[Source], every: float) -> int:
    """Try again every parked application and review whose time has come. Returns how many were tried."""
    rows = await verification.due_for_retry(uow, utcnow())
    for row in rows:
        if row.kind == "review":
            await lifecycle.review_case(uow, ApplicationReviewed.model_validate(row.application), sources, every)
        else:
            await assess_application(uow, ApplicationSubmitted.model_validate(row.application), clock, sources, every)
    return len(rows)


async def retry_verifications(runtime: Runtime, stop: asyncio.Event) -> None:
    """Worker loop: applications and reviews waiting for a verification source are tried again as their
    backoff ends."""
    retry_seconds = float(getattr(runtime.settings, "verification_retry_seconds", 30.0))
    sources = sources_for(runtime.settings)

    async def step() -> None:
        async with runtime.uow() as uow:
            tried = await retry_verifications_once(uow, runtime.clock, sources, retry_seconds)
            await uow.commit()
        if tried:
            log.info("verifications_retried", count=tried)

    await periodic.every(min(retry_seconds, 5.0), step, stop, name="verification_retry")
