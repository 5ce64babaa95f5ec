"""Determinations as the API reads them, and the event fields every step shares; assessing an application
is in `assessment`, an officer's steps in `decisions`. The entrypoint commits."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from eligibility.models import Determination
from shared.auth import Principal
from shared.authz import region_clause
from shared.contracts.eligibility import AidGap, DeterminationApproved, Reason
from shared.db.uow import UnitOfWork
from shared.errors import NotFound


class DeterminationNotFound(NotFound):
    title = "Determination not found"


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


def approved_event(
    determination: Determination, advance: bool = False, gaps: list[AidGap] | None = None
) -> DeterminationApproved:
    return DeterminationApproved(
        **common_fields(determination),
        payment_kind=determination.payment_kind,  # type: ignore[arg-type]
        payee_account=determination.payee_account,
        advance=advance,
        review_due=determination.review_due,
        gaps=gaps or [],
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
