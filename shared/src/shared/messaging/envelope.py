"""The CloudEvents 1.0 envelope in Kafka binary mode (`ce_*` headers, JSON value), plus `traceparent`.

Built with the CloudEvents SDK's Kafka binding; the Kafka key is the case (or household) id so one case's
events stay in order on one partition.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cloudevents.core.bindings import kafka
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

SPECVERSION = "1.0"
TRACEPARENT = "traceparent"
_FORMAT = JSONFormat()


class MalformedEnvelope(ValueError):
    """A record that is not a CloudEvent we can read; it goes straight to the dead-letter topic."""


def new_traceparent() -> str:
    return f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"


@dataclass(frozen=True)
class Envelope:
    id: str
    type: str
    source: str
    subject: str
    time: datetime
    data: dict[str, Any]
    traceparent: str = ""
    correlation_id: str = ""
    extensions: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return self.subject

    def to_kafka(self) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
        """(key, value, headers) ready for `producer.send`."""
        attributes: dict[str, Any] = {
            "id": self.id,
            "type": self.type,
            "source": self.source,
            "subject": self.subject,
            "time": self.time,
            "specversion": SPECVERSION,
            "datacontenttype": "application/json",
            **self.extensions,
        }
        if self.correlation_id:
            attributes["correlationid"] = self.correlation_id
        message = kafka.to_binary(
            CloudEvent(attributes=attributes, data=self.data), _FORMAT, key_mapper=lambda _e: self.subject
        )
        headers = list(message.headers.items())
        if self.traceparent:
            headers.append((TRACEPARENT, self.traceparent.encode()))
        return self.subject.encode(), message.value, headers

    @classmethod
    def from_kafka(cls, key: bytes | None, value: bytes | None, headers: Any) -> Envelope:
        header_map = dict(headers or ())
        try:
            event = kafka.from_binary(kafka.KafkaMessage(headers=header_map, key=key, value=value or b""), _FORMAT)
            attributes = event.get_attributes()
            data = event.get_data()
        except Exception as exc:
            raise MalformedEnvelope(f"not a binary-mode CloudEvent: {exc}") from exc
        if isinstance(data, bytes | str):
            try:
                data = json.loads(data)
            except ValueError as exc:
                raise MalformedEnvelope(f"event data is not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise MalformedEnvelope("event data must be a JSON object")
        if not attributes.get("subject"):
            raise MalformedEnvelope("event has no subject (the case id)")
        known = {
            "id",
            "type",
            "source",
            "subject",
            "time",
            "specversion",
            "datacontenttype",
            "correlationid",
            "partitionkey",
        }
        traceparent = header_map.get(TRACEPARENT, b"")
        return cls(
            id=str(attributes["id"]),
            type=str(attributes["type"]),
            source=str(attributes["source"]),
            subject=str(attributes["subject"]),
            time=attributes["time"],
            data=data,
            traceparent=traceparent.decode() if isinstance(traceparent, bytes) else str(traceparent),
            correlation_id=str(attributes.get("correlationid", "")),
            extensions={k: v for k, v in attributes.items() if k not in known},
        )
