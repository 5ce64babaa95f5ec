"""The AsyncAPI 3.0 document of every topic and event, generated from the topic registry, the event contracts
and each service's handlers. `doudi asyncapi --output docs/asyncapi.json` writes it; a test regenerates it and
compares, so the committed document cannot drift from the code."""

from __future__ import annotations

import importlib
from typing import Any

from shared.contracts.registry import EVENT_TYPES
from shared.messaging.topics import DLQ_PARTITIONS, TOPICS, topic_for

SERVICES = ("intake", "eligibility", "disbursement", "referral")


def _consumers() -> dict[str, list[str]]:
    """event type → the services whose workers handle it."""
    found: dict[str, list[str]] = {}
    for name in SERVICES:
        spec = importlib.import_module(f"{name}.spec").SPEC
        settings = spec.settings_cls(env="test")
        for event_type in spec.handlers(settings):
            found.setdefault(event_type, []).append(name)
    return found


def _message_id(event_type: str) -> str:
    return event_type.replace(".", "_")


def build() -> dict[str, Any]:
    consumers = _consumers()
    channels: dict[str, Any] = {}
    for topic in TOPICS:
        types = sorted(t for t in EVENT_TYPES if topic_for(t) == topic.name)
        channels[topic.name] = {
            "address": topic.name,
            "description": topic.description,
            "messages": {_message_id(t): {"$ref": f"#/components/messages/{_message_id(t)}"} for t in types},
            "bindings": {"kafka": {"topic": topic.name, "partitions": topic.partitions, "bindingVersion": "0.5.0"}},
        }
        channels[topic.dlq] = {
            "address": topic.dlq,
            "description": f"dead letters of {topic.name}: the original record with x-original-topic, "
            "x-original-partition, x-original-offset, x-consumer, x-exception-class, x-exception-message and "
            "x-attempts headers",
            "bindings": {"kafka": {"topic": topic.dlq, "partitions": DLQ_PARTITIONS, "bindingVersion": "0.5.0"}},
        }
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for event_type, model in sorted(EVENT_TYPES.items()):
        message_id = _message_id(event_type)
        producer = event_type.split(".")[0]
        topic = topic_for(event_type)
        messages[message_id] = {
            "name": event_type,
            "title": model.__name__,
            "summary": (model.__doc__ or "").strip().split("\n")[0] or event_type,
            "contentType": "application/json",
            "headers": {"$ref": "#/components/schemas/CloudEventHeaders"},
            "payload": model.model_json_schema(mode="serialization", ref_template="#/components/schemas/{model}"),
            "bindings": {"kafka": {"key": {"type": "string", "description": "the case id"}, "bindingVersion": "0.5.0"}},
        }
        ref = {"$ref": f"#/channels/{topic}/messages/{message_id}"}
        operations[f"{producer}_sends_{message_id}"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{topic}"},
            "messages": [ref],
            "summary": f"{producer} publishes {event_type} (through its outbox)",
        }
        for consumer in consumers.get(event_type, []):
            operations[f"{consumer}_receives_{message_id}"] = {
                "action": "receive",
                "channel": {"$ref": f"#/channels/{topic}"},
                "messages": [ref],
                "summary": f"{consumer} consumes {event_type} (inbox: at most one effect)",
            }
    headers = {
        "type": "object",
        "required": ["ce_id", "ce_type", "ce_source", "ce_subject", "ce_time", "ce_specversion"],
        "properties": {
            name: {"type": "string"}
            for name in (
                "ce_id",
                "ce_type",
                "ce_source",
                "ce_subject",
                "ce_time",
                "ce_specversion",
                "ce_correlationid",
                "content-type",
                "traceparent",
            )
        },
    }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "doudi events",
            "version": "1.0.0",
            "description": "Every event doudi's services exchange. CloudEvents 1.0 in Kafka binary mode; the "
            "Kafka key is the case id; payloads change only additively (a breaking change is a new type).",
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": {"CloudEventHeaders": headers}},
    }
