"""Abuse limits: request body size and a request rate per client, answered as problem+json (413, 429).

The rate limit is a token bucket per client (the token's subject, else the peer address). Its buckets live in
the process (`ProcessBuckets`: one process, as `make up` runs) or in the service's database
(`DatabaseBuckets`, `DOUDI_RATE_LIMIT_STORE=database`: every API replica takes from the same bucket, so the
limit holds across a cluster).
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

PROBLEM = b"application/problem+json"


async def _problem(send: Send, status: int, title: str, detail: str, headers: list[tuple[bytes, bytes]] = ()) -> None:
    body = json.dumps({"type": "about:blank", "title": title, "status": status, "detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", PROBLEM), (b"content-length", str(len(body)).encode()), *headers],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BodySizeLimit:
    """Refuse a body over `max_bytes` with 413, whether it announces its length or streams it. A streamed
    body is read (up to the limit, no further) before the app sees it, then replayed."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = f"The body may be at most {self.max_bytes} bytes."
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                if value.isdigit() and int(value) > self.max_bytes:
                    await _problem(send, 413, "Content too large", refusal)
                    return
                await self.app(scope, receive, send)  # the server holds it to its announced length
                return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                await _problem(send, 413, "Content too large", refusal)
                return
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class ProcessBuckets:
    """Buckets held in this process, least recently used dropped beyond `max_clients`."""

    def __init__(self, per_minute: int, burst: int, max_clients: int = 100_000) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self.max_clients = max_clients
        self.buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    async def take(self, key: str) -> float | None:
        """Take a token for `key`: None when granted, else the seconds until one is there."""
        now = time.monotonic()
        tokens, last = self.buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        granted = tokens >= 1
        self.buckets[key] = (tokens - 1 if granted else tokens, now)
        if len(self.buckets) > self.max_clients:
            self.buckets.popitem(last=False)
        return None if granted else (1 - tokens) / self.rate


class DatabaseBuckets:
    """Buckets in a table of the service's database, one row per client, read and written under a row lock in
    a short transaction of their own: every API process of the service shares them. If the database cannot be
    reached the request is let through (it will meet the same database and answer 503 itself)."""

    def __init__(self, engine: Callable[[], Any], table: Any, per_minute: int, burst: int) -> None:
        self.engine = engine  # the runtime's engine, once the application has started
        self.table = table
        self.rate = per_minute / 60.0
        self.burst = float(burst)

    async def take(self, key: str) -> float | None:
        from sqlalchemy import select
        from sqlalchemy.exc import SQLAlchemyError

        from shared.db.dialect import insert_for

        t = self.table
        now = time.time()
        try:
            async with self.engine().begin() as conn:
                row = (
                    await conn.execute(select(t.c.tokens, t.c.updated_at).where(t.c.client == key).with_for_update())
                ).first()
                tokens = (
                    self.burst
                    if row is None
                    else min(self.burst, row.tokens + max(0.0, now - row.updated_at) * self.rate)
                )
                granted = tokens >= 1
                left = tokens - 1 if granted else tokens
                await conn.execute(
                    insert_for(conn)(t)
                    .values(client=key, tokens=left, updated_at=now)
                    .on_conflict_do_update(index_elements=[t.c.client], set_={"tokens": left, "updated_at": now})
                )
        except (SQLAlchemyError, OSError):
            return None
        return None if granted else (1 - tokens) / self.rate


class RateLimit:
    """A token bucket per client: `per_minute` requests a minute, bursts up to `burst`; the buckets are held
    by `store` (a ProcessBuckets unless told otherwise)."""

    def __init__(
        self, app: ASGIApp, per_minute: int, burst: int, exempt: frozenset[str], store: Any | None = None
    ) -> None:
        self.app = app
        self.exempt = exempt
        self.store = store if store is not None else ProcessBuckets(per_minute, burst)

    def _client(self, scope: Scope) -> str:
        state: Any = scope.get("state") or {}
        principal = state.get("principal") if isinstance(state, dict) else None
        if principal is not None:
            return f"sub:{principal.subject}"
        client = scope.get("client")
        return f"addr:{client[0]}" if client else "addr:?"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.exempt or scope["path"].startswith("/metrics"):
            await self.app(scope, receive, send)
            return
        wait = await self.store.take(self._client(scope))
        if wait is not None:
            retry = max(1, int(wait) + 1)
            await _problem(
                send,
                429,
                "Too many requests",
                f"Slow down: retry in {retry} s.",
                [(b"retry-after", str(retry).encode())],
            )
            return
        await self.app(scope, receive, send)
