"""After the decision: reviews of approved households and withdrawals. A review verifies the household
against the data sources and evaluates it again; a withdrawal closes what the case holds. Each writes its
events in the consumer's (or the retry loop's) transaction."""

from __future__ import annotations

import copy
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
        if step is None and _phasing_out(determination, last_period):
            step = "stopped"  # the household leaves during its phase-out: paid through this month only
        if step is None:
            continue
        determination.status = step
        determination.decided_on = withdrawn.withdrawn_on
        determination.reasons = [*determination.reasons, reason.model_dump()]
        determination.updated_at = utcnow()
        if step == "withdrawn":
            event: Any = DeterminationWithdrawn(**common_fields(determination))
        else:
            determination.last_period = last_period
            event = DeterminationStopped(**common_fields(determination), last_period=last_period)
        await uow.outbox.add(event, key=determination.case_id)


def _phasing_out(determination: Determination, period: str) -> bool:
    """Stopped, but still paid after `period`: a phase-out after employment that has not run out."""
    return (
        determination.status == "stopped"
        and determination.payment_kind == "monthly"
        and determination.last_period is not None
        and determination.last_period > period
    )


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
    before = await _record_verification(uow, reviewed, report, answer["household"])
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
    for determination in rows:
        decision = domain.decision_from(results[determination.programme])
        determination.updated_at = utcnow()
        if not decision.eligible or decision.payment_kind != "monthly":
            phase_out, why = _phase_out(determination, reviewed, before, facts)
            last_period = phase_out or workflow.period_of(reviewed.reviewed_on)
            stop = Reason(
                code="no_longer_eligible",
                text="the review found it no longer qualifies"
                + (f": it stops after the phase-out, paid through {phase_out}" if phase_out else ""),
                source=workflow.STOP_SOURCE,
            )
            determination.status = "stopped"
            determination.decided_on = reviewed.reviewed_on
            determination.review_due = None
            determination.last_period = last_period
            determination.reasons = [
                *(r.model_dump() for r in decision.reasons),
                *verified,
                stop.model_dump(),
                *why,
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


def _phase_out(
    determination: Determination,
    reviewed: ApplicationReviewed,
    before: dict[str, Any] | None,
    after: dict[str, Any],
) -> tuple[str | None, list[dict[str, Any]]]:
    """Whether a subsistence allowance the review stops goes on for a phase-out first (渐退), and why.

    It does when the cause is new work: a member who had no wage in the household as last decided has one
    now, and without the new wages the household would still qualify (S5 第三十三条: 就业后家庭人均收入超过
    当地最低生活保障标准). The aid then continues unchanged through the phase-out's last month (the
    region's `case_management.phase_out_months` after the month of the review) and stops. Where the region
    grants it only to a household that reported the work itself (Shanghai, S1 第二十七条第二款: 主动申报),
    a review of kind `change_reported` must have declared every new wage; otherwise the aid stops at once
    and the reasons say why. Returns (the last period paid, or None to stop at once; reasons to add)."""
    if determination.programme != "subsistence_allowance" or before is None:
        return None, []
    earners = domain.new_wage_earners(before, after)
    rule = workflow.phase_out(determination.region, reviewed.reviewed_on)
    if not earners or rule is None:
        return None, []
    request = {
        "region": determination.region,
        "as_of": reviewed.reviewed_on.isoformat(),
        "household": domain.without_wages(after, earners),
    }
    without = next(
        r for r in evaluate_request(request, with_trace=False)["results"] if r["programme"] == determination.programme
    )
    if not without["eligible"]:
        return None, []  # over the line even without the new work: not a phase-out case
    who = ", ".join(earners)
    wages = sum((domain.wage_of(m) for m in after["members"] if m["ref"] in earners), Decimal(0))
    declared = {m.ref: m for m in reviewed.household.members}
    reported = reviewed.kind == "change_reported" and all(
        domain.wage_of(declared[ref].model_dump(mode="json")) > 0 for ref in earners if ref in declared
    )
    if rule.requires_report and not reported:
        text = (
            f"{who} found work ({wages:.2f} a month in wages), but the household did not report it itself: "
            "the phase-out is for a household that does, so the aid stops at once"
        )
        return None, [Reason(code="phase_out_not_reported", text=text, source=rule.report_reference).model_dump()]
    last = workflow.periods_after(reviewed.reviewed_on, rule.months)
    text = (
        f"{who} found work ({wages:.2f} a month in wages the household did not have before), which takes its "
        f"income over the standard: the aid goes on unchanged through {last} ({rule.months} months' "
        "phase-out, 渐退期) and then stops"
    )
    source = f"{workflow.PHASE_OUT_SOURCE}; the period: {rule.months_reference}"
    return last, [Reason(code="phase_out_after_employment", text=text, source=source).model_dump()]


async def _record_verification(
    uow: UnitOfWork, reviewed: ApplicationReviewed, report: verification.Report, figures: dict[str, Any]
) -> dict[str, Any] | None:
    """The case's verified household becomes the review's (what the next review, a recompute or a sweep
    start from), and the review's means test goes on the case like the application's did. Returns the
    verified household as it was before (what the aid was last decided on), if there was one."""
    record = (
        await uow.session.execute(
            select(Verification).where(Verification.case_id == reviewed.case_id).with_for_update()
        )
    ).scalar_one_or_none()
    before = copy.deepcopy(record.household) if record is not None else None
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
    return before
