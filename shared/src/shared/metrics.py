"""Prometheus metrics shared by every service (labelled by service, so several can share one process)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVENTS_CONSUMED = Counter(
    "doudi_events_consumed_total", "Events taken from Kafka, by outcome", ["service", "event_type", "outcome"]
)
EVENTS_DEAD_LETTERED = Counter("doudi_events_dead_lettered_total", "Events sent to a DLQ", ["service", "topic"])
CONSUMER_BATCH_SECONDS = Histogram("doudi_consumer_batch_seconds", "Time to process one getmany batch", ["service"])
CONSUMER_LAST_POLL = Gauge("doudi_consumer_last_poll_timestamp", "Unix time of the last poll", ["service"])
OUTBOX_PUBLISHED = Counter("doudi_outbox_published_total", "Outbox rows published", ["service"])
OUTBOX_PUBLISH_ERRORS = Counter("doudi_outbox_publish_errors_total", "Failed outbox sends", ["service"])
OUTBOX_BACKLOG = Gauge("doudi_outbox_backlog", "Outbox rows not yet published (last batch)", ["service"])
CONSUMER_LAG = Gauge(
    "doudi_consumer_lag",
    "Records behind the partition's high watermark (from the last fetch)",
    ["service", "topic", "partition"],
)
