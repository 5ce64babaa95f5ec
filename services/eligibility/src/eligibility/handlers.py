"""Kafka → eligibility."""

from __future__ import annotations

from eligibility import service
from eligibility.settings import EligibilitySettings
from shared.contracts.intake import ApplicationSubmitted
from shared.db.uow import UnitOfWork
from shared.messaging.consumer import Handler
from shared.messaging.envelope import Envelope


def build_handlers(settings: EligibilitySettings) -> dict[str, Handler]:
    standard = settings.placeholder_standard

    async def on_application_submitted(uow: UnitOfWork, event: ApplicationSubmitted, envelope: Envelope) -> None:
        await service.assess_application(uow, event, standard)

    return {"intake.application.submitted": on_application_submitted}
