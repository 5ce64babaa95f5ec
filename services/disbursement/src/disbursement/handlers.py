"""Kafka → disbursement."""

from __future__ import annotations

from typing import Any

from disbursement import advances, service
from shared.contracts.eligibility import (
    DeterminationApproved,
    DeterminationChanged,
    DeterminationConfirmed,
    DeterminationFlagged,
    DeterminationStopped,
)
from shared.db.uow import UnitOfWork
from shared.messaging.consumer import Handler
from shared.messaging.envelope import Envelope


async def on_determination_approved(uow: UnitOfWork, event: DeterminationApproved, envelope: Envelope) -> None:
    await service.open_entitlement(uow, event)


async def on_determination_stopped(uow: UnitOfWork, event: DeterminationStopped, envelope: Envelope) -> None:
    await service.stop_entitlement(uow, event)


async def on_determination_changed(uow: UnitOfWork, event: DeterminationChanged, envelope: Envelope) -> None:
    await service.change_entitlement(uow, event, envelope.id)


async def on_determination_confirmed(uow: UnitOfWork, event: DeterminationConfirmed, envelope: Envelope) -> None:
    await advances.confirm(uow, event)


async def on_determination_flagged(uow: UnitOfWork, event: DeterminationFlagged, envelope: Envelope) -> None:
    await advances.flag(uow, event)


def build_handlers(_settings: Any) -> dict[str, Handler]:
    return {
        "eligibility.determination.approved": on_determination_approved,
        "eligibility.determination.stopped": on_determination_stopped,
        "eligibility.determination.changed": on_determination_changed,
        "eligibility.determination.confirmed": on_determination_confirmed,
        "eligibility.determination.flagged": on_determination_flagged,
    }
