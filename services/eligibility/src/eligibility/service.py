"""Eligibility's use cases; the entrypoint commits."""

from __future__ import annotations

import uuid
from decimal import Decimal

from sqlalchemy import select

from eligibility import domain
from eligibility.models import Determination, Verification
from shared.contracts.eligibility import DeterminationApproved, DeterminationDenied, VerificationCompleted
from shared.contracts.intake import ApplicationSubmitted
from shared.db.base import utcnow
from shared.db.uow import UnitOfWork
from shared.errors import NotFound


class DeterminationNotFound(NotFound):
    title = "Determination not found"


async def assess_application(uow: UnitOfWork, application: ApplicationSubmitted, standard: Decimal) -> None:
    """Verify the household and decide. Skeleton: the declared figures stand in for the verification
    centre's, and the decision is final at once (no officer approval, no public notice yet)."""
    session = uow.session
    now = utcnow()
    test = domain.income_test(application.household)
    verification = Verification(
        verification_id=str(uuid.uuid4()),
        case_id=application.case_id,
        region=application.region,
        sources=["declared"],
        household=application.household.model_dump(mode="json"),
        counted_members=test.counted_members,
        counted_monthly_income=test.counted_monthly_income,
        per_capita_monthly_income=test.per_capita_monthly_income,
        completed_at=now,
    )
    session.add(verification)
    await uow.outbox.add(
        VerificationCompleted(
            case_id=application.case_id,
            verification_id=verification.verification_id,
            sources=["declared"],
            counted_members=test.counted_members,
            counted_monthly_income=test.counted_monthly_income,
            per_capita_monthly_income=test.per_capita_monthly_income,
        ),
        key=application.case_id,
    )
    decision = domain.subsistence_allowance(test, standard)
    determination = Determination(
        determination_id=str(uuid.uuid4()),
        case_id=application.case_id,
        programme=decision.programme,
        region=application.region,
        status="approved" if decision.eligible else "denied",
        monthly_amount=decision.monthly_amount,
        amount=None,
        reasons=[r.model_dump() for r in decision.reasons],
        rule=domain.PLACEHOLDER_RULE,
        decided_on=now.date(),
        created_at=now,
    )
    session.add(determination)
    await session.flush()
    common = {
        "case_id": application.case_id,
        "determination_id": determination.determination_id,
        "programme": decision.programme,
        "region": application.region,
        "decided_on": now.date(),
        "monthly_amount": decision.monthly_amount,
        "reasons": decision.reasons,
        "rule": domain.PLACEHOLDER_RULE,
    }
    if decision.eligible:
        await uow.outbox.add(
            DeterminationApproved(**common, payment_kind="monthly", payee_account=application.payee_account),
            key=application.case_id,
        )
    else:
        await uow.outbox.add(DeterminationDenied(**common), key=application.case_id)


async def get_determination(uow: UnitOfWork, determination_id: str) -> Determination:
    found = (
        await uow.session.execute(select(Determination).where(Determination.determination_id == determination_id))
    ).scalar_one_or_none()
    if found is None:
        raise DeterminationNotFound(f"No determination {determination_id}.")
    return found
