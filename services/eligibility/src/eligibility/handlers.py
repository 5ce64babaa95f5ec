"""Kafka → eligibility."""

from __future__ import annotations

from typing import Any

from eligibility import service
from shared.contracts.intake import ApplicationSubmitted
from shared.db.uow import UnitOfWork
from shared.messaging.consumer import Handler
from shared.messaging.envelope import Envelope


async def on_application_submitted(uow: UnitOfWork, event: ApplicationSubmitted, envelope: Envelope) -> None:
    await service.assess_application(uow, event)


def build_handlers(_settings: Any) -> dict[str, Handler]:
    return {"intake.application.submitted": on_application_submitted}
