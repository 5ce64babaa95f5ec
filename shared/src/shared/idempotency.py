"""`Idempotency-Key` for writes from machine clients: the same key and body return the original response; the
same key with a different body is a 409. The key is stored in the same transaction as the write."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import Table, insert, select
from sqlalchemy.exc import IntegrityError

from shared.db.base import utcnow
from shared.db.uow import UnitOfWork
from shared.errors import Conflict

MAX_KEY_LENGTH = 200


class IdempotencyKeyReused(Conflict):
    title = "Idempotency-Key reused"


def request_hash(body: Any) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


async def run_once(
    uow_factory: Callable[[], UnitOfWork],
    table: Table,
    *,
    key: str | None,
    operation: str,
    body: Any,
    action: Callable[[UnitOfWork], Awaitable[tuple[int, dict[str, Any]]]],
) -> tuple[int, dict[str, Any], bool]:
    """Run `action` in its own transaction, once per key. Returns (status, response, replayed).

    Two concurrent requests with one key race to insert the key row; the loser's transaction rolls back
    whole (nothing half-written) and it answers with the winner's stored response.
    """
    digest = request_hash(body)
    for attempt in (1, 2):
        async with uow_factory() as uow:
            if key is not None:
                row = (
                    await uow.session.execute(
                        select(table.c.request_hash, table.c.status_code, table.c.response).where(
                            table.c.key == key, table.c.operation == operation
                        )
                    )
                ).first()
                if row is not None:
                    if row.request_hash != digest:
                        raise IdempotencyKeyReused(
                            "This Idempotency-Key was already used with a different request body.",
                            idempotency_key=key,
                        )
                    return row.status_code, row.response, True
            status, response = await action(uow)
            try:
                if key is not None:
                    await uow.session.execute(
                        insert(table).values(
                            key=key,
                            operation=operation,
                            request_hash=digest,
                            status_code=status,
                            response=response,
                            created_at=utcnow(),
                        )
                    )
                await uow.commit()
            except IntegrityError:
                if key is None or attempt == 2:
                    raise
                continue
            return status, response, False
    raise AssertionError("unreachable")
