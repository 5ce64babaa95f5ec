"""Talking to the test broker directly: publish an envelope, read what a topic holds for some keys."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from shared.contracts.base import Event
from shared.messaging.envelope import Envelope, new_traceparent
from shared.messaging.topics import topic_for


def envelope_for(event: Event, *, key: str, event_id: str | None = None) -> Envelope:
    return Envelope(
        id=event_id or str(uuid.uuid4()),
        type=event.event_type,
        source="/tests",
        subject=key,
        time=datetime.now(UTC),
        data=event.model_dump(mode="json"),
        traceparent=new_traceparent(),
        correlation_id=str(uuid.uuid4()),
    )


async def publish(bootstrap: str, *envelopes: Envelope, topic: str | None = None) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for envelope in envelopes:
            key, value, headers = envelope.to_kafka()
            await producer.send_and_wait(topic or topic_for(envelope.type), value=value, key=key, headers=headers)
    finally:
        await producer.stop()


async def publish_raw(bootstrap: str, topic: str, key: bytes, value: bytes, headers: list[tuple[str, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic, value=value, key=key, headers=headers)
    finally:
        await producer.stop()


async def read_topic(
    bootstrap: str, topic: str, *, keys: set[str], expect: int, timeout: float = 15.0
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record on `topic` whose key is in `keys`, once `expect` of them have arrived (or on timeout)."""
    # No consumer group: assigning the partitions directly skips the group join and its rebalance delay.
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    partitions = consumer.partitions_for_topic(topic) or set()
    if not partitions:
        await consumer._client.force_metadata_update()
        partitions = consumer.partitions_for_topic(topic) or set()
    consumer.assign([TopicPartition(topic, p) for p in partitions])
    await consumer.seek_to_beginning()
    found: list[ConsumerRecord[bytes, bytes]] = []
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while len(found) < expect and asyncio.get_running_loop().time() < deadline:
            batches = await consumer.getmany(timeout_ms=200)
            for records in batches.values():
                found += [r for r in records if r.key is not None and r.key.decode() in keys]
    finally:
        await consumer.stop()
    return found


async def fetch_records(
    bootstrap: str, topic: str, *, keys: set[str], expect: int
) -> dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]:
    """The records for `keys`, grouped as `getmany` groups them, for driving `ConsumerRunner.process`."""
    grouped: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]] = {}
    for record in await read_topic(bootstrap, topic, keys=keys, expect=expect):
        grouped.setdefault(TopicPartition(record.topic, record.partition), []).append(record)
    return grouped


class NoCommitConsumer:
    """Stands in for the consumer when a test replays records: it records commits instead of making them,
    which is exactly a crash between the database commit and the offset commit."""

    def __init__(self) -> None:
        self.commits: list[dict[TopicPartition, int]] = []

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.commits.append(dict(offsets))


def headers_of(record: ConsumerRecord[bytes, bytes]) -> dict[str, Any]:
    return {k: v.decode() for k, v in record.headers}
