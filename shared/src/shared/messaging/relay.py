"""The outbox relay: publishes committed outbox rows to Kafka in batches, in `seq` order, at least once.

One relay is active per service (on PostgreSQL a session advisory lock elects it, so an accidental second
replica waits instead of reordering a case's events). A crash after sending and before marking re-publishes
the batch; consumers drop the duplicates through their inbox. A row is never dropped: a failed send stays
unpublished, its attempts and last error recorded, and is retried with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import zlib
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaProducer
from sqlalchemy import Table, delete, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shared.db.base import utcnow
from shared.logging import get_logger
from shared.messaging.envelope import Envelope
from shared.metrics import OUTBOX_BACKLOG, OUTBOX_OLDEST_AGE, OUTBOX_PUBLISH_ERRORS, OUTBOX_PUBLISHED

log = get_logger(__name__)
MAX_BACKOFF_SECONDS = 30.0
PRUNE_EVERY_SECONDS = 3600.0
LEADERSHIP_CHECK_SECONDS = 5.0


class OutboxRelay:
    def __init__(
        self,
        *,
        engine: AsyncEngine,
        table: Table,
        producer: AIOKafkaProducer,
        service: str,
        source: str,
        batch_size: int = 500,
        idle_seconds: float = 0.5,
        prune_after_days: int = 7,
    ) -> None:
        self._engine = engine
        self._table = table
        self._producer = producer
        self._service = service
        self._source = source
        self._batch_size = batch_size
        self._idle_seconds = idle_seconds
        self._prune_after = timedelta(days=prune_after_days)
        self._wake = asyncio.Event()
        self.last_error: str | None = None

    def wake(self) -> None:
        """Called after a commit that wrote events, so they go out now rather than at the next poll."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Publish until `stop`. Leadership (PostgreSQL's advisory lock) is taken again whenever it is lost: a
        database that restarts ends the session that held the lock, and a database that is away when the relay
        starts must not end the relay."""
        attempts = 0
        while not stop.is_set():
            try:
                async with self._leadership(stop) as leadership:
                    if not leadership.leading:
                        return
                    attempts = 0
                    await self._lead(stop, leadership)
            except Exception as exc:  # the database went away under the lock, or was away when we asked
                attempts += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.error("relay_leadership_lost", error=self.last_error, attempt=attempts)
                await _sleep_or_stop(stop, min(MAX_BACKOFF_SECONDS, 0.5 * 2**attempts))

    async def _lead(self, stop: asyncio.Event, leadership: _Leadership) -> None:
        failures = 0
        last_prune = 0.0
        loop = asyncio.get_running_loop()
        last_check = loop.time()
        while not stop.is_set():
            self._wake.clear()
            if loop.time() - last_check > LEADERSHIP_CHECK_SECONDS:
                # A database restart ends the session that held the lock while the pool's other connections
                # come back: publishing would go on without the lock, beside a relay that took it meanwhile.
                last_check = loop.time()
                if not await leadership.alive():
                    raise LeadershipLost("the session holding the relay's lock is gone")
            try:
                sent, full = await self.publish_batch()
                failures = 0 if sent >= 0 else failures + 1
                if sent >= 0:
                    self.last_error = None  # the database and the broker answer: ready again
            except Exception as exc:  # the database may be briefly unreachable: keep going
                failures += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.error("relay_batch_failed", error=self.last_error)
                full = False
                if not await leadership.alive():
                    raise LeadershipLost("the connection holding the relay's lock is gone") from exc
            if failures:
                await _sleep_or_stop(stop, min(MAX_BACKOFF_SECONDS, 0.1 * 2**failures))
                continue
            if loop.time() - last_prune > PRUNE_EVERY_SECONDS:
                await self.prune()
                last_prune = loop.time()
            if not full:
                await _wait_any(stop, self._wake, self._idle_seconds)

    async def publish_batch(self) -> tuple[int, bool]:
        """Publish up to one batch. Returns (rows published or -1 on a send failure, whether the batch was full)."""
        t = self._table
        async with self._engine.connect() as conn:
            await conn.execution_options(read_only=True)  # marking them published is its own transaction
            rows = (
                await conn.execute(
                    select(t).where(t.c.published_at.is_(None)).order_by(t.c.seq).limit(self._batch_size)
                )
            ).all()
        if not rows:
            OUTBOX_BACKLOG.labels(self._service).set(0)
            OUTBOX_OLDEST_AGE.labels(self._service).set(0)
            return 0, False
        # The oldest unpublished row's age: how far behind publishing is, whatever the batch size.
        OUTBOX_OLDEST_AGE.labels(self._service).set(max(0.0, (utcnow() - rows[0].created_at).total_seconds()))
        futures = []
        for row in rows:
            key, value, headers = Envelope(
                id=row.event_id,
                type=row.event_type,
                source=self._source,
                subject=row.kafka_key,
                time=row.created_at,
                data=row.payload,
                traceparent=row.traceparent,
                correlation_id=row.correlation_id,
            ).to_kafka()
            futures.append(await self._producer.send(row.topic, value=value, key=key, headers=headers))
        results = await asyncio.gather(*futures, return_exceptions=True)
        sent = [row.seq for row, r in zip(rows, results, strict=True) if not isinstance(r, BaseException)]
        failed = [(row.seq, r) for row, r in zip(rows, results, strict=True) if isinstance(r, BaseException)]
        now = utcnow()
        async with self._engine.begin() as conn:
            if sent:
                await conn.execute(update(t).where(t.c.seq.in_(sent)).values(published_at=now))
            for seq, error in failed:
                await conn.execute(
                    update(t)
                    .where(t.c.seq == seq)
                    .values(attempts=t.c.attempts + 1, last_error=f"{type(error).__name__}: {error}"[:2000])
                )
        OUTBOX_PUBLISHED.labels(self._service).inc(len(sent))
        if failed:
            OUTBOX_PUBLISH_ERRORS.labels(self._service).inc(len(failed))
            self.last_error = str(failed[0][1])
            log.error("relay_send_failed", failed=len(failed), error=self.last_error)
            return -1, False
        self.last_error = None
        full = len(rows) == self._batch_size
        backlog = 0
        if full:  # more is waiting: count it (an index-only count over the unpublished rows)
            async with self._engine.connect() as conn:
                await conn.execution_options(read_only=True)
                backlog = (
                    await conn.execute(select(func.count()).select_from(t).where(t.c.published_at.is_(None)))
                ).scalar_one()
        OUTBOX_BACKLOG.labels(self._service).set(backlog)
        return len(sent), full

    async def backlog(self) -> int:
        t = self._table
        async with self._engine.connect() as conn:
            await conn.execution_options(read_only=True)
            return int((await conn.execute(select(func.count()).where(t.c.published_at.is_(None)))).scalar_one())

    async def prune(self) -> None:
        t = self._table
        cutoff = utcnow() - self._prune_after
        async with self._engine.begin() as conn:
            await conn.execute(delete(t).where(t.c.published_at.is_not(None), t.c.published_at < cutoff))

    def _leadership(self, stop: asyncio.Event) -> Any:
        return _Leadership(self._engine, self._service, stop)


class _Leadership:
    """On PostgreSQL, hold a session advisory lock for as long as this relay runs; elsewhere, always lead."""

    def __init__(self, engine: AsyncEngine, service: str, stop: asyncio.Event) -> None:
        self._engine = engine
        self._key = zlib.crc32(f"doudi-relay-{service}".encode())
        self._stop = stop
        self._conn: AsyncConnection | None = None
        self._leading = False

    @property
    def leading(self) -> bool:
        return self._leading

    async def __aenter__(self) -> _Leadership:
        self._leading = False
        if self._engine.dialect.name != "postgresql":
            self._leading = True
            return self
        while not self._stop.is_set():
            conn = await self._engine.connect()
            try:
                got = (await conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": self._key})).scalar_one()
            except BaseException:
                await _close_quietly(conn)
                raise
            if got:
                await conn.commit()
                self._conn = conn
                self._leading = True
                return self
            await conn.close()
            log.info("relay_standby", reason="another relay holds the lock")
            await _sleep_or_stop(self._stop, 5.0)
        return self

    async def alive(self) -> bool:
        """Is the session holding the lock still there? (Always, where there is no lock.)"""
        if self._conn is None:
            return True
        try:
            await self._conn.execute(text("SELECT 1"))
            await self._conn.commit()
        except Exception:
            return False
        return True

    async def __aexit__(self, *exc: object) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            with contextlib.suppress(Exception):  # a dead session released its lock with it
                await conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self._key})
            await _close_quietly(conn)


class LeadershipLost(RuntimeError):
    pass


async def _close_quietly(conn: AsyncConnection) -> None:
    with contextlib.suppress(Exception):
        await conn.close()


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def _wait_any(stop: asyncio.Event, wake: asyncio.Event, seconds: float) -> None:
    waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wake.wait())]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


async def republish_since(engine: AsyncEngine, table: Table, since: datetime) -> int:
    """Mark every outbox row published at or after `since` as unpublished again, so the relay sends it once
    more, in its original order and with its original event id (consumers' inboxes drop what they already
    applied). This re-drives every case after the broker lost what it held (the embedded broker keeps its
    log in memory; a Kafka cluster restored from an old state): choose `since` before the loss, less the
    longest consumer lag. Rows older than the relay's pruning age are gone and cannot be re-sent."""
    t = table
    async with engine.begin() as conn:
        result = await conn.execute(
            update(t).where(t.c.published_at.is_not(None), t.c.published_at >= since).values(published_at=None)
        )
    return int(result.rowcount or 0)


async def republish_keys(engine: AsyncEngine, table: Table, keys: Sequence[str], chunk: int = 1_000) -> int:
    """Mark every published outbox row of the given Kafka keys (case ids) unpublished again, so the relay sends
    each case's events once more, in order and with their ids: a stuck case is re-driven without touching any
    other. Returns how many rows will be sent again."""
    t = table
    marked = 0
    async with engine.begin() as conn:
        for start in range(0, len(keys), chunk):
            result = await conn.execute(
                update(t)
                .where(t.c.kafka_key.in_(list(keys[start : start + chunk])), t.c.published_at.is_not(None))
                .values(published_at=None)
            )
            marked += int(result.rowcount or 0)
    return marked
