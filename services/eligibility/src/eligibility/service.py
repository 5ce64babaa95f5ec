"""Eligibility's use cases; the entrypoint commits."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from eligibility import domain, workflow
from eligibility.evaluation import EvaluationRefused, evaluate_request
from eligibility.models import Determination, Verification
from shared.auth import Principal
from shared.authz import region_clause
from shared.clock import Clock
from shared.contracts.eligibility import DeterminationApproved, DeterminationProposed, Reason, VerificationCompleted
from shared.contracts.intake import ApplicationSubmitted
from shared.db.base import utcnow
from shared.db.uow import UnitOfWork
from shared.errors import NotFound


class DeterminationNotFound(NotFound):
    title = "Determination not found"


async def assess_application(uow: UnitOfWork, application: ApplicationSubmitted, clock: Clock) -> None:
    """Verify the household and decide every programme with the rules engine ("one application, all
    programmes"): a determination for each programme the household qualifies for, and a denial for each
    programme it asked for and does not qualify for (a denial of the subsistence allowance when it asked
    for nothing in particular and qualifies for nothing).

    Every determination but an emergency's "aid first" amount is proposed (workflow.py). Not built yet:
    verification against the verification centre's data (the declared figures stand in for
    it); the officer's approval and public notice follow in `decisions`."""
    session = uow.session
    now, today = utcnow(), clock.today()
    household = application.household.model_dump(mode="json")
    request = {"region": application.region, "as_of": application.submitted_at.isoformat(), "household": household}
    try:
        answer = evaluate_request(request, with_trace=True)
    except EvaluationRefused as exc:
        await uow.outbox.add(
            VerificationCompleted(
                case_id=application.case_id,
                verification_id=str(uuid.uuid4()),
                sources=["declared"],
                counted_members=0,
                counted_monthly_income=Decimal("0.00"),
                per_capita_monthly_income=Decimal("0.00"),
                discrepancies=[f"cannot decide: {exc.detail}"],
            ),
            key=application.case_id,
        )
        return
    figures = answer["household"]
    verification = Verification(
        verification_id=str(uuid.uuid4()),
        case_id=application.case_id,
        region=application.region,
        community=application.community,
        sources=["declared"],
        household=household,
        counted_members=figures["counted_members"],
        counted_monthly_income=Decimal(figures["counted_monthly_income"]),
        per_capita_monthly_income=Decimal(figures["per_capita_monthly_income"]),
        completed_at=now,
    )
    session.add(verification)
    await uow.outbox.add(
        VerificationCompleted(
            case_id=application.case_id,
            verification_id=verification.verification_id,
            sources=["declared"],
            counted_members=verification.counted_members,
            counted_monthly_income=verification.counted_monthly_income,
            per_capita_monthly_income=verification.per_capita_monthly_income,
        ),
        key=application.case_id,
    )
    asked = set(application.programmes) or {"subsistence_allowance"}
    results = {r["programme"]: r for r in answer["results"]}
    due = workflow.decision_due(application.region, application.submitted_at)
    for programme, result in results.items():
        if not result["eligible"] and programme not in asked:
            continue
        decision = domain.decision_from(result)
        # An emergency's "aid first" amount is approved at once, before verification and without an officer;
        # everything else is proposed and waits for one (no direct inclusion: S5 第二十八条).
        aid_first = programme == "temporary_aid" and decision.payment_kind == "one_off"
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
            await uow.outbox.add(approved_event(determination), key=application.case_id)
        else:
            await uow.outbox.add(
                DeterminationProposed(**common_fields(determination), outcome=determination.outcome, decision_due=due),
                key=application.case_id,
            )
    await session.flush()


def common_fields(determination: Determination) -> dict[str, Any]:
    return {
        "case_id": determination.case_id,
        "determination_id": determination.determination_id,
        "programme": determination.programme,
        "region": determination.region,
        "decided_on": determination.decided_on,
        "monthly_amount": determination.monthly_amount,
        "amount": determination.amount,
        "reasons": [Reason.model_validate(r) for r in determination.reasons],
        "rule": determination.rule,
    }


def approved_event(determination: Determination) -> DeterminationApproved:
    return DeterminationApproved(
        **common_fields(determination),
        payment_kind=determination.payment_kind,  # type: ignore[arg-type]
        payee_account=determination.payee_account,
        review_due=determination.review_due,
    )


async def get_determination(uow: UnitOfWork, determination_id: str, principal: Principal) -> Determination:
    found = (
        await uow.session.execute(
            select(Determination).where(
                Determination.determination_id == determination_id, region_clause(principal, Determination.region)
            )
        )
    ).scalar_one_or_none()
    if found is None:
        raise DeterminationNotFound(f"No determination {determination_id}.")
    return found


async def list_determinations(
    uow: UnitOfWork, principal: Principal, *, case_id: str | None, status: str | None, limit: int
) -> list[Determination]:
    """An officer's worklist: determinations in the caller's region, by case and status, oldest first (the
    longest waiting at the top), so `status=proposed` lists what waits for a decision."""
    statement = select(Determination).where(region_clause(principal, Determination.region))
    if case_id:
        statement = statement.where(Determination.case_id == case_id)
    if status:
        statement = statement.where(Determination.status == status)
    statement = statement.order_by(Determination.created_at, Determination.determination_id).limit(limit)
    return list((await uow.session.execute(statement)).scalars())
