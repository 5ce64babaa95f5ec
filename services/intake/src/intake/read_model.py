"""The case read model: every other service's event about a case, folded into what the case view shows
and recorded on its timeline, once."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from intake.domain import (
    CLOSED_STATUSES,
    DETERMINATION_RANK,
    DETERMINATION_STATUS,
    PAYMENT_RANK,
    SERVICE_RANK,
    case_status,
    supersedes,
)
from intake.models import CaseDetermination, CasePayment, CaseReferral
from intake.repository import CaseRepository
from shared.contracts.base import Event
from shared.contracts.disbursement import (
    PaymentCancelled,
    PaymentFailed,
    PaymentInstructed,
    PaymentReturned,
    PaymentSettled,
    RecoveryClosed,
    RecoveryOpened,
)
from shared.contracts.eligibility import (
    DeterminationApproved,
    DeterminationChanged,
    DeterminationConfirmed,
    DeterminationDenied,
    DeterminationFlagged,
    DeterminationNoticed,
    DeterminationObjected,
    DeterminationProposed,
    DeterminationReviewed,
    DeterminationStopped,
    DeterminationWithdrawn,
    VerificationCompleted,
    VerificationDelayed,
)
from shared.contracts.referral import (
    NeedClaimed,
    NeedDelivered,
    NeedMatched,
    NeedPublished,
    ServiceAccepted,
    ServiceCompleted,
    ServiceDeclined,
    ServiceMissed,
    ServiceReferred,
)
from shared.db.base import utcnow
from shared.db.uow import UnitOfWork
from shared.logging import get_logger

log = get_logger(__name__)
PAYMENT_STATUS = {
    "disbursement.payment.cancelled": "cancelled",
    "disbursement.payment.instructed": "pending",
    "disbursement.payment.settled": "settled",
    "disbursement.payment.failed": "failed",
    "disbursement.payment.returned": "returned",
    "disbursement.payment.recovery_opened": "owed_back",
}
SERVICE_STATUS = {
    "referral.service.accepted": "accepted",
    "referral.service.declined": "declined",
    "referral.service.completed": "completed",
    "referral.service.missed": "no_show",
}


async def record_event(uow: UnitOfWork, event: Event, *, event_id: str, source: str, occurred_at: datetime) -> None:
    """Fold another service's event into the case read model and its timeline. Order-tolerant: events of
    one case can arrive from different topics in any order."""
    case_id: str = event.case_id  # type: ignore[attr-defined]
    repository = CaseRepository(uow.session)
    case = await repository.get(case_id, for_update=True)
    recorded = await repository.add_event(
        case_id=case_id,
        event_id=event_id,
        event_type=event.event_type,
        source=source,
        occurred_at=occurred_at,
        summary=_summary(event),
    )
    # A redelivered event changes nothing; an event for a case this intake never saw stays on the timeline, so
    # nothing is lost, but there is no read model to fold it into (cases originate here, so it cannot happen
    # today).
    if not recorded or case is None:
        return
    match event:
        # The latest means test: the application's, then each review's (`kind`, `reviewed_on`).
        case VerificationCompleted():
            case.verified_at = case.verified_at or occurred_at
            case.verification = {
                "status": "completed",
                "kind": event.kind,
                "reviewed_on": event.reviewed_on.isoformat() if event.reviewed_on else None,
                "sources": event.sources,
                "evidence": [e.model_dump(mode="json") for e in event.evidence],
                "differences": [d.model_dump(mode="json") for d in event.differences],
                "discrepancies": event.discrepancies,
            }
        # An application's delay never hides a finished test (events from one topic, in order, but a retried
        # application can race its own completion); a review's delay is news after it.
        case VerificationDelayed() if case.verified_at is None or event.kind == "review":
            case.verification = {
                "status": "delayed",
                "kind": event.kind,
                "reviewed_on": event.reviewed_on.isoformat() if event.reviewed_on else None,
                "reason": event.reason,
                "sources_down": event.sources_down,
                "attempts": event.attempts,
                "next_attempt_at": event.next_attempt_at.isoformat(),
            }
            if event.kind == "review":
                case.verification["meanwhile"] = "the aid goes on unchanged until the review's figures are verified"
        case (
            DeterminationProposed()
            | DeterminationNoticed()
            | DeterminationObjected()
            | DeterminationApproved()
            | DeterminationDenied()
            | DeterminationWithdrawn()
            | DeterminationStopped()
            | DeterminationReviewed()
            | DeterminationChanged()
            | DeterminationConfirmed()
            | DeterminationFlagged()
        ):
            status = DETERMINATION_STATUS[event.event_type]
            row = await repository.get_determination(event.determination_id)
            if row is None:
                row = CaseDetermination(
                    determination_id=event.determination_id, case_id=case_id, programme=event.programme, status=status
                )
                uow.session.add(row)
            elif not supersedes(DETERMINATION_RANK, row.status, status):
                row = None
            if row is not None:
                row.status = status
                row.monthly_amount = event.monthly_amount
                row.amount = event.amount
                row.reasons = [r.model_dump() for r in event.reasons]
                row.decided_on = event.decided_on
                row.rule = event.rule
                if isinstance(event, DeterminationProposed):
                    row.decision_due = event.decision_due
                if isinstance(event, DeterminationNoticed):
                    row.notice_ends_on = event.notice_ends_on
                elif isinstance(event, DeterminationObjected):
                    row.notice_ends_on = None
                if isinstance(event, DeterminationDenied):
                    row.notice_due = event.notice_due
                if isinstance(event, DeterminationApproved | DeterminationReviewed):
                    row.review_due = event.review_due
                elif isinstance(event, DeterminationStopped):
                    row.review_due = None
                    row.last_period = event.last_period
        case (
            PaymentInstructed()
            | PaymentSettled()
            | PaymentFailed()
            | PaymentReturned()
            | PaymentCancelled()
            | RecoveryOpened()
            | RecoveryClosed()
        ):
            # An advance verification did not support is owed back, then recovered, waived or never paid.
            status = event.outcome if isinstance(event, RecoveryClosed) else PAYMENT_STATUS[event.event_type]
            payment = await repository.get_payment(event.payment_id)
            if payment is None:
                payment = CasePayment(
                    payment_id=event.payment_id,
                    case_id=case_id,
                    determination_id=event.determination_id,
                    programme=event.programme,
                    period=event.period,
                    amount=event.amount,
                    status=status,
                )
                uow.session.add(payment)
            elif supersedes(PAYMENT_RANK, payment.status, status):
                payment.status = status
                if not isinstance(event, RecoveryClosed):  # its amount is what was recovered, not the payment's
                    payment.amount = event.amount  # an amount amended before the bank had it
            if isinstance(event, PaymentSettled):
                payment.bank_reference = event.bank_reference
            elif isinstance(event, PaymentFailed | PaymentReturned | PaymentCancelled | RecoveryOpened):
                payment.reason = event.reason
            elif isinstance(event, RecoveryClosed):
                payment.reason = f"{event.outcome} {event.amount:.2f}: {event.note}" if event.note else event.outcome
        case NeedPublished():
            if await repository.get_referral(event.need_id) is None:
                uow.session.add(
                    CaseReferral(
                        referral_id=event.need_id,
                        case_id=case_id,
                        kind="charity_need",
                        category=event.category,
                        area=event.area,
                        status="published",
                        amount=event.amount,
                        reason=event.reason,
                    )
                )
        case NeedMatched():
            # An advisor matched a charity's offer: the need a denial published is claimed, or a new one is.
            referral = await repository.get_referral(event.need_id)
            if referral is None:
                uow.session.add(
                    CaseReferral(
                        referral_id=event.need_id,
                        case_id=case_id,
                        kind="charity_offer",
                        category=event.category,
                        area=event.area,
                        status="claimed",
                        amount=event.amount,
                        organisation=event.organisation,
                        reason="offer",
                    )
                )
            elif referral.status == "published":
                referral.status = "claimed"
                referral.organisation = event.organisation
                referral.amount = event.amount
        case NeedClaimed() | NeedDelivered():
            referral = await repository.get_referral(event.need_id)
            status = "claimed" if isinstance(event, NeedClaimed) else "delivered"
            if referral is not None and (referral.status, status) != ("delivered", "claimed"):
                referral.status = status
                referral.organisation = event.organisation
                if isinstance(event, NeedDelivered):
                    referral.outcome = event.note[:500]  # the charity's feedback
        case ServiceReferred():
            if await repository.get_referral(event.referral_id) is None:
                uow.session.add(
                    CaseReferral(
                        referral_id=event.referral_id,
                        case_id=case_id,
                        kind="service",
                        category=event.kind,
                        area=event.area,
                        status="referred" if event.organisation else "unassigned",
                        organisation=event.organisation,
                        reason=event.reason,
                    )
                )
        case ServiceAccepted() | ServiceDeclined() | ServiceCompleted() | ServiceMissed():
            # One topic, keyed by case: the referral's own event always comes first.
            referral = await repository.get_referral(event.referral_id)
            status = SERVICE_STATUS[event.event_type]
            if referral is not None and supersedes(SERVICE_RANK, referral.status, status):
                referral.status = status
                referral.outcome = (event.outcome if isinstance(event, ServiceCompleted) else event.note) or (
                    referral.outcome
                )
    await uow.session.flush()
    statuses = [d.status for d in await repository.list_determinations(case_id)]
    before = case.status
    if before != "withdrawn":  # a withdrawal is the household's word: later events do not reopen the case
        case.status = case_status(case.verified_at is not None, statuses)
    if case.status in CLOSED_STATUSES and before not in CLOSED_STATUSES:
        await repository.release_members(case_id)
    elif before in CLOSED_STATUSES and case.status not in CLOSED_STATUSES:
        await repository.reclaim_members(case_id)
    case.updated_at = utcnow()


def _summary(event: Event) -> dict[str, Any]:
    data = event.model_dump(mode="json")
    data.pop("case_id", None)
    return data
