"""The consumer runner: Kafka → inbox → handler, effects exactly once over at-least-once delivery.

- Records come in batches (`getmany`). The fast path applies a whole batch in one database transaction.
- Each record is claimed in the inbox `(consumer, event_id)` in the same transaction as its effects, so a
  redelivered event has no second effect.
- Offsets are committed manually, and only after the database commit.
- If the batch fails, it is replayed record by record, in partition order: each record retried with backoff,
  and a record that fails every attempt is published to `<topic>.dlq` with its error (and only then is the
  offset committed past it), so one poison message never blocks the partition. A failure of the database or
  broker is not the record's fault: it is never dead-lettered; the consumer restarts from the last committed
  offset after a backoff.
- A record that cannot be read at all (not a CloudEvent, or a payload that fails its contract) goes to the DLQ
  at once: retrying cannot help it.
- A watchdog notices a consumer that has stopped polling and replaces it (aiokafka consumers can wedge after
  broker trouble and are not reusable after `stop()`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError
from pydantic import ValidationError
from sqlalchemy import Table
from sqlalchemy import exc as sa_exc

from shared import audit, tracing
from shared.contracts.base import Event
from shared.contracts.registry import EVENT_TYPES
from shared.db.unavailable import database_unavailable
from shared.db.uow import UnitOfWork
from shared.logging import get_logger
from shared.messaging.context import TraceContext, current_trace
from shared.messaging.envelope import Envelope, MalformedEnvelope
from shared.messaging.inbox import claim
from shared.messaging.topics import DLQ_SUFFIX, topic_for
from shared.metrics import (
    CONSUMER_BATCH_SECONDS,
    CONSUMER_LAG,
    CONSUMER_LAST_POLL,
    EVENTS_CONSUMED,
    EVENTS_DEAD_LETTERED,
)

log = get_logger(__name__)

Handler = Callable[[UnitOfWork, Any, Envelope], Awaitable[None]]


# Failures of the surroundings, not of the message: retrying the same record later will succeed. They are
# never dead-lettered; the runner restarts the consumer from the last committed offset instead.
INFRASTRUCTURE_ERRORS: tuple[type[BaseException], ...] = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.TimeoutError,
    ConnectionError,
    TimeoutError,
    OSError,
    KafkaError,
)


class PoisonMessage(Exception):
    """A record that can never be processed; it goes to the DLQ without retries."""


@dataclass(frozen=True)
class Delivery:
    record: ConsumerRecord[bytes, bytes]
    envelope: Envelope | None
    event: Event | None
    handler: Handler | None
    error: Exception | None  # set when the record cannot be read


class ConsumerRunner:
    def __init__(
        self,
        *,
        service: str,
        bootstrap_servers: str,
        handlers: dict[str, Handler],
        uow_factory: Callable[[], UnitOfWork],
        inbox_table: Table,
        dlq_producer: AIOKafkaProducer,
        batch_size: int = 500,
        max_attempts: int = 5,
        backoff_seconds: float = 0.2,
        stall_seconds: float = 60.0,
        group_id: str | None = None,
        audit_table: Table | None = None,
    ) -> None:
        self.service = service
        self.group_id = group_id or service
        self.topics = sorted({topic_for(event_type) for event_type in handlers})
        self._bootstrap = bootstrap_servers
        self._handlers = handlers
        self._uow_factory = uow_factory
        self._inbox = inbox_table
        # Every change a worker applies goes into the service's audit chain too, like a change made over the API.
        self._audit = audit_table
        self._worker = audit.worker(self.group_id)
        self._dlq = dlq_producer
        self._batch_size = batch_size
        self._max_attempts = max_attempts
        self._backoff = backoff_seconds
        self._stall_seconds = stall_seconds
        self.last_poll = time.monotonic()
        self.restarts = 0
        self.started = False

    @property
    def stalled(self) -> bool:
        return time.monotonic() - self.last_poll > self._stall_seconds

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until `stop` is set, replacing the consumer whenever the watchdog finds it stalled or it fails."""
        failures = 0
        while not stop.is_set():
            self.last_poll = time.monotonic()
            task = asyncio.create_task(self._consume(stop))
            while not task.done():
                await asyncio.wait({task}, timeout=min(5.0, self._stall_seconds / 2))
                if not task.done() and self.stalled:
                    log.error("consumer_stalled", seconds=round(time.monotonic() - self.last_poll, 1))
                    task.cancel()
                    self.restarts += 1
            try:
                task.result()
                failures = 0
            except asyncio.CancelledError:
                if stop.is_set():
                    return
            except Exception as exc:
                # The broker or the database went away mid-batch: nothing was committed past what was applied,
                # so a new consumer resumes from the last committed offset. Back off, then start again.
                failures += 1
                log.error("consumer_failed", error=f"{type(exc).__name__}: {exc}", attempt=failures)
                self.restarts += 1
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), min(30.0, 0.5 * 2**failures))

    async def _consume(self, stop: asyncio.Event) -> None:
        consumer = AIOKafkaConsumer(
            *self.topics,
            bootstrap_servers=self._bootstrap,
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=self._batch_size,
            session_timeout_ms=10_000,
            heartbeat_interval_ms=1_000,
        )
        await consumer.start()
        self.started = True
        try:
            while not stop.is_set():
                batches = await consumer.getmany(timeout_ms=500, max_records=self._batch_size)
                self.last_poll = time.monotonic()
                CONSUMER_LAST_POLL.labels(self.service).set(time.time())
                if batches:
                    with CONSUMER_BATCH_SECONDS.labels(self.service).time():
                        await self.process(consumer, batches)
                await self._record_lag(consumer)
        finally:
            self.started = False
            try:
                await asyncio.wait_for(consumer.stop(), 10)
            except (TimeoutError, KafkaError):
                log.warning("consumer_stop_timed_out")

    async def _record_lag(self, consumer: AIOKafkaConsumer) -> None:
        """Lag per partition: the high watermark the last fetch reported minus our position (both known
        locally once a partition has been fetched, so this asks the broker nothing)."""
        for tp in consumer.assignment():
            highwater = consumer.highwater(tp)
            if highwater is not None:
                position = await consumer.position(tp)
                CONSUMER_LAG.labels(self.service, tp.topic, str(tp.partition)).set(max(0, highwater - position))

    async def process(self, consumer: Any, batches: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]) -> None:
        """Apply one `getmany` result, then commit its offsets."""
        deliveries = {tp: [self._read(record) for record in records] for tp, records in batches.items()}
        try:
            await self._apply_batch([d for ds in deliveries.values() for d in ds if d.error is None])
        except Exception as exc:
            log.warning("batch_failed_replaying_one_by_one", error=f"{type(exc).__name__}: {exc}")
            for tp, items in deliveries.items():
                for delivery in items:
                    await self._apply_one(delivery)
                    await self._commit(consumer, {tp: delivery.record.offset + 1})
            return
        for items in deliveries.values():
            for delivery in items:
                if delivery.error is not None:
                    await self._dead_letter(delivery, delivery.error, attempts=0)
        await self._commit(consumer, {tp: records[-1].offset + 1 for tp, records in batches.items()})

    def _read(self, record: ConsumerRecord[bytes, bytes]) -> Delivery:
        try:
            envelope = Envelope.from_kafka(record.key, record.value, record.headers)
        except MalformedEnvelope as exc:
            return Delivery(record, None, None, None, exc)
        handler = self._handlers.get(envelope.type)
        if handler is None:
            return Delivery(record, envelope, None, None, None)
        try:
            event = EVENT_TYPES[envelope.type].model_validate(envelope.data)
        except ValidationError as exc:
            return Delivery(record, envelope, None, None, PoisonMessage(f"payload breaks its contract: {exc}"))
        return Delivery(record, envelope, event, handler, None)

    async def _apply_batch(self, deliveries: list[Delivery]) -> None:
        async with self._uow_factory() as uow:
            outcomes = [await self._handle(uow, delivery) for delivery in deliveries]
            if self._audit is not None:
                await audit.record_many(
                    uow.session,
                    self._audit,
                    self._worker,
                    [
                        {
                            "action": "apply_event",
                            "resource": delivery.envelope.type,
                            "resource_id": delivery.envelope.subject or "",
                            "purpose": f"event {delivery.envelope.id} from {delivery.envelope.source}",
                        }
                        for delivery, outcome in zip(deliveries, outcomes, strict=True)
                        if outcome == "applied" and delivery.envelope is not None
                    ],
                    client=f"kafka:{self.group_id}",
                )
            await uow.commit()
        for delivery, outcome in zip(deliveries, outcomes, strict=True):
            EVENTS_CONSUMED.labels(self.service, delivery.envelope.type if delivery.envelope else "?", outcome).inc()

    async def _apply_one(self, delivery: Delivery) -> None:
        if delivery.error is not None:
            await self._dead_letter(delivery, delivery.error, attempts=0)
            return
        for attempt in range(1, self._max_attempts + 1):
            try:
                await self._apply_batch([delivery])
                return
            except Exception as exc:
                # Not the event's fault (a broker or database away, "the database system is shutting down"):
                # the runner restarts from the last committed offset instead of dead-lettering it.
                if isinstance(exc, INFRASTRUCTURE_ERRORS) or database_unavailable(exc):
                    raise
                log.warning(
                    "event_failed",
                    event_id=delivery.envelope.id if delivery.envelope else None,
                    attempt=attempt,
                    error=f"{type(exc).__name__}: {exc}",
                )
                if attempt == self._max_attempts:
                    await self._dead_letter(delivery, exc, attempts=attempt)
                    return
                await asyncio.sleep(self._backoff * 2 ** (attempt - 1))

    async def _handle(self, uow: UnitOfWork, delivery: Delivery) -> str:
        envelope, record = delivery.envelope, delivery.record
        if delivery.handler is None or envelope is None:
            return "ignored"
        fresh = await claim(
            uow.session,
            self._inbox,
            consumer=self.group_id,
            event_id=envelope.id,
            event_type=envelope.type,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
        )
        if not fresh:
            return "duplicate"
        attributes = {
            "messaging.system": "kafka",
            "messaging.destination.name": record.topic,
            "messaging.kafka.message.offset": record.offset,
            "messaging.message.id": envelope.id,
            "doudi.case_id": envelope.subject,
        }
        with (
            tracing.span(f"apply {envelope.type}", envelope.traceparent, "consumer", **attributes) as traceparent,
            structlog.contextvars.bound_contextvars(case_id=envelope.subject),
        ):
            token = current_trace.set(TraceContext(traceparent, envelope.correlation_id))
            try:
                await delivery.handler(uow, delivery.event, envelope)
                # Logged inside the event's trace: one case can be followed through every service's log.
                log.info("event_applied", event_type=envelope.type, event_id=envelope.id)
            finally:
                current_trace.reset(token)
        return "applied"

    async def _dead_letter(self, delivery: Delivery, error: BaseException, *, attempts: int) -> None:
        record = delivery.record
        headers = [(k, v) for k, v in (record.headers or ()) if not k.startswith("x-")]
        headers += [
            ("x-original-topic", record.topic.encode()),
            ("x-original-partition", str(record.partition).encode()),
            ("x-original-offset", str(record.offset).encode()),
            ("x-consumer", self.group_id.encode()),
            ("x-exception-class", type(error).__name__.encode()),
            ("x-exception-message", str(error)[:2000].encode()),
            ("x-attempts", str(attempts).encode()),
        ]
        dlq = record.topic + DLQ_SUFFIX
        # Only once the DLQ has acknowledged the record may the offset move past it.
        await self._dlq.send_and_wait(dlq, value=record.value, key=record.key, headers=headers)
        EVENTS_DEAD_LETTERED.labels(self.service, record.topic).inc()
        log.error("event_dead_lettered", topic=record.topic, offset=record.offset, error=str(error)[:500])

    async def _commit(self, consumer: Any, offsets: dict[TopicPartition, int]) -> None:
        try:
            await consumer.commit(offsets)
        except CommitFailedError as exc:
            # The partitions were reassigned while we worked. The new owner re-reads from the last commit and
            # the inbox makes that replay harmless; retrying the commit would be wrong.
            log.warning("offset_commit_failed", error=str(exc))
