"""Payments by status on /metrics, counted from the database (the truth), not from events seen."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from prometheus_client import Gauge
from sqlalchemy import func, select

from disbursement.domain import TRANSITIONS
from disbursement.models import Payment
from disbursement.settings import DisbursementSettings
from shared import periodic
from shared.logging import get_logger

if TYPE_CHECKING:
    from shared.service import Runtime

log = get_logger(__name__)
PAYMENTS = Gauge("doudi_payments", "Payment instructions by status", ["status"])
STATUSES = tuple(TRANSITIONS)


async def count_payments(runtime: Runtime, stop: asyncio.Event) -> None:
    """Worker loop: refresh the payments-by-status gauge every `metrics_every_seconds`."""
    settings = runtime.settings
    assert isinstance(settings, DisbursementSettings)

    async def step() -> None:  # if the database is away for a moment, the gauge keeps its last value
        async with runtime.sessionmaker() as session:
            counts = dict((await session.execute(select(Payment.status, func.count()).group_by(Payment.status))).all())
        for status in {*STATUSES, *counts}:
            PAYMENTS.labels(status).set(counts.get(status, 0))

    await periodic.every(settings.metrics_every_seconds, step, stop, name="payment_count")
