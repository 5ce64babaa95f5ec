"""Replaying a dead-letter topic once its cause is fixed: every record on `<topic>.dlq` goes back to the topic
it came from, with its key (so per-case order holds from here on) and its original headers.

Safe to repeat: the record returns with its event id, and every consumer's inbox drops what it already
applied, so groups that had applied it see a duplicate and nothing more. Progress is kept in the replay's
own consumer group, so an interrupted replay resumes and a finished one does not send a record twice.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition

from shared.messaging.kafka import make_producer
from shared.messaging.topics import DLQ_SUFFIX, TOPICS

REPLAY_GROUP = "doudi-dlq-replay"


@dataclass(frozen=True)
class DeadLetter:
    topic: str
    offset: int
    consumer: str
    error: str
    attempts: str


async def replay(
    bootstrap_servers: str, topic: str, *, dry_run: bool = False, idle_seconds: float = 3.0
) -> list[DeadLetter]:
    """Send every unreplayed record of `topic`'s DLQ back to `topic`; with `dry_run`, only list them.

    Stops once the DLQ has been quiet for `idle_seconds`. Returns what was (or would be) replayed.
    """
    if topic not in {t.name for t in TOPICS}:
        raise ValueError(f"unknown topic {topic!r}; one of {', '.join(t.name for t in TOPICS)}")
    dlq = topic + DLQ_SUFFIX
    consumer = AIOKafkaConsumer(
        dlq,
        bootstrap_servers=bootstrap_servers,
        group_id=None if dry_run else REPLAY_GROUP,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    producer = None if dry_run else make_producer(bootstrap_servers)
    await consumer.start()
    if producer is not None:
        await producer.start()
    seen: list[DeadLetter] = []
    try:
        loop = asyncio.get_running_loop()
        quiet_since = loop.time()
        while loop.time() - quiet_since < idle_seconds:
            batches = await consumer.getmany(timeout_ms=500)
            if not batches:
                continue
            quiet_since = loop.time()
            for partition, records in batches.items():
                for record in records:
                    headers = dict(record.headers or ())
                    seen.append(
                        DeadLetter(
                            topic=headers.get("x-original-topic", topic.encode()).decode(),
                            offset=int(headers.get("x-original-offset", b"-1")),
                            consumer=headers.get("x-consumer", b"").decode(),
                            error=headers.get("x-exception-message", b"").decode(),
                            attempts=headers.get("x-attempts", b"").decode(),
                        )
                    )
                    if producer is not None:
                        original = [(k, v) for k, v in (record.headers or ()) if not k.startswith("x-")]
                        await producer.send_and_wait(topic, value=record.value, key=record.key, headers=original)
                if producer is not None:  # only once the topic has every record back
                    await consumer.commit({TopicPartition(dlq, partition.partition): records[-1].offset + 1})
    finally:
        await consumer.stop()
        if producer is not None:
            await producer.stop()
    return seen
