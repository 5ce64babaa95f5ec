"""Kafka → referral."""

from __future__ import annotations

from typing import Any

from referral import offers, outreach, service, service_referrals
from shared.contracts.eligibility import DeterminationApproved, DeterminationDenied, LeadQualified
from shared.contracts.intake import ApplicationSubmitted, ContactConsentWithdrawn
from shared.db.uow import UnitOfWork
from shared.messaging.consumer import Handler
from shared.messaging.envelope import Envelope


async def on_determination_denied(uow: UnitOfWork, event: DeterminationDenied, envelope: Envelope) -> None:
    await service.publish_need_for_denial(uow, event)


async def on_determination_approved(uow: UnitOfWork, event: DeterminationApproved, envelope: Envelope) -> None:
    await service.publish_needs_for_gaps(uow, event)


async def on_consent_withdrawn(uow: UnitOfWork, event: ContactConsentWithdrawn, envelope: Envelope) -> None:
    await service.withdraw_consent(uow, event)


async def on_application_submitted(uow: UnitOfWork, event: ApplicationSubmitted, envelope: Envelope) -> None:
    await offers.remember_case(uow, event)
    await outreach.converted_by_application(uow, event)
    await service_referrals.open_for_application(uow, event)


def build_handlers(settings: Any) -> dict[str, Handler]:
    async def on_lead_qualified(uow: UnitOfWork, event: LeadQualified, envelope: Envelope) -> None:
        await outreach.open_task(uow, event, settings.outreach_response_days)

    return {
        "intake.application.submitted": on_application_submitted,
        "intake.application.consent_withdrawn": on_consent_withdrawn,
        "eligibility.determination.denied": on_determination_denied,
        "eligibility.determination.approved": on_determination_approved,
        "eligibility.lead.qualified": on_lead_qualified,
    }
