"""The idempotent consumer: an inbox row per (consumer, event id), inserted in the effects' transaction."""

from __future__ import annotations

from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db.base import utcnow
from shared.db.dialect import insert_for


async def claim(
    session: AsyncSession,
    table: Table,
    *,
    consumer: str,
    event_id: str,
    event_type: str,
    topic: str,
    partition: int,
    offset: int,
) -> bool:
    """True the first time `consumer` sees `event_id`; False for a redelivery, which must have no effect."""
    statement = (
        insert_for(session)(table)
        .values(
            consumer=consumer,
            event_id=event_id,
            event_type=event_type,
            topic=topic,
            partition=partition,
            offset=offset,
            processed_at=utcnow(),
        )
        .on_conflict_do_nothing(index_elements=["consumer", "event_id"])
    )
    result = await session.execute(statement)
    return bool(result.rowcount)
