"""A household's contact details for the charity that takes on its need, only with its consent.

Contact details stay in intake: no name, phone or ID number crosses Kafka, and referral holds none. A
household agrees at application (`consent.charity_contact`, separate from the consent to economic
verification) that a charity holding one of its needs may have the applicant's name and phone. Intake knows
who holds each need from referral's `need.claimed` and `need.matched` events (the case view's referrals), so
it answers the charity's `GET /v1/needs/{need_id}/contact` itself, with no call to referral:

    the caller holds the need (claimed, not yet delivered), the case is in the caller's region,
    and the household's consent is in force  →  the applicant's name and phone, and a disclosure on record

Every answer, refusals included, is in the hash-chained audit log with the charity's id and the purpose; a
disclosure also shows on the case view, so the household can be told who has its details. An advisor or the
window records the household withdrawing its consent; nothing is disclosed after that.
"""

from __future__ import annotations

from dataclasses import dataclass

from intake import domain
from intake.models import Case, ContactDisclosure, messaging
from intake.repository import CaseRepository
from intake.service import CaseNotFound, case_scope
from shared import audit
from shared.auth import Principal
from shared.contracts.intake import ContactConsentWithdrawn
from shared.db.base import utcnow
from shared.db.uow import UnitOfWork
from shared.errors import Conflict, DomainError, NotFound
from shared.logging import get_logger
from shared.pii import PiiVault

log = get_logger(__name__)
SOURCE = "/doudi/intake"
PURPOSE = "contact details for the charity holding need {need_id} (household consent)"


class NeedNotHeld(NotFound):
    title = "Need not found"


class NoConsent(DomainError):
    status_code = 403
    title = "No consent to share contact details"


class NeedDelivered(Conflict):
    title = "Need already delivered"


class NothingToWithdraw(Conflict):
    title = "No consent to withdraw"


@dataclass(frozen=True)
class Contact:
    need_id: str
    category: str
    name: str
    phone: str | None


REFUSALS: dict[str, tuple[type[DomainError], str]] = {
    "not_found": (NeedNotHeld, "No need {need_id} held by {caller} (intake learns of a claim seconds after it)."),
    "not_holder": (NeedNotHeld, "No need {need_id} held by {caller} (intake learns of a claim seconds after it)."),
    "no_consent": (NoConsent, "The household did not consent to share its contact details with a charity."),
    "consent_withdrawn": (
        NoConsent,
        "The household withdrew its consent to share its contact details with a charity on {withdrawn_on}.",
    ),
    "delivered": (NeedDelivered, "Need {need_id} is delivered: contact details are given only while it is held."),
}


async def disclose_contact(
    uow: UnitOfWork, need_id: str, principal: Principal, vault: PiiVault, client: str = ""
) -> Contact:
    """The applicant's name and phone for the charity holding `need_id`, if the household consented. Every
    answer is audited; the caller commits whether it is given or refused (the refusal's entry stays)."""
    repository = CaseRepository(uow.session)
    referral = await repository.get_referral(need_id)
    case: Case | None = None
    if referral is not None and referral.kind in domain.CHARITY_NEED_KINDS:
        case = await repository.get(referral.case_id, where=case_scope(principal))
    if referral is None or case is None:
        outcome = "not_found"
    else:
        outcome = domain.contact_disclosure(
            holder=referral.organisation,
            status=referral.status,
            caller=principal.subject,
            consent_given=case.charity_contact_consent,
            consent_withdrawn=case.charity_contact_withdrawn_at is not None,
        )
    await audit.record(
        uow.session,
        messaging.audit,
        principal,
        action="disclose_contact",
        resource="case",
        resource_id=case.case_id if case is not None else f"need:{need_id}",
        outcome="ok" if outcome == "ok" else f"denied_{outcome}",
        client=client,
        purpose=PURPOSE.format(need_id=need_id),
    )
    if outcome != "ok" or case is None or referral is None:
        error, detail = REFUSALS[outcome]
        withdrawn = case.charity_contact_withdrawn_at if case is not None else None
        log.info("contact_refused", need_id=need_id, organisation=principal.subject, outcome=outcome)
        raise error(
            detail.format(
                need_id=need_id,
                caller=principal.subject,
                withdrawn_on=withdrawn.date().isoformat() if withdrawn else "",
            ),
            need_id=need_id,
            reason=outcome,
        )
    members = await repository.list_members(case.case_id)
    applicant = next((m for m in members if m.relationship == "applicant"), members[0])
    uow.session.add(
        ContactDisclosure(case_id=case.case_id, need_id=need_id, organisation=principal.subject, disclosed_at=utcnow())
    )
    log.info("contact_disclosed", case_id=case.case_id, need_id=need_id, organisation=principal.subject)
    return Contact(
        need_id=need_id,
        category=referral.category,
        name=applicant.name,
        phone=vault.decrypt(case.contact_phone_encrypted) if case.contact_phone_encrypted else None,
    )


async def withdraw_consent(uow: UnitOfWork, case_id: str, principal: Principal, client: str = "") -> Case:
    """The household withdraws its consent to share its contact details with charities: nothing is disclosed
    from now on, and referral stops showing its needs as consented. Withdrawing again changes nothing; a
    household that never consented has nothing to withdraw (409)."""
    repository = CaseRepository(uow.session)
    case = await repository.get(case_id, for_update=True, where=case_scope(principal))
    outcome = "ok" if case is not None else "not_found"
    if case is not None and not case.charity_contact_consent:
        outcome = "denied_never_given"
    await audit.record(
        uow.session,
        messaging.audit,
        principal,
        action="withdraw_contact_consent",
        resource="case",
        resource_id=case_id,
        outcome=outcome,
        client=client,
    )
    if case is None:
        raise CaseNotFound(f"No case {case_id}.", case_id=case_id)
    if not case.charity_contact_consent:
        raise NothingToWithdraw(
            f"Case {case_id}: the household did not consent to share its contact details.", case_id=case_id
        )
    if case.charity_contact_withdrawn_at is not None:
        return case
    now = utcnow()
    case.charity_contact_withdrawn_at = now
    case.updated_at = now
    event = ContactConsentWithdrawn(case_id=case_id, region=case.region, withdrawn_at=now)
    event_id = await uow.outbox.add(event, key=case_id)
    await repository.add_event(
        case_id=case_id,
        event_id=event_id,
        event_type=event.event_type,
        source=SOURCE,
        occurred_at=now,
        summary={"withdrawn_at": now.isoformat(), "by": principal.subject},
    )
    return case
