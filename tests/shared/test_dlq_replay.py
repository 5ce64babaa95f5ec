"""`doudi dlq replay`: dead letters go back to their topic with their key and original headers, once."""

from __future__ import annotations

import uuid

import pytest

from shared.messaging.dlq import replay
from shared.messaging.embedded_broker import EmbeddedBroker
from tests.kafka_helpers import publish_raw, read_topic

TOPIC = "disbursement.reconciliation"  # no service consumes it: replayed records disturb no other test


async def test_dead_letters_are_replayed_to_their_topic_once_with_their_headers(broker: EmbeddedBroker) -> None:
    bootstrap = broker.bootstrap_servers
    key = str(uuid.uuid4())
    headers = [
        ("ce_id", key.encode()),
        ("ce_type", b"disbursement.reconciliation.flagged"),
        ("x-original-topic", TOPIC.encode()),
        ("x-original-offset", b"41"),
        ("x-consumer", b"intake"),
        ("x-exception-message", b"handler cannot cope"),
        ("x-attempts", b"5"),
    ]
    await publish_raw(bootstrap, TOPIC + ".dlq", key.encode(), b'{"a": 1}', headers)

    listed = await replay(bootstrap, TOPIC, dry_run=True, idle_seconds=1.0)
    assert any(letter.error == "handler cannot cope" and letter.offset == 41 for letter in listed)
    assert await read_topic(bootstrap, TOPIC, keys={key}, expect=1, timeout=1) == []  # a dry run sends nothing

    replayed = await replay(bootstrap, TOPIC, idle_seconds=1.0)
    assert any(letter.consumer == "intake" for letter in replayed)
    (record,) = await read_topic(bootstrap, TOPIC, keys={key}, expect=1)
    assert record.value == b'{"a": 1}'
    assert dict(record.headers) == {"ce_id": key.encode(), "ce_type": b"disbursement.reconciliation.flagged"}

    again = await replay(bootstrap, TOPIC, idle_seconds=1.0)  # the replay's group remembers where it got to
    assert again == []
    assert len(await read_topic(bootstrap, TOPIC, keys={key}, expect=2, timeout=2)) == 1


async def test_an_unknown_topic_is_refused(broker: EmbeddedBroker) -> None:
    with pytest.raises(ValueError, match="unknown topic"):
        await replay(broker.bootstrap_servers, "no.such", idle_seconds=0.1)
