"""Kafka → eligibility."""

from __future__ import annotations

from typing import Any

from eligibility import assessment, leads, lifecycle
from eligibility.sources import sources_for
from shared.clock import Clock
from shared.contracts.intake import ApplicationReviewed, ApplicationSubmitted, ApplicationWithdrawn, SignalReceived
from shared.db.uow import UnitOfWork
from shared.messaging.consumer import Handler
from shared.messaging.envelope import Envelope


def build_handlers(settings: Any) -> dict[str, Handler]:
    clock = Clock.for_data_dir(settings.data_dir, production=settings.env == "production")
    sources = sources_for(settings)
    retry_seconds = float(getattr(settings, "verification_retry_seconds", 30.0))

    async def on_application_submitted(uow: UnitOfWork, event: ApplicationSubmitted, envelope: Envelope) -> None:
        await assessment.assess_application(uow, event, clock, sources, retry_seconds)

    async def on_application_withdrawn(uow: UnitOfWork, event: ApplicationWithdrawn, envelope: Envelope) -> None:
        await lifecycle.withdraw_case(uow, event)

    async def on_application_reviewed(uow: UnitOfWork, event: ApplicationReviewed, envelope: Envelope) -> None:
        await lifecycle.review_case(uow, event, sources, retry_seconds)

    async def on_signal_received(uow: UnitOfWork, event: SignalReceived, envelope: Envelope) -> None:
        await leads.prescreen(uow, event, sources)

    return {
        "intake.signal.received": on_signal_received,
        "intake.application.submitted": on_application_submitted,
        "intake.application.reviewed": on_application_reviewed,
        "intake.application.withdrawn": on_application_withdrawn,
    }
