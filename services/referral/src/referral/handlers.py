"""Kafka → referral."""

from __future__ import annotations

from typing import Any

from referral import service
from shared.contracts.eligibility import DeterminationDenied
from shared.db.uow import UnitOfWork
from shared.messaging.consumer import Handler
from shared.messaging.envelope import Envelope


async def on_determination_denied(uow: UnitOfWork, event: DeterminationDenied, envelope: Envelope) -> None:
    await service.publish_need_for_denial(uow, event)


def build_handlers(_settings: Any) -> dict[str, Handler]:
    return {"eligibility.determination.denied": on_determination_denied}
