"""The audit log: append-only and hash-chained, one per service, in the same transaction as what it records.

Every row carries the hash of the one before it, so changing, removing or reordering any row breaks the chain
from there on; `doudi audit verify` walks it and names the first broken link. Records who (subject, role,
region), what (action, resource), when, from where (client address), why (purpose) and the outcome.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Column, Integer, MetaData, String, Table, insert, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from shared.auth import Principal
from shared.db.base import UtcDateTime, utcnow

GENESIS = "0" * 64


def worker(service: str) -> Principal:
    """Who a worker's own changes (events applied, notices closed, tasks escalated) are recorded as."""
    return Principal(subject=f"{service}-worker", role="worker", region="000000")


def audit_table(metadata: MetaData) -> Table:
    return Table(
        "audit_log",
        metadata,
        Column("seq", Integer, primary_key=True, autoincrement=False),
        Column("at", UtcDateTime(), nullable=False),
        Column("subject", String(200), nullable=False),
        Column("role", String(30), nullable=False),
        Column("region", String(12), nullable=False),
        Column("action", String(60), nullable=False),
        Column("resource", String(60), nullable=False),
        Column("resource_id", String(100), nullable=False),
        Column("outcome", String(30), nullable=False),
        Column("client", String(100), nullable=False),
        Column("purpose", String(200), nullable=False),
        Column("prev_hash", String(64), nullable=False),
        Column("hash", String(64), nullable=False),
    )


def _digest(prev_hash: str, row: dict[str, Any]) -> str:
    fields = {
        k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in row.items() if k not in ("hash", "prev_hash")
    }
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256((prev_hash + canonical).encode()).hexdigest()


async def record(
    session: AsyncSession,
    table: Table,
    principal: Principal,
    *,
    action: str,
    resource: str,
    resource_id: str,
    outcome: str = "ok",
    client: str = "",
    purpose: str = "",
) -> None:
    """Append one entry in the caller's transaction. Appends are serialised (an advisory lock on PostgreSQL;
    SQLite has one writer), so two transactions can never chain onto the same predecessor."""
    await record_many(
        session,
        table,
        principal,
        [{"action": action, "resource": resource, "resource_id": resource_id, "outcome": outcome, "purpose": purpose}],
        client=client,
    )


async def record_many(
    session: AsyncSession, table: Table, principal: Principal, entries: list[dict[str, str]], client: str = ""
) -> None:
    """Append several entries by one principal (each with action, resource, resource_id, outcome, purpose)
    under one lock and one read of the chain's tip: a consumer's batch of events costs one round of it."""
    if not entries:
        return
    if session.bind is not None and session.bind.dialect.name == "postgresql":
        await session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": zlib.crc32(b"doudi-audit")})
    last = (await session.execute(select(table.c.seq, table.c.hash).order_by(table.c.seq.desc()).limit(1))).first()
    seq, prev = (last.seq + 1, last.hash) if last else (1, GENESIS)
    now = utcnow()
    rows = []
    for entry in entries:
        row: dict[str, Any] = {
            "seq": seq,
            "at": now,
            "subject": principal.subject,
            "role": principal.role,
            "region": principal.region,
            "action": entry["action"],
            "resource": entry["resource"],
            "resource_id": entry["resource_id"][:100],
            "outcome": entry.get("outcome", "ok"),
            "client": client[:100],
            "purpose": entry.get("purpose", "")[:200],
        }
        digest = _digest(prev, row)
        rows.append({**row, "prev_hash": prev, "hash": digest})
        seq, prev = seq + 1, digest
    await session.execute(insert(table), rows)


@dataclass(frozen=True)
class Verdict:
    entries: int
    broken_at: int | None
    reason: str = ""

    @property
    def intact(self) -> bool:
        return self.broken_at is None


async def verify(conn: AsyncConnection, table: Table, batch: int = 10_000) -> Verdict:
    """Walk the chain in order; the first row whose link or hash does not hold is the broken one."""
    prev, expected_seq, count, after = GENESIS, 1, 0, 0
    while True:
        rows = (
            (await conn.execute(select(table).where(table.c.seq > after).order_by(table.c.seq).limit(batch)))
            .mappings()
            .all()
        )
        if not rows:
            return Verdict(count, None)
        for row in rows:
            data = dict(row)
            if data["seq"] != expected_seq:
                return Verdict(count, expected_seq, f"entry {expected_seq} is missing")
            if data["prev_hash"] != prev:
                return Verdict(count, data["seq"], "it does not point at the entry before it")
            if _digest(prev, data) != data["hash"]:
                return Verdict(count, data["seq"], "its content does not match its hash")
            prev, expected_seq, count, after = data["hash"], expected_seq + 1, count + 1, data["seq"]
