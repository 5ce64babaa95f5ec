"""Intake's use cases. They change state and queue events; the entrypoint that opened the unit of work commits."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any

from intake.api.schemas import ApplicationCreate
from intake.domain import (
    may_withdraw,
)
from intake.models import Case, messaging
from intake.repository import CaseRepository
from shared import audit
from shared.auth import Principal
from shared.authz import region_clause
from shared.contracts.intake import ApplicationSubmitted, ApplicationWithdrawn, HouseholdFacts
from shared.db.base import utcnow
from shared.db.uow import UnitOfWork
from shared.errors import Conflict, NotFound
from shared.logging import get_logger
from shared.pii import PiiVault

log = get_logger(__name__)
SOURCE = "/doudi/intake"


class CaseNotFound(NotFound):
    title = "Case not found"


class PersonInOpenCase(Conflict):
    title = "Already on an open case"


def _already_open(ref: str, case_id: str) -> PersonInOpenCase:
    return PersonInOpenCase(
        f"Member {ref} already belongs to open case {case_id}: follow that case, or close it first.",
        case_id=case_id,
        member=ref,
    )


async def submit_application(uow: UnitOfWork, command: ApplicationCreate, vault: PiiVault, filed_by: str = "") -> Case:
    now = utcnow()
    case_id = str(uuid.uuid4())
    household = command.household.model_dump(mode="json")
    for member in household["members"]:  # the verification centre finds people by their pseudonymous key
        member["person_key"] = vault.person_key(member["id_number"])
    facts = HouseholdFacts.model_validate({**household, "emergency": command.emergency})
    # Empty means the household asked for nothing in particular: every programme is evaluated anyway.
    programmes = list(command.programmes or [])
    row = {
        "case_id": case_id,
        "status": "submitted",
        "region": command.region,
        "street": command.street,
        "community": command.community,
        "channel": command.channel,
        "programmes": programmes,
        "household": facts.model_dump(mode="json"),
        "payee_account": command.payee_account,
        "submitted_on": now.date(),
        "created_at": now,
        "updated_at": now,
        "contact_phone_encrypted": vault.encrypt(command.contact_phone) if command.contact_phone else None,
        "charity_contact_consent": command.consent.charity_contact,
    }
    members = [
        {
            "case_id": case_id,
            "ref": m.ref,
            "name": m.name,
            "id_number_encrypted": vault.encrypt(m.id_number),
            "id_number_hash": vault.lookup_hash(m.id_number),
            "relationship": m.relationship,
        }
        for m in command.household.members
    ]
    repository = CaseRepository(uow.session)
    await _hold_members(repository, case_id, command, vault)
    await repository.insert(row, members)
    event = ApplicationSubmitted(
        case_id=case_id,
        region=command.region,
        street=command.street,
        community=command.community,
        channel=command.channel,
        programmes=programmes,
        household=facts,
        submitted_at=now.date(),
        payee_account=command.payee_account,
        filed_by=filed_by,
        lead_id=command.lead_id,
        services_requested=list(dict.fromkeys(command.services_requested)),
        charity_contact_consent=command.consent.charity_contact,
    )
    event_id = await uow.outbox.add(event, key=case_id)
    await repository.add_event(
        case_id=case_id,
        event_id=event_id,
        event_type=event.event_type,
        source=SOURCE,
        occurred_at=now,
        summary={
            "channel": command.channel,
            "programmes": programmes,
            "members": len(command.household.members),
        },
    )
    return Case(**row)  # as written; not in the session (a later read in this transaction loads it)


async def _hold_members(repository: CaseRepository, case_id: str, command: ApplicationCreate, vault: PiiVault) -> None:
    """A person belongs to at most one open case, kept by the primary key of `open_memberships` (also for two
    applications racing each other): the insert skips anyone held already, and the answer names them."""
    ref_of: dict[str, str] = {}
    for member in command.household.members:
        for hashed in vault.lookup_hashes(member.id_number):  # every key: rows written before a rotation too
            ref_of[hashed] = member.ref
    current = [vault.lookup_hash(m.id_number) for m in command.household.members]
    if len(ref_of) > len(current):  # after a key rotation, rows under an older key are found only by looking
        found = await repository.open_case_of(list(ref_of))
        if found is not None:
            raise _already_open(ref_of[found[0]], found[1])
    # In key order: two applications sharing two people, listed in opposite orders, never wait on each other.
    held_elsewhere = await repository.hold(case_id, sorted(current))
    if held_elsewhere:
        found = await repository.open_case_of(sorted(held_elsewhere))
        # Nothing found: the other case closed between the two statements; the caller may simply retry.
        raise _already_open(ref_of[found[0]] if found else "?", found[1] if found else "(just closed)")


class CaseClosed(Conflict):
    title = "Case closed"


class NotUnderAssistance(Conflict):
    title = "Not receiving aid"


async def withdraw_case(
    uow: UnitOfWork, case_id: str, principal: Principal, *, reason: str, client: str, today: date
) -> Case:
    """The household withdraws its application, or asks to leave the assistance it receives: the case
    closes, its members may apply again, eligibility decides nothing still open and stops monthly aid after
    this month."""
    repository = CaseRepository(uow.session)
    case = await _visible_case(uow, repository, case_id, principal, "withdraw", client, for_update=True)
    if not may_withdraw(case.status):
        raise CaseClosed(f"Case {case_id} is {case.status}; there is nothing to withdraw.", case_id=case_id)
    now = utcnow()
    case.status = "withdrawn"
    case.updated_at = now
    await repository.release_members(case_id)
    event = ApplicationWithdrawn(case_id=case_id, region=case.region, withdrawn_on=today)
    event_id = await uow.outbox.add(event, key=case_id)
    await repository.add_event(
        case_id=case_id,
        event_id=event_id,
        event_type=event.event_type,
        source=SOURCE,
        occurred_at=now,
        summary={"withdrawn_on": today.isoformat(), "by": principal.subject, "reason": reason[:200]},
    )
    return case


def case_scope(principal: Principal) -> Any:
    return region_clause(principal, Case.region, Case.street, Case.community)


async def _visible_case(
    uow: UnitOfWork,
    repository: CaseRepository,
    case_id: str,
    principal: Principal,
    action: str,
    client: str,
    *,
    for_update: bool = False,
) -> Case:
    """The case if the caller's region covers it, locked: for an update by a caller about to change it, else
    shared, so that a view read from several tables is one picture. Reading a case reads personal data, so
    every read is audited; a case outside the caller's region answers exactly like a missing one, and the
    attempt is audited too."""
    case = await repository.get(case_id, for_update=for_update, for_share=not for_update, where=case_scope(principal))
    outcome = "ok"
    if case is None:
        outcome = "denied_out_of_region" if await repository.get(case_id) is not None else "not_found"
        if outcome == "denied_out_of_region":
            log.warning("case_outside_region", case_id=case_id, subject=principal.subject, region=principal.region)
    await audit.record(
        uow.session,
        messaging.audit,
        principal,
        action=action,
        resource="case",
        resource_id=case_id,
        outcome=outcome,
        client=client,
    )
    if case is None:
        raise CaseNotFound(f"No case {case_id}.", case_id=case_id)
    return case


async def get_case(uow: UnitOfWork, case_id: str, principal: Principal, client: str = "") -> dict[str, Any]:
    repository = CaseRepository(uow.session)
    case = await _visible_case(uow, repository, case_id, principal, "read", client)
    return {
        "case": case,
        "members": await repository.list_members(case_id),
        "determinations": await repository.list_determinations(case_id),
        "payments": await repository.list_payments(case_id),
        "referrals": await repository.list_referrals(case_id),
        "disclosures": await repository.list_disclosures(case_id),
    }


async def get_timeline(uow: UnitOfWork, case_id: str, principal: Principal, client: str = "") -> list[Any]:
    repository = CaseRepository(uow.session)
    await _visible_case(uow, repository, case_id, principal, "read_timeline", client)
    return await repository.list_events(case_id)
