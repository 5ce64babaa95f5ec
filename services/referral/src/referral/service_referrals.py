"""Service referrals: a household referred to a provider for counselling or shelter, tracked to an outcome.

    referred ──accepted──▶ accepted ──completed──▶ completed
        │                      └──no_show──▶ no_show (the household did not come)
        └──declined (the provider cannot take it on)
    unassigned: no registered provider of that kind covers the case's area (an advisor finds one by hand).

A referral is opened when the household applies, while its verification is under way (domain.py says for
which services and why), once per case and kind. The provider (an organisation of the register with the
kind among its categories, role `charity`) records each step; every step is an event, so the case view in
intake shows it. Providers see the referrals made to them, masked: no case id, no name, no ID number.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select

from referral import charities, domain
from referral.models import ServiceReferral
from shared.auth import Principal
from shared.authz import region_clause
from shared.contracts.base import Event
from shared.contracts.intake import ApplicationSubmitted
from shared.contracts.referral import (
    ServiceAccepted,
    ServiceCompleted,
    ServiceDeclined,
    ServiceMissed,
    ServiceReferred,
)
from shared.db.base import utcnow
from shared.db.uow import UnitOfWork
from shared.errors import Conflict, NotFound

MOVES = {
    "referred": {"accepted", "declined"},
    "accepted": {"completed", "no_show"},
}
CLOSED = frozenset({"declined", "completed", "no_show"})
# outcome → its event, and the field the provider's words travel in
STEPS: dict[str, tuple[type[Event], str]] = {
    "accepted": (ServiceAccepted, "note"),
    "declined": (ServiceDeclined, "note"),
    "completed": (ServiceCompleted, "outcome"),
    "no_show": (ServiceMissed, "note"),
}


class ServiceReferralNotFound(NotFound):
    title = "Service referral not found"


class ServiceReferralClosed(Conflict):
    title = "Not allowed in this state"


async def open_for_application(uow: UnitOfWork, application: ApplicationSubmitted) -> list[ServiceReferral]:
    """A referral per service the application points to, each once per case (a re-sent application, or one
    seen again after the broker lost its log, finds the referrals already made)."""
    indicated = domain.services_indicated(application)
    if not indicated:
        return []
    made = set(
        (await uow.session.execute(select(ServiceReferral.kind).where(ServiceReferral.case_id == application.case_id)))
        .scalars()
        .all()
    )
    opened = []
    now = utcnow()
    for kind, reason in indicated.items():
        if kind in made:
            continue
        provider = charities.provider_for(kind, application.region)
        referral = ServiceReferral(
            referral_id=str(uuid.uuid4()),
            case_id=application.case_id,
            kind=kind,
            reason=reason,
            region=application.region,
            street=application.street,
            community=application.community,
            organisation=provider.org_id if provider else None,
            status="referred" if provider else "unassigned",
            outcome="",
            created_at=now,
            updated_at=now,
        )
        uow.session.add(referral)
        opened.append(referral)
        await uow.outbox.add(
            ServiceReferred(
                case_id=referral.case_id,
                referral_id=referral.referral_id,
                kind=kind,
                organisation=referral.organisation,
                area=referral.region,
                reason=reason,
            ),
            key=referral.case_id,
        )
    await uow.session.flush()
    return opened


def _scope(principal: Principal) -> Any:
    """A provider sees the referrals made to it; casework sees those in its region (district, street or
    community, as a case is scoped)."""
    if principal.role == "charity":
        return ServiceReferral.organisation == charities.organisation_of(principal).org_id
    return region_clause(principal, ServiceReferral.region, ServiceReferral.street, ServiceReferral.community)


async def list_referrals(
    uow: UnitOfWork,
    principal: Principal,
    *,
    case_id: str | None,
    kind: str | None,
    status: str | None,
    limit: int,
) -> list[ServiceReferral]:
    statement = select(ServiceReferral).where(_scope(principal))
    if case_id:
        statement = statement.where(ServiceReferral.case_id == case_id)
    if kind:
        statement = statement.where(ServiceReferral.kind == kind)
    if status:
        statement = statement.where(ServiceReferral.status == status)
    statement = statement.order_by(ServiceReferral.created_at.desc(), ServiceReferral.referral_id).limit(limit)
    return list((await uow.session.execute(statement)).scalars())


async def record_outcome(
    uow: UnitOfWork, referral_id: str, principal: Principal, outcome: str, note: str
) -> ServiceReferral:
    """The provider's step: accepted or declined, then completed or no_show. Only the provider the referral
    went to may record it (another's looks missing)."""
    organisation = charities.organisation_of(principal)
    referral = (
        await uow.session.execute(
            select(ServiceReferral)
            .where(ServiceReferral.referral_id == referral_id, ServiceReferral.organisation == organisation.org_id)
            .with_for_update()
        )
    ).scalar_one_or_none()
    if referral is None:
        raise ServiceReferralNotFound(f"No service referral {referral_id}.")
    if outcome not in MOVES.get(referral.status, set()):
        raise ServiceReferralClosed(
            f"a referral that is {referral.status} cannot become {outcome}", current_status=referral.status
        )
    now = utcnow()
    referral.status = outcome
    referral.updated_at = now
    if note:
        referral.outcome = note[:500]
    if outcome == "accepted":
        referral.accepted_at = now
    if outcome in CLOSED:
        referral.closed_at = now
    event_type, text = STEPS[outcome]
    event = event_type(
        case_id=referral.case_id,
        referral_id=referral.referral_id,
        kind=referral.kind,
        organisation=organisation.org_id,
        **{text: note[:500]},
    )
    await uow.outbox.add(event, key=referral.case_id)
    return referral
