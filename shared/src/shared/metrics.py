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
OUTBOX_BACKLOG = Gauge("doudi_outbox_backlog", "Outbox rows not yet published", ["service"])
OUTBOX_OLDEST_AGE = Gauge(
    "doudi_outbox_oldest_age_seconds", "Age of the oldest unpublished outbox row (0 when none)", ["service"]
)
CONSUMER_LAG = Gauge(
    "doudi_consumer_lag",
    "Records behind the partition's high watermark (from the last fetch)",
    ["service", "topic", "partition"],
)
DB_STATEMENTS = Counter("doudi_db_statements_total", "SQL statements sent to the database", ["service"])
DB_COMMITS = Counter("doudi_db_commits_total", "Database transactions committed", ["service"])
HTTP_REQUEST_SECONDS = Histogram(
    "doudi_http_request_duration_seconds",
    "HTTP requests by route template and status (the count is the request rate)",
    ["service", "method", "route", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
