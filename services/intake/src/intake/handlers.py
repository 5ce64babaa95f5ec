"""Kafka → intake: every other service's case events feed the read model. No business logic here."""

from __future__ import annotations

from intake import read_model
from shared.contracts.base import Event
from shared.db.uow import UnitOfWork
from shared.messaging.consumer import Handler
from shared.messaging.envelope import Envelope


async def on_case_event(uow: UnitOfWork, event: Event, envelope: Envelope) -> None:
    await read_model.record_event(uow, event, event_id=envelope.id, source=envelope.source, occurred_at=envelope.time)


HANDLERS: dict[str, Handler] = dict.fromkeys(
    (
        "eligibility.verification.completed",
        "eligibility.verification.delayed",
        "eligibility.determination.proposed",
        "eligibility.determination.noticed",
        "eligibility.determination.objected",
        "eligibility.determination.approved",
        "eligibility.determination.denied",
        "eligibility.determination.withdrawn",
        "eligibility.determination.stopped",
        "eligibility.determination.reviewed",
        "eligibility.determination.changed",
        "eligibility.determination.confirmed",
        "eligibility.determination.flagged",
        "disbursement.payment.instructed",
        "disbursement.payment.settled",
        "disbursement.payment.failed",
        "disbursement.payment.returned",
        "disbursement.payment.cancelled",
        "disbursement.payment.recovery_opened",
        "disbursement.payment.recovery_closed",
        "referral.need.published",
        "referral.need.claimed",
        "referral.need.matched",
        "referral.need.delivered",
        "referral.service.referred",
        "referral.service.accepted",
        "referral.service.declined",
        "referral.service.completed",
        "referral.service.missed",
    ),
    on_case_event,
)
