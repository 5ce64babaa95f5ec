"""The HTTP middlewares every service shares: trace context and authentication.

Both are plain ASGI. Starlette's `@app.middleware("http")` (BaseHTTPMiddleware) runs the rest of the app in
a second task with memory streams between the two, per request; under load that cost more CPU than the
handler's own work in the profiles (docs/benchmarks.md). Here the request goes straight through, in its own
task, and only the response's start message is looked at.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared import tracing
from shared.auth import Authenticator, AuthError
from shared.authz import is_public
from shared.errors import problem
from shared.messaging.context import TraceContext, current_trace
from shared.messaging.envelope import TRACEPARENT
from shared.metrics import HTTP_REQUEST_SECONDS

CORRELATION_HEADER = "X-Correlation-ID"


class TraceContextMiddleware:
    """A server span per request, its trace context current while the request runs, the correlation id
    echoed on the response, and the request's duration observed per route and status (until the last byte
    of the body is sent: a streamed export counts its whole download)."""

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        method = scope["method"]
        attributes = {"http.request.method": method, "url.path": scope["path"]}
        with tracing.span(f"HTTP {method}", headers.get(TRACEPARENT, ""), "server", **attributes) as tp:
            context = TraceContext(traceparent=tp, correlation_id=headers.get(CORRELATION_HEADER) or str(uuid.uuid4()))
            token = current_trace.set(context)
            started = time.perf_counter()
            status = 500

            async def send_with_correlation(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                    MutableHeaders(scope=message)[CORRELATION_HEADER] = context.correlation_id
                await send(message)

            try:
                await self.app(scope, receive, send_with_correlation)
            finally:
                current_trace.reset(token)
                route = scope.get("route")
                HTTP_REQUEST_SECONDS.labels(
                    self.service, method, getattr(route, "path", "unmatched"), str(status)
                ).observe(time.perf_counter() - started)


class Authenticate:
    """Every path that is not public needs a valid bearer token; its principal goes on `request.state`
    (the scope's state), where the routes and the rate limit find it. A missing or bad token is a 401."""

    def __init__(self, app: ASGIApp, authenticator: Authenticator, development: bool) -> None:
        self.app = app
        self.authenticator = authenticator
        self.development = development

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or is_public(scope["path"], self.development):
            await self.app(scope, receive, send)
            return
        try:
            principal: Any = await self.authenticator.authenticate(Headers(scope=scope).get("Authorization"))
        except AuthError as exc:
            response = problem(401, "Unauthorized", str(exc), Request(scope))
            response.headers["WWW-Authenticate"] = 'Bearer realm="doudi"'
            await response(scope, receive, send)
            return
        scope.setdefault("state", {})["principal"] = principal
        await self.app(scope, receive, send)
