"""Two-way claiming: a charity offers help (a category, an area, so many households, an amount), and an advisor
or officer in that area matches it to a case.

A match is a claim: the case's need in the offer's category (the one a denial published, or a new one) is
claimed by the offering charity, which delivers it as it delivers any claimed need (charities.deliver), so
the case view follows it the same way. An offer takes at most `capacity` households, then it is full.

    offer: open ──(capacity matched)──▶ full
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from sqlalchemy import literal, or_, select, update
from sqlalchemy.exc import IntegrityError

from referral import charities
from referral.models import KnownCase, Need, Offer
from shared.auth import Principal, scope_prefix
from shared.authz import Forbidden, region_clause
from shared.contracts.intake import ApplicationSubmitted
from shared.contracts.referral import NeedMatched
from shared.db.base import utcnow
from shared.db.uow import UnitOfWork
from shared.errors import Conflict, NotFound

OFFER_REASON = "offer"


class OfferNotFound(NotFound):
    title = "Offer not found"


class CaseNotFound(NotFound):
    title = "Case not found"


class OfferNotMatched(Conflict):
    title = "Not allowed in this state"


async def remember_case(uow: UnitOfWork, application: ApplicationSubmitted) -> None:
    """Where a case is, from its application: what matching an offer to it is scoped by."""
    if await uow.session.get(KnownCase, application.case_id) is not None:
        return
    uow.session.add(
        KnownCase(
            case_id=application.case_id,
            region=application.region,
            street=application.street,
            community=application.community,
            created_at=utcnow(),
            contact_consent=application.charity_contact_consent,
        )
    )
    if application.charity_contact_consent:  # a need published before the application reached referral
        await uow.session.execute(update(Need).where(Need.case_id == application.case_id).values(consented=True))
    await uow.session.flush()


async def publish_offer(
    uow: UnitOfWork,
    principal: Principal,
    *,
    category: str,
    area: str,
    capacity: int,
    amount: Decimal | None,
    description: str,
) -> Offer:
    """Only in the charity's own categories and within its areas (the register says which)."""
    organisation = charities.organisation_of(principal)
    if category not in organisation.categories:
        raise Forbidden(f"{category!r} is not among {organisation.org_id}'s categories")
    prefix = scope_prefix(area)
    if not any(prefix.startswith(own) for own in organisation.areas):
        raise Forbidden(f"{area} is outside {organisation.org_id}'s areas")
    now = utcnow()
    offer = Offer(
        offer_id=str(uuid.uuid4()),
        organisation=organisation.org_id,
        category=category,
        area=area,
        area_prefix=prefix,
        capacity=capacity,
        amount=amount,
        description=description,
        matched=0,
        status="open",
        created_at=now,
        updated_at=now,
    )
    uow.session.add(offer)
    await uow.session.flush()
    return offer


def _visible(principal: Principal) -> Any:
    """A charity sees its own offers; casework those whose area overlaps its region (a Shanghai-wide offer
    in Pudong, a Pudong offer for a Shanghai-wide officer)."""
    if principal.role == "charity":
        return Offer.organisation == charities.organisation_of(principal).org_id
    scope = principal.scope
    return or_(Offer.area_prefix.startswith(scope), literal(scope).startswith(Offer.area_prefix))


async def list_offers(
    uow: UnitOfWork, principal: Principal, *, category: str | None, status: str | None, limit: int
) -> list[Offer]:
    statement = select(Offer).where(_visible(principal))
    if category:
        statement = statement.where(Offer.category == category)
    if status:
        statement = statement.where(Offer.status == status)
    statement = statement.order_by(Offer.created_at.desc(), Offer.offer_id).limit(limit)
    return list((await uow.session.execute(statement)).scalars())


async def match(uow: UnitOfWork, offer_id: str, case_id: str, principal: Principal) -> tuple[Offer, Need, bool]:
    """Match an offer to a case; returns (offer, need, made now). Matching the same offer to the same case
    again returns the match already made."""
    offer = (
        await uow.session.execute(
            select(Offer).where(Offer.offer_id == offer_id, _visible(principal)).with_for_update()
        )
    ).scalar_one_or_none()
    if offer is None:
        raise OfferNotFound(f"No offer {offer_id}.")
    case = (
        await uow.session.execute(
            select(KnownCase).where(
                KnownCase.case_id == case_id,
                region_clause(principal, KnownCase.region, KnownCase.street, KnownCase.community),
            )
        )
    ).scalar_one_or_none()
    if case is None:  # outside the caller's region looks exactly like missing
        raise CaseNotFound(f"No case {case_id} (referral knows a case from its application).")
    need = (
        await uow.session.execute(
            select(Need).where(Need.case_id == case_id, Need.category == offer.category).with_for_update()
        )
    ).scalar_one_or_none()
    if need is not None and need.offer_id == offer.offer_id:
        return offer, need, False
    if offer.status != "open":
        raise OfferNotMatched(f"the offer is {offer.status}", current_status=offer.status)
    if not case.region.startswith(offer.area_prefix):
        raise OfferNotMatched(f"the offer covers {offer.area}; the case is in {case.region}")
    now = utcnow()
    if need is None:
        need = Need(
            need_id=str(uuid.uuid4()),
            case_id=case_id,
            determination_id=None,
            offer_id=offer.offer_id,
            category=offer.category,
            area=case.region,
            amount=offer.amount,
            reason=OFFER_REASON,
            status="claimed",
            claimed_by=offer.organisation,
            created_at=now,
            updated_at=now,
            consented=case.contact_consent,
        )
        try:
            async with uow.session.begin_nested():  # another offer matched to this case's need a moment ago
                uow.session.add(need)
                await uow.session.flush()
        except IntegrityError:
            raise OfferNotMatched(f"the case's {offer.category} need was just taken") from None
    elif need.status == "published":
        need.status = "claimed"
        need.claimed_by = offer.organisation
        need.offer_id = offer.offer_id
        need.amount = need.amount if offer.amount is None else offer.amount
        need.updated_at = now
    else:
        raise OfferNotMatched(
            f"the case's {offer.category} need is already {need.status} by {need.claimed_by}",
            current_status=need.status,
        )
    offer.matched += 1
    offer.status = "full" if offer.matched >= offer.capacity else "open"
    offer.updated_at = now
    await uow.outbox.add(
        NeedMatched(
            case_id=case_id,
            need_id=need.need_id,
            offer_id=offer.offer_id,
            organisation=offer.organisation,
            category=offer.category,
            area=need.area,
            amount=need.amount,
            consented=need.consented,
        ),
        key=case_id,
    )
    return offer, need, True
