"""Errors as RFC 9457 problem+json. Domain errors carry their own status; 422 is for payload validation only.

No stack trace, SQL or exception text ever reaches a client: an unexpected error is a bare 500 problem whose
details go to the log with the correlation id the client also receives.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared.db.unavailable import database_unavailable
from shared.logging import get_logger
from shared.messaging.context import trace

PROBLEM = "application/problem+json"
log = get_logger(__name__)


class DomainError(Exception):
    status_code = 400
    title = "Bad request"
    type_ = "about:blank"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class NotFound(DomainError):
    status_code = 404
    title = "Not found"


class Conflict(DomainError):
    status_code = 409
    title = "Conflict"


class Unprocessable(DomainError):
    status_code = 422
    title = "Unprocessable content"


def problem(status: int, title: str, detail: str, request: Request | None = None, **extra: Any) -> JSONResponse:
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    if request is not None:
        body["instance"] = request.url.path
    body["correlation_id"] = trace().correlation_id
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM)


def _field(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def _domain(request: Request, exc: DomainError) -> JSONResponse:
        return problem(exc.status_code, exc.title, exc.detail, request, **exc.extra)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"field": _field(tuple(e["loc"])), "message": e["msg"]} for e in exc.errors()]
        first = errors[0] if errors else {"field": "body", "message": "invalid"}
        return problem(422, "Unprocessable content", f"{first['field']}: {first['message']}", request, errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem(exc.status_code, str(exc.detail), str(exc.detail), request)

    @app.exception_handler(sa_exc.TimeoutError)
    async def _busy(request: Request, exc: sa_exc.TimeoutError) -> JSONResponse:
        # Every database connection stayed busy: an overload, not a fault of the request. Say so at once and
        # when to come back, so a client (a bank's callbacks, say) retries instead of counting an error.
        log.warning("database_pool_exhausted", path=request.url.path)
        response = problem(503, "Busy", "Every database connection is busy; try again shortly.", request)
        response.headers["Retry-After"] = "2"
        return response

    async def _database_away(request: Request, exc: Exception) -> JSONResponse:
        # The database is down, restarting or unreachable (or SQLite's file is locked): nothing was done, and
        # the same request later will succeed. A 503 with Retry-After, never a 500.
        log.warning("database_unavailable", path=request.url.path, error_class=type(exc).__name__)
        response = problem(503, "Unavailable", "The database cannot be reached just now; try again shortly.", request)
        response.headers["Retry-After"] = "5"
        return response

    app.add_exception_handler(ConnectionError, _database_away)

    @app.exception_handler(sa_exc.DBAPIError)
    async def _dbapi(request: Request, exc: sa_exc.DBAPIError) -> JSONResponse:
        # Connection failures, a restart under the statement, a server shutting down: shared.db.unavailable.
        if database_unavailable(exc):
            return await _database_away(request, exc)
        return await _unexpected(request, exc)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled_error", path=request.url.path, error_class=type(exc).__name__, exc_info=exc)
        return problem(500, "Internal server error", "The request could not be completed.", request)


PROBLEM_SCHEMA = {
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "correlation_id": {"type": "string"},
        "errors": {"type": "array", "items": {"type": "object"}},
    },
}
_WHY = {
    400: "The body could not be read (not UTF-8 or not JSON)",
    401: "No valid bearer token",
    403: "The caller's role may not do this, or it is outside their region",
    404: "Not found (or outside the caller's region)",
    409: "Conflict, e.g. an Idempotency-Key reused",
    413: "Body too large",
    422: "The request is malformed; `errors` names each field",
    429: "Too many requests",
    500: "Internal error (no detail is ever returned)",
    503: "Not ready, or busy (every database connection in use; Retry-After says when to try again)",
}
# Documented on every operation, so clients and schema-driven tests know every error's shape.
PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"description": why, "content": {PROBLEM: {"schema": PROBLEM_SCHEMA}}} for code, why in _WHY.items()
}
