"""After the decision: reviews of approved households and withdrawals. Each evaluates or closes what the
case holds and writes its events in the consumer's transaction."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import select

from eligibility import domain, workflow
from eligibility.evaluation import evaluate_request
from eligibility.models import Determination, Verification
from eligibility.service import common_fields
from shared.contracts.eligibility import (
    DeterminationChanged,
    DeterminationReviewed,
    DeterminationStopped,
    DeterminationWithdrawn,
    Reason,
)
from shared.contracts.intake import ApplicationReviewed, ApplicationWithdrawn
from shared.db.base import utcnow
from shared.db.uow import UnitOfWork


async def withdraw_case(uow: UnitOfWork, withdrawn: ApplicationWithdrawn) -> None:
    """The household withdrew: what is still open will not be decided; approved monthly aid stops after the
    month of withdrawal. One-off aid already approved (an emergency's aid first) and refusals stand."""
    rows = (
        (
            await uow.session.execute(
                select(Determination).where(Determination.case_id == withdrawn.case_id).with_for_update()
            )
        )
        .scalars()
        .all()
    )
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


async def review_case(uow: UnitOfWork, reviewed: ApplicationReviewed) -> None:
    """Evaluate the household again as the review found it: monthly aid it no longer qualifies for stops
    after the month of the review, with the rules' reasons; aid it still qualifies for goes on to the next
    review, at the amount the rules give now from the month after the review (S5 第三十二条: 增发、减发)."""
    facts = reviewed.household.model_dump(mode="json")
    request = {"region": reviewed.region, "as_of": reviewed.reviewed_on.isoformat(), "household": facts}
    answer = evaluate_request(request, with_trace=False)  # a refusal is a poison message: retried, then DLQ
    results = {r["programme"]: r for r in answer["results"]}
    verification = (
        await uow.session.execute(select(Verification).where(Verification.case_id == reviewed.case_id))
    ).scalar_one_or_none()
    if verification is not None:
        verification.household = facts
    rows = (
        (
            await uow.session.execute(
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
            determination.reasons = [*(r.model_dump() for r in decision.reasons), stop.model_dump()]
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
            determination.reasons = [r.model_dump() for r in decision.reasons]
            determination.decided_on = reviewed.reviewed_on
            await uow.outbox.add(
                DeterminationChanged(
                    **common_fields(determination),
                    previous_monthly_amount=previous or Decimal("0.00"),
                    from_period=workflow.month_after(reviewed.reviewed_on),
                ),
                key=determination.case_id,
            )
