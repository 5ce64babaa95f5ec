"""Charities: who they are (a register held as data), which needs they see, and claiming and delivering.

A charity sees a need only in its categories and areas, masked as published (no name, no ID number); it
may hold at most its capacity of claims not yet delivered. Claims and deliveries are events, so the case
view shows them.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy import false, func, or_, select

from referral.models import Need
from shared.auth import Principal
from shared.authz import Forbidden
from shared.contracts.base import Money
from shared.contracts.referral import NeedClaimed, NeedDelivered
from shared.db.base import utcnow
from shared.db.uow import UnitOfWork
from shared.errors import Conflict, NotFound

REGISTER = Path(__file__).parent / "organisations.toml"


@dataclass(frozen=True)
class Organisation:
    org_id: str
    name: str
    categories: frozenset[str]
    areas: tuple[str, ...]
    capacity: int


class NeedNotFound(NotFound):
    title = "Need not found"


class NeedTaken(Conflict):
    title = "Not allowed in this state"


@lru_cache(maxsize=1)
def register() -> dict[str, Organisation]:
    data = tomllib.loads(REGISTER.read_text(encoding="utf-8"))
    return {
        org_id: Organisation(
            org_id, entry["name"], frozenset(entry["categories"]), tuple(entry["areas"]), int(entry["capacity"])
        )
        for org_id, entry in data.items()
    }


def provider_for(kind: str, region: str) -> Organisation | None:
    """The organisation a service referral of `kind` for a case in `region` goes to: of those with the kind
    among their categories and an area covering the region, the one whose area is most specific (a
    district's before the city's), then by id. None when nobody covers it."""
    ranked = sorted(
        (-max(len(a) for a in org.areas if region.startswith(a)), org.org_id, org)
        for org in register().values()
        if kind in org.categories and any(region.startswith(a) for a in org.areas)
    )
    return ranked[0][2] if ranked else None


def organisation_of(principal: Principal) -> Organisation:
    found = register().get(principal.subject)
    if found is None:
        raise Forbidden(f"{principal.subject!r} is not a registered charity")
    return found


def visible_to(organisation: Organisation) -> Any:
    """Needs in the charity's categories and areas."""
    in_area = or_(*(Need.area.startswith(area) for area in organisation.areas)) if organisation.areas else false()
    return Need.category.in_(organisation.categories) & in_area


async def _need(uow: UnitOfWork, need_id: str, organisation: Organisation) -> Need:
    need = (
        await uow.session.execute(
            select(Need).where(Need.need_id == need_id, visible_to(organisation)).with_for_update()
        )
    ).scalar_one_or_none()
    if need is None:  # outside its categories or areas looks exactly like missing
        raise NeedNotFound(f"No need {need_id}.")
    return need


async def claim(uow: UnitOfWork, need_id: str, principal: Principal) -> Need:
    organisation = organisation_of(principal)
    need = await _need(uow, need_id, organisation)
    if need.status != "published":
        raise NeedTaken(f"the need is {need.status}", current_status=need.status)
    held = (
        await uow.session.execute(
            select(func.count())
            .select_from(Need)
            .where(Need.claimed_by == organisation.org_id, Need.status == "claimed")
        )
    ).scalar_one()
    if held >= organisation.capacity:
        raise NeedTaken(f"{organisation.org_id} already holds its capacity of {organisation.capacity} open claims")
    need.status = "claimed"
    need.claimed_by = organisation.org_id
    need.updated_at = utcnow()
    await uow.outbox.add(
        NeedClaimed(case_id=need.case_id, need_id=need.need_id, organisation=organisation.org_id), key=need.case_id
    )
    return need


async def deliver(uow: UnitOfWork, need_id: str, principal: Principal, amount: Money | None, note: str) -> Need:
    organisation = organisation_of(principal)
    need = await _need(uow, need_id, organisation)
    if need.status != "claimed" or need.claimed_by != organisation.org_id:
        raise NeedTaken("only the charity that claimed a need delivers it", current_status=need.status)
    need.status = "delivered"
    need.delivered_amount = amount
    need.delivery_note = note[:500]
    need.updated_at = utcnow()
    await uow.outbox.add(
        NeedDelivered(
            case_id=need.case_id,
            need_id=need.need_id,
            organisation=organisation.org_id,
            amount=amount,
            note=need.delivery_note,
        ),
        key=need.case_id,
    )
    return need
