"""The outbox, inbox, idempotency, audit and rate-limit tables, added to each service's own metadata.

They are SQLAlchemy Core tables (not ORM classes) because the relay and the consumer runner work on them in
bulk, and because every service declares them identically: `messaging_tables(Base.metadata)`.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import JSON, BigInteger, Column, Float, Index, Integer, MetaData, String, Table, Text, text
from sqlalchemy.dialects.postgresql import JSONB

from shared.db.base import UtcDateTime

Json = JSON().with_variant(JSONB(), "postgresql")
# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL wants BIGINT for a long-lived sequence.
SeqType = BigInteger().with_variant(Integer(), "sqlite")


@dataclass(frozen=True)
class MessagingTables:
    outbox: Table
    inbox: Table
    idempotency: Table
    audit: Table
    rate_limits: Table


def messaging_tables(metadata: MetaData) -> MessagingTables:
    outbox = Table(
        "outbox",
        metadata,
        Column("seq", SeqType, primary_key=True, autoincrement=True),
        Column("event_id", String(36), nullable=False, unique=True),
        Column("topic", String(200), nullable=False),
        Column("kafka_key", String(200), nullable=False),
        Column("event_type", String(200), nullable=False),
        Column("payload", Json, nullable=False),
        Column("traceparent", String(60), nullable=False, server_default=""),
        Column("correlation_id", String(100), nullable=False, server_default=""),
        Column("created_at", UtcDateTime(), nullable=False),
        Column("published_at", UtcDateTime(), nullable=True),
        Column("attempts", Integer, nullable=False, server_default="0"),
        Column("last_error", Text, nullable=True),
        Index(
            "ix_outbox_unpublished",
            "seq",
            postgresql_where=text("published_at IS NULL"),
            sqlite_where=text("published_at IS NULL"),
        ),
    )
    inbox = Table(
        "inbox",
        metadata,
        Column("consumer", String(100), primary_key=True),
        Column("event_id", String(100), primary_key=True),
        Column("event_type", String(200), nullable=False),
        # Diagnostics only: offsets are reused after an embedded-broker restart, so never deduplicate on them.
        Column("topic", String(200), nullable=False),
        Column("partition", Integer, nullable=False),
        Column("offset", BigInteger, nullable=False),
        Column("processed_at", UtcDateTime(), nullable=False),
    )
    idempotency = Table(
        "idempotency_keys",
        metadata,
        Column("key", String(200), primary_key=True),
        Column("operation", String(200), primary_key=True),
        Column("request_hash", String(64), nullable=False),
        Column("status_code", Integer, nullable=False),
        Column("response", Json, nullable=False),
        Column("created_at", UtcDateTime(), nullable=False),
    )
    # Token buckets shared by every API process of the service (DOUDI_RATE_LIMIT_STORE=database): a client's
    # limit holds across replicas. `updated_at` is epoch seconds.
    rate_limits = Table(
        "rate_limits",
        metadata,
        Column("client", String(200), primary_key=True),
        Column("tokens", Float, nullable=False),
        Column("updated_at", Float, nullable=False),
    )
    from shared.audit import audit_table

    return MessagingTables(
        outbox=outbox, inbox=inbox, idempotency=idempotency, audit=audit_table(metadata), rate_limits=rate_limits
    )
