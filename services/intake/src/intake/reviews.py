"""Reviews of households receiving aid (dynamic management, 动态管理): on schedule, or because the household
reported a change. The street office records the household as it found it; eligibility verifies it against
its data sources and evaluates it again (S5 第三十一条、第三十二条).

Members travel to eligibility with their pseudonymous person keys, set here from the ID numbers on the case,
never from what a client sends, so the sources look up the people the case is about.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from intake.api.schemas import ReviewHousehold
from intake.domain import may_review
from intake.models import Case
from intake.repository import CaseRepository
from intake.service import SOURCE, NotUnderAssistance, _visible_case
from shared.auth import Principal
from shared.contracts.intake import ApplicationReviewed, HouseholdFacts
from shared.db.base import utcnow
from shared.db.uow import UnitOfWork
from shared.errors import Conflict
from shared.pii import PiiVault


class NotVerifiedYet(Conflict):
    title = "Not verified yet"


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
    """Record a review of a household receiving aid: its facts as found now go to eligibility, which verifies
    and evaluates them again and stops, changes or continues the aid."""
    repository = CaseRepository(uow.session)
    case = await _visible_case(uow, repository, case_id, principal, "review", client)
    if not may_review(case.status):
        raise NotUnderAssistance(f"Case {case_id} is {case.status}; only approved cases are reviewed.", case_id=case_id)
    if case.verified_at is None:  # only an emergency's aid first is approved before the means test ends
        raise NotVerifiedYet(
            f"Case {case_id} is still waiting for its means test; review it once it is decided.", case_id=case_id
        )
    members = {m.ref: m for m in await repository.list_members(case_id)}
    facts = _facts(
        household, {ref: vault.person_key(vault.decrypt(m.id_number_encrypted)) for ref, m in members.items()}
    )
    now = utcnow()
    case.household = facts.model_dump(mode="json")
    case.updated_at = now
    event = ApplicationReviewed(case_id=case_id, region=case.region, household=facts, reviewed_on=today, kind=kind)
    event_id = await uow.outbox.add(event, key=case_id)
    await repository.add_event(
        case_id=case_id,
        event_id=event_id,
        event_type=event.event_type,
        source=SOURCE,
        occurred_at=now,
        summary={"reviewed_on": today.isoformat(), "kind": kind, "by": principal.subject},
    )
    return case


def _facts(household: ReviewHousehold, person_keys: dict[str, str]) -> HouseholdFacts:
    """The household as the rules see it: no names, no ID numbers; each member's person key from the case."""
    data: dict[str, Any] = household.model_dump(mode="json")
    for member in data["members"]:
        member.pop("name", None)
        member.pop("id_number", None)
        member["person_key"] = person_keys.get(member["ref"])
    return HouseholdFacts.model_validate(data)
