"""Abuse limits: request body size and a request rate per client, answered as problem+json (413, 429).

The rate limit is a token bucket per client (the token's subject, else the peer address) held in the process;
with several replicas each keeps its own, so a cluster-wide limit belongs at the gateway or in a shared store.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
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


class RateLimit:
    """A token bucket per client: `per_minute` requests a minute, bursts up to `burst`."""

    def __init__(self, app: ASGIApp, per_minute: int, burst: int, exempt: frozenset[str], max_clients: int = 100_000):
        self.app = app
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self.exempt = exempt
        self.max_clients = max_clients
        self.buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

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
        key = self._client(scope)
        now = time.monotonic()
        tokens, last = self.buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens < 1:
            self.buckets[key] = (tokens, now)
            retry = max(1, int((1 - tokens) / self.rate) + 1)
            await _problem(
                send,
                429,
                "Too many requests",
                f"Slow down: retry in {retry} s.",
                [(b"retry-after", str(retry).encode())],
            )
            return
        self.buckets[key] = (tokens - 1, now)
        if len(self.buckets) > self.max_clients:
            self.buckets.popitem(last=False)
        await self.app(scope, receive, send)
