"""Reviews of households receiving aid (dynamic management, 动态管理): on schedule, or because the household
reported a change. The street office records the household as it found it; eligibility verifies it against
its data sources and evaluates it again (S5 第三十一条、第三十二条).

Members travel to eligibility with their pseudonymous person keys, set here from the ID numbers on the case,
never from what a client sends, so the sources look up the people the case is about.

A review may find the household changed (S5 第三十条; 上海市社会救助条例 第三十二条: 家庭人口……发生变化):
a person who joined comes with a new ref, name and ID number, validated, encrypted and held by the case
exactly as an application's members are (on another open case: 409 naming it); a member the review leaves
out has left: the row stays with `left_on`, and the person is released to apply elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy.exc import IntegrityError

from intake.api.schemas import ReviewHousehold, ReviewMember
from intake.domain import may_review
from intake.models import Case, Member, OpenMembership, messaging
from intake.repository import CaseRepository
from intake.service import SOURCE, NotUnderAssistance, _already_open, _visible_case
from shared import audit
from shared.auth import Principal
from shared.contracts.intake import ApplicationReviewed, HouseholdFacts
from shared.db.base import utcnow
from shared.db.uow import UnitOfWork
from shared.errors import Conflict, Unprocessable
from shared.pii import PiiVault


class NotVerifiedYet(Conflict):
    title = "Not verified yet"


class MemberNotRecognised(Unprocessable):
    title = "Member not recognised"


@dataclass(frozen=True)
class Joiner:
    member: ReviewMember
    name: str
    id_number: str


@dataclass(frozen=True)
class MembershipChange:
    joined: list[Joiner]
    left: list[Member]


async def review_case(
    uow: UnitOfWork,
    case_id: str,
    principal: Principal,
    *,
    household: ReviewHousehold,
    kind: str,
    client: str,
    today: date,
    vault: PiiVault,
) -> Case:
    """Record a review of a household receiving aid: people who joined are added to the case (and held by
    it, as an application holds its members), people who left are let go, and the facts as found go to
    eligibility, which verifies and evaluates them again and stops, changes or continues the aid."""
    repository = CaseRepository(uow.session)
    # One review of a case at a time, and its status checked under the lock.
    case = await _visible_case(uow, repository, case_id, principal, "review", client, for_update=True)
    if not may_review(case.status):
        raise NotUnderAssistance(f"Case {case_id} is {case.status}; only approved cases are reviewed.", case_id=case_id)
    if case.verified_at is None:  # only an emergency's aid first is approved before the means test ends
        raise NotVerifiedYet(
            f"Case {case_id} is still waiting for its means test; review it once it is decided.", case_id=case_id
        )
    on_case = await repository.list_members(case_id)
    change = _membership_change(household, on_case, vault)
    await _hold_joiners(uow, repository, case_id, change.joined, vault)
    for joiner in change.joined:
        uow.session.add(
            Member(
                case_id=case_id,
                ref=joiner.member.ref,
                name=joiner.name,
                id_number_encrypted=vault.encrypt(joiner.id_number),
                id_number_hash=vault.lookup_hash(joiner.id_number),
                relationship=joiner.member.relationship,
                joined_on=today,
            )
        )
    for member in change.left:
        member.left_on = today
    if change.left:
        await repository.release_members(case_id, [m.id_number_hash for m in change.left])
    keys = {m.ref: vault.person_key(vault.decrypt(m.id_number_encrypted)) for m in on_case if m.left_on is None}
    keys.update({j.member.ref: vault.person_key(j.id_number) for j in change.joined})
    facts = _facts(household, keys)
    joined, left = [j.member.ref for j in change.joined], [m.ref for m in change.left]
    if joined or left:  # the people on the case changed: personal data written, so audited as such
        await audit.record(
            uow.session,
            messaging.audit,
            principal,
            action="update",
            resource="case_members",
            resource_id=case_id,
            client=client,
            purpose=f"review: joined {', '.join(joined) or 'nobody'}; left {', '.join(left) or 'nobody'}",
        )
    now = utcnow()
    case.household = facts.model_dump(mode="json")
    case.updated_at = now
    event = ApplicationReviewed(
        case_id=case_id, region=case.region, household=facts, reviewed_on=today, kind=kind, joined=joined, left=left
    )
    event_id = await uow.outbox.add(event, key=case_id)
    await repository.add_event(
        case_id=case_id,
        event_id=event_id,
        event_type=event.event_type,
        source=SOURCE,
        occurred_at=now,
        summary={
            "reviewed_on": today.isoformat(),
            "kind": kind,
            "by": principal.subject,
            "joined": joined,
            "left": left,
        },
    )
    await uow.session.flush()
    return case


def _membership_change(household: ReviewHousehold, on_case: list[Member], vault: PiiVault) -> MembershipChange:
    """Who joined and who left, each checked: a member on the case named with an ID number must be that
    person; a new ref is a person joining, who needs a name and an ID number and must not be someone already
    on the case; a ref of someone who left earlier is not reused (a person coming back takes a new ref)."""
    current = {m.ref: m for m in on_case if m.left_on is None}
    former = {m.ref for m in on_case if m.left_on is not None}
    held = {m.id_number_hash: m.ref for m in current.values()}
    joined: list[Joiner] = []
    for index, member in enumerate(household.members):
        field = f"household.members.{index}"
        if member.ref in current:
            if member.id_number and current[member.ref].id_number_hash not in vault.lookup_hashes(member.id_number):
                raise MemberNotRecognised(
                    f"{member.ref} on the case has another ID number; a person joining takes a new ref.",
                    field=f"{field}.id_number",
                )
            continue
        if member.ref in former:
            raise MemberNotRecognised(
                f"{member.ref} was a member who left the household; a person joining takes a new ref.",
                field=f"{field}.ref",
            )
        if not member.name or not member.id_number:
            raise MemberNotRecognised(
                f"{member.ref} is not on the case: a person who joined the household needs a name and ID number.",
                field=f"{field}.id_number" if member.name else f"{field}.name",
            )
        already = next((held[h] for h in vault.lookup_hashes(member.id_number) if h in held), None)
        if already is not None:
            raise MemberNotRecognised(
                f"{member.ref} is already member {already} of this case.", field=f"{field}.id_number"
            )
        joined.append(Joiner(member, member.name, member.id_number))
    named = {m.ref for m in household.members}
    left = [m for ref, m in current.items() if ref not in named]
    return MembershipChange(joined=joined, left=left)


async def _hold_joiners(
    uow: UnitOfWork, repository: CaseRepository, case_id: str, joined: list[Joiner], vault: PiiVault
) -> None:
    """A person belongs to at most one open case, whether they came on the application or joined later: a
    person on another open case is a 409 naming it; the primary key of `open_memberships` settles a race."""
    if not joined:
        return
    ref_of: dict[str, str] = {}
    for joiner in joined:
        for hashed in vault.lookup_hashes(joiner.id_number):
            ref_of[hashed] = joiner.member.ref
    found = await repository.open_case_of(list(ref_of))
    if found is not None:
        raise _already_open(ref_of[found[0]], found[1])
    try:
        async with uow.session.begin_nested():
            uow.session.add_all(
                OpenMembership(id_number_hash=vault.lookup_hash(j.id_number), case_id=case_id) for j in joined
            )
            await uow.session.flush()
    except IntegrityError:
        found = await repository.open_case_of(list(ref_of))
        raise _already_open(ref_of[found[0]] if found else "?", found[1] if found else "(just filed)") from None


def _facts(household: ReviewHousehold, person_keys: dict[str, str]) -> HouseholdFacts:
    """The household as the rules see it: no names, no ID numbers; each member's person key from the case."""
    data: dict[str, Any] = household.model_dump(mode="json")
    for member in data["members"]:
        member.pop("name", None)
        member.pop("id_number", None)
        member["person_key"] = person_keys.get(member["ref"])
    return HouseholdFacts.model_validate(data)
