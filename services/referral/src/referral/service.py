"""Referral's use cases; the entrypoint commits."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select, update

from referral import charities
from referral.models import KnownCase, Need
from shared.auth import Principal
from shared.authz import region_clause
from shared.contracts.eligibility import DeterminationApproved, DeterminationDenied
from shared.contracts.intake import ContactConsentWithdrawn
from shared.contracts.referral import NeedPublished
from shared.db.base import utcnow
from shared.db.uow import UnitOfWork

# Without categories from eligibility (an event from before they were sent), a denial's need is for basic
# living.
DEFAULT_CATEGORY = "food"


async def consented(uow: UnitOfWork, case_id: str) -> bool:
    """Whether the household's consent to share its contact details with a charity holding its need is in
    force, as referral last heard from intake (false for a case it has not heard of)."""
    case = await uow.session.get(KnownCase, case_id)
    return case is not None and case.contact_consent


async def withdraw_consent(uow: UnitOfWork, withdrawn: ContactConsentWithdrawn) -> None:
    """The household withdrew its consent: its needs no longer say it consented. Intake, which holds the
    contact details, refuses them from the moment of withdrawal whatever referral shows."""
    case = await uow.session.get(KnownCase, withdrawn.case_id)
    if case is not None:
        case.contact_consent = False
    await uow.session.execute(update(Need).where(Need.case_id == withdrawn.case_id).values(consented=False))


async def publish_need_for_denial(uow: UnitOfWork, denied: DeterminationDenied) -> None:
    """A need per category the household's situation points to (DeterminationDenied.need_categories), each
    once per case: a household refused several programmes needs each kind of help once, not per programme."""
    reason = denied.reasons[0].code if denied.reasons else "denied"
    wanted = [(category, None, reason) for category in denied.need_categories or [DEFAULT_CATEGORY]]
    await _publish_needs(uow, denied.case_id, denied.determination_id, denied.region, wanted)


async def publish_needs_for_gaps(uow: UnitOfWork, approved: DeterminationApproved) -> None:
    """A need per gap the approved monthly aid leaves (DeterminationApproved.gaps: a large medical bill, say),
    with the uncovered amount a month and eligibility's words for why, each once per case and category: a
    category a denial or an earlier approval already published is not published again."""
    wanted = [(gap.category, gap.monthly_amount, (gap.reason or "aid_gap")[:200]) for gap in approved.gaps]
    await _publish_needs(uow, approved.case_id, approved.determination_id, approved.region, wanted)


async def _publish_needs(
    uow: UnitOfWork, case_id: str, determination_id: str, area: str, wanted: list[tuple[str, Any, str]]
) -> None:
    """Publish a need per (category, amount, reason) the case has none of yet, with the household's consent
    as it stands."""
    if not wanted:
        return
    published = set((await uow.session.execute(select(Need.category).where(Need.case_id == case_id))).scalars())
    consent = await consented(uow, case_id)
    for category, amount, reason in wanted:
        if category in published:
            continue
        published.add(category)
        need = Need(
            need_id=str(uuid.uuid4()),
            case_id=case_id,
            determination_id=determination_id,
            category=category,
            area=area,
            amount=amount,
            reason=reason,
            status="published",
            created_at=utcnow(),
            consented=consent,
        )
        uow.session.add(need)
        await uow.outbox.add(
            NeedPublished(
                case_id=need.case_id,
                need_id=need.need_id,
                category=need.category,
                area=need.area,
                amount=need.amount,
                reason=need.reason,
                consented=need.consented,
            ),
            key=need.case_id,
        )
    await uow.session.flush()


async def list_needs(uow: UnitOfWork, area: str | None, limit: int, principal: Principal) -> list[Need]:
    """Needs in the caller's region; a charity sees only its categories and areas (charities.py)."""
    scope = region_clause(principal, Need.area)
    if principal.role == "charity":
        scope = scope & charities.visible_to(charities.organisation_of(principal))
    statement = select(Need).where(scope).order_by(Need.created_at.desc()).limit(limit)
    if area:
        statement = statement.where(Need.area == area)
    return list((await uow.session.execute(statement)).scalars())
