"""Writing events: an outbox row in the same transaction as the state change. A request never talks to Kafka."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncSession

from shared.contracts.base import Event
from shared.db.base import utcnow
from shared.db.bulk import insert_rows
from shared.ids import new_id
from shared.messaging.context import trace
from shared.messaging.topics import topic_for


class Outbox:
    def __init__(self, session: AsyncSession, table: Table) -> None:
        self._session = session
        self._table = table
        self.pending = 0

    async def add(self, event: Event, *, key: str) -> str:
        """Queue `event` for publication with Kafka key `key` (the case id); returns the event id."""
        (event_id,) = await self.add_many([(event, key)])
        return event_id

    async def add_many(self, events: Sequence[tuple[Event, str]]) -> list[str]:
        """Queue many events (each with its key) in one executemany: a payment run's chunk, not one INSERT
        per payment. Order is kept (the relay sends by sequence)."""
        if not events:
            return []
        context, now = trace(), utcnow()
        rows = [
            {
                "event_id": new_id(),
                "topic": topic_for(event.event_type),
                "kafka_key": key,
                "event_type": event.event_type,
                "payload": event.model_dump(mode="json"),
                "traceparent": context.traceparent,
                "correlation_id": context.correlation_id,
                "created_at": now,
                "attempts": 0,
            }
            for event, key in events
        ]
        await insert_rows(self._session, self._table, rows)
        self.pending += len(rows)
        return [row["event_id"] for row in rows]
