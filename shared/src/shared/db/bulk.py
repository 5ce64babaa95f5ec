"""Bulk inserts for rows written by the thousand in one transaction (a payment run's outbox rows, a bank
batch's ledger postings).

On PostgreSQL the rows go in with COPY (asyncpg's `copy_records_to_table`, binary) on the session's own
connection, inside its transaction: no statement of thousands of parameters to build, send and parse, which
was most of what an INSERT of a thousand rows cost the server and the driver. Elsewhere (SQLite) an
executemany. The columns' own bind processing (money quantized, times in UTC, JSON serialized) applies
either way; columns left out take their defaults.
"""

from __future__ import annotations

from collections.abc import Sequence
from operator import itemgetter
from typing import Any

from sqlalchemy import Table, insert, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession


async def insert_rows(session: AsyncSession, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """Insert `rows` (dicts with the same keys) into `table` in the session's transaction."""
    if not rows:
        return
    connection = await session.connection()
    dialect = connection.dialect
    if dialect.name != "postgresql" or dialect.driver != "asyncpg":
        await session.execute(insert(table), list(rows))
        return
    columns = list(rows[0])
    processors = [table.c[name].type.dialect_impl(dialect).bind_processor(dialect) for name in columns]
    values = itemgetter(*columns) if len(columns) > 1 else lambda row: (row[columns[0]],)

    def record(row: dict[str, Any]) -> tuple[Any, ...]:
        return tuple(v if process is None else process(v) for v, process in zip(values(row), processors, strict=True))

    records = [record(row) for row in rows]
    raw = (await connection.get_raw_connection()).driver_connection
    if not raw.is_in_transaction():
        # SQLAlchemy's asyncpg adapter opens the transaction with its first statement: a COPY sent first, around
        # it, would commit on its own and survive a rollback of the rest.
        await session.execute(text("SELECT 1"))
    try:
        await raw.copy_records_to_table(table.name, columns=columns, records=records, schema_name=table.schema)
    except Exception as exc:  # the driver's own errors, as SQLAlchemy's: the callers' handling of a database
        # that is away (503 in the API, no dead-lettering in the consumer) sees them like any statement's
        invalidated = raw.is_closed()
        if invalidated:
            await connection.invalidate(exc)
        raise DBAPIError(f"COPY {table.name}", None, exc, connection_invalidated=invalidated) from exc
