"""Kafka clients configured the way this project needs them, and topic provisioning."""

from __future__ import annotations

import asyncio
import contextlib

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from shared.messaging.topics import all_topics


def make_producer(bootstrap_servers: str) -> AIOKafkaProducer:
    # No enable_idempotence / transactional_id: the embedded broker rejects aiokafka's InitProducerId v0,
    # and the outbox + inbox make duplicates harmless anyway. acks="all" matters on Apache Kafka.
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap_servers,
        acks="all",
        linger_ms=5,
        max_batch_size=256 * 1024,
        request_timeout_ms=15_000,
    )


async def create_topics(bootstrap_servers: str, replication_factor: int = 1) -> list[str]:
    """Create every registered topic (and its DLQ) with its partition count; existing ones are left alone.

    Returns the names created. Run before any producer or consumer connects: the embedded broker would
    otherwise auto-create topics with 4 partitions on first metadata request.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=15_000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [(name, parts) for name, parts in all_topics() if name not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics([NewTopic(name, parts, replication_factor) for name, parts in missing])
        return [name for name, _ in missing]
    finally:
        await admin.close()


async def broker_reachable(bootstrap_servers: str, timeout: float = 1.0) -> bool:
    host, _, port = bootstrap_servers.split(",")[0].strip().rpartition(":")
    try:
        _reader, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), timeout)
    except (OSError, TimeoutError):
        return False
    writer.close()
    return True
