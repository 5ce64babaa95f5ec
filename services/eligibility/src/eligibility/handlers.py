"""Kafka → eligibility."""

from __future__ import annotations

from typing import Any

from eligibility import service
from shared.clock import Clock
from shared.contracts.intake import ApplicationSubmitted
from shared.db.uow import UnitOfWork
from shared.messaging.consumer import Handler
from shared.messaging.envelope import Envelope


def build_handlers(settings: Any) -> dict[str, Handler]:
    clock = Clock.for_data_dir(settings.data_dir, production=settings.env == "production")

    async def on_application_submitted(uow: UnitOfWork, event: ApplicationSubmitted, envelope: Envelope) -> None:
        await service.assess_application(uow, event, clock)

    return {"intake.application.submitted": on_application_submitted}
