"""After the decision: reviews of approved households and withdrawals. A review verifies the household
against the data sources and evaluates it again; a withdrawal closes what the case holds. Each writes its
events in the consumer's (or the retry loop's) transaction."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from eligibility import domain, verification, workflow
from eligibility.evaluation import evaluate_request
from eligibility.models import Determination, Verification
from eligibility.service import common_fields
from eligibility.sources import Source
from shared.contracts.eligibility import (
    DeterminationChanged,
    DeterminationReviewed,
    DeterminationStopped,
    DeterminationWithdrawn,
    Reason,
    VerificationCompleted,
)
from shared.contracts.intake import ApplicationReviewed, ApplicationWithdrawn
from shared.db.base import utcnow
from shared.db.uow import UnitOfWork
from shared.logging import get_logger

log = get_logger(__name__)


async def withdraw_case(uow: UnitOfWork, withdrawn: ApplicationWithdrawn) -> None:
    """The household withdrew: what is still open will not be decided (nor verified: a wait for the sources
    ends); approved monthly aid stops after the month of withdrawal. One-off aid already approved (an
    emergency's aid first) and refusals stand."""
    rows = (
        (
            await uow.session.execute(
                select(Determination).where(Determination.case_id == withdrawn.case_id).with_for_update()
            )
        )
        .scalars()
        .all()
    )
    await verification.finished(uow, withdrawn.case_id)  # an application or review waiting for its sources
    last_period = f"{withdrawn.withdrawn_on.year:04d}-{withdrawn.withdrawn_on.month:02d}"
    reason = Reason(code="withdrawn_by_applicant", text="the household withdrew", source=workflow.WITHDRAWAL_SOURCE)
    for determination in rows:
        step = workflow.on_withdrawal(determination.status, determination.payment_kind)
        if step is None:
            continue
        determination.status = step
        determination.decided_on = withdrawn.withdrawn_on
        determination.reasons = [*determination.reasons, reason.model_dump()]
        determination.updated_at = utcnow()
        if step == "withdrawn":
            event: Any = DeterminationWithdrawn(**common_fields(determination))
        else:
            event = DeterminationStopped(**common_fields(determination), last_period=last_period)
        await uow.outbox.add(event, key=determination.case_id)


async def review_case(
    uow: UnitOfWork, reviewed: ApplicationReviewed, sources: Sequence[Source] = (), retry_seconds: float = 30.0
) -> None:
    """Verify the household as the review found it against the data sources, as an application is
    (verification.py: verified incomes replace declared ones, differences kept), then evaluate it again:
    monthly aid it no longer qualifies for stops after the month of the review, with the rules' reasons; aid
    it still qualifies for goes on to the next review, at the amount the rules give now from the month after
    the review (S5 第三十二条: 增发、减发). People who joined or left the household (intake's `joined`,
    `left`) are in or out of the household evaluated, and the decision says who. A source that cannot
    answer parks the review: nothing is stopped or changed until the household's figures are verified, and
    the case says why it waits."""
    session = uow.session
    waiting = await verification.waiting(uow, reviewed.case_id)
    if waiting is not None and waiting.kind == "application":
        # Only aid first can be approved before the application's verification, and it is not monthly: there
        # is nothing to review until the application is decided (intake refuses such reviews too).
        log.warning("review_before_verification", case_id=reviewed.case_id)
        return
    declared = reviewed.household.model_dump(mode="json")
    try:
        report = await verification.verify(declared, sources)
    except verification.VerificationPending as pending:
        await verification.delay(uow, reviewed, pending, utcnow(), retry_seconds)
        return
    await verification.finished(uow, reviewed.case_id)
    facts = report.household
    request = {"region": reviewed.region, "as_of": reviewed.reviewed_on.isoformat(), "household": facts}
    answer = evaluate_request(request, with_trace=False)  # a refusal is a poison message: retried, then DLQ
    results = {r["programme"]: r for r in answer["results"]}
    await _record_verification(uow, reviewed, report, answer["household"])
    verified = [*_household_changed(reviewed), *_verified_reason(report)]
    rows = (
        (
            await session.execute(
                select(Determination)
                .where(
                    Determination.case_id == reviewed.case_id,
                    Determination.status == "approved",
                    Determination.payment_kind == "monthly",
                )
                .with_for_update()
            )
        )
        .scalars()
        .all()
    )
    last_period = f"{reviewed.reviewed_on.year:04d}-{reviewed.reviewed_on.month:02d}"
    for determination in rows:
        decision = domain.decision_from(results[determination.programme])
        determination.updated_at = utcnow()
        if not decision.eligible or decision.payment_kind != "monthly":
            stop = Reason(
                code="no_longer_eligible", text="the review found it no longer qualifies", source=workflow.STOP_SOURCE
            )
            determination.status = "stopped"
            determination.decided_on = reviewed.reviewed_on
            determination.review_due = None
            determination.reasons = [
                *(r.model_dump() for r in decision.reasons),
                *verified,
                stop.model_dump(),
            ]
            await uow.outbox.add(
                DeterminationStopped(**common_fields(determination), last_period=last_period),
                key=determination.case_id,
            )
            continue
        determination.review_due = workflow.review_due(determination.region, reviewed.reviewed_on, facts)
        differs = decision.monthly_amount != determination.monthly_amount
        await uow.outbox.add(
            DeterminationReviewed(
                **common_fields(determination),
                reviewed_on=reviewed.reviewed_on,
                review_due=determination.review_due,
                finding="amount_differs" if differs else "unchanged",
                proposed_monthly_amount=decision.monthly_amount if differs else None,
            ),
            key=determination.case_id,
        )
        if differs and decision.monthly_amount is not None:
            previous = determination.monthly_amount
            determination.monthly_amount = decision.monthly_amount
            determination.reasons = [*(r.model_dump() for r in decision.reasons), *verified]
            determination.decided_on = reviewed.reviewed_on
            await uow.outbox.add(
                DeterminationChanged(
                    **common_fields(determination),
                    previous_monthly_amount=previous or Decimal("0.00"),
                    from_period=workflow.month_after(reviewed.reviewed_on),
                ),
                key=determination.case_id,
            )


HOUSEHOLD_CHANGE_SOURCE = (
    "最低生活保障审核确认办法 第三十条 (人口状况……发生变化的，应当及时告知)、第三十一条 (增发、减发、停发); "
    "上海市社会救助条例 第三十二条 (家庭人口……发生变化)"
)


def _household_changed(reviewed: ApplicationReviewed) -> list[dict[str, Any]]:
    """People joining or leaving change who counts (and whose income counts): the decision says who."""
    if not reviewed.joined and not reviewed.left:
        return []
    parts = [f"{', '.join(reviewed.joined)} joined the household"] if reviewed.joined else []
    parts += [f"{', '.join(reviewed.left)} left it"] if reviewed.left else []
    text = "; ".join(parts) + f"; evaluated with the {len(reviewed.household.members)} members it has now"
    return [Reason(code="household_changed", text=text, source=HOUSEHOLD_CHANGE_SOURCE).model_dump()]


VERIFIED_SOURCE = (
    "最低生活保障审核确认办法 第十一条、第三十一条; 上海市社会救助条例 第三十五条、第四十五条 (核对、定期核查)"
)


def _verified_reason(report: verification.Report) -> list[dict[str, Any]]:
    """Where the sources differ from what the review recorded, the decision says so: it rests on the
    verified figures."""
    if not report.differences:
        return []
    text = "decided on the verified figures: " + "; ".join(report.discrepancies())
    return [Reason(code="verified_differs_from_declared", text=text[:500], source=VERIFIED_SOURCE).model_dump()]


async def _record_verification(
    uow: UnitOfWork, reviewed: ApplicationReviewed, report: verification.Report, figures: dict[str, Any]
) -> None:
    """The case's verified household becomes the review's (what the next review, a recompute or a sweep
    start from), and the review's means test goes on the case like the application's did."""
    record = (
        await uow.session.execute(
            select(Verification).where(Verification.case_id == reviewed.case_id).with_for_update()
        )
    ).scalar_one_or_none()
    if record is None:
        record = Verification(verification_id=str(uuid.uuid4()), case_id=reviewed.case_id, region=reviewed.region)
        uow.session.add(record)
    record.sources = report.sources
    record.household = report.household
    record.counted_members = figures["counted_members"]
    record.counted_monthly_income = Decimal(figures["counted_monthly_income"])
    record.per_capita_monthly_income = Decimal(figures["per_capita_monthly_income"])
    record.evidence = [e.model_dump(mode="json") for e in report.evidence]
    record.differences = [d.model_dump(mode="json") for d in report.differences]
    record.completed_at = utcnow()
    await uow.outbox.add(
        VerificationCompleted(
            case_id=reviewed.case_id,
            verification_id=record.verification_id,
            sources=report.sources,
            counted_members=record.counted_members,
            counted_monthly_income=record.counted_monthly_income,
            per_capita_monthly_income=record.per_capita_monthly_income,
            discrepancies=report.discrepancies(),
            evidence=report.evidence,
            differences=report.differences,
            kind="review",
            reviewed_on=reviewed.reviewed_on,
        ),
        key=reviewed.case_id,
    )
