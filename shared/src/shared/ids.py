"""Identifiers for rows written by the million (payments, ledger transactions, outbox events).

UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, then random bits. Unique without coordination like a
UUIDv4, but ordered by time, so a PostgreSQL B-tree takes each new key at its right edge instead of a random
page of a large index (fewer pages dirtied and written per insert), and made by `uuid-utils` in a tenth of
the time `str(uuid.uuid4())` takes (no system call per id). Never derived from anything that repeats: an id
is not an idempotency key (those are derived from what they guard, as the bank's batch key is).
"""

from __future__ import annotations

from uuid_utils import uuid7


def new_id() -> str:
    """A new time-ordered UUID, as the 36-character string the tables hold."""
    return str(uuid7())
