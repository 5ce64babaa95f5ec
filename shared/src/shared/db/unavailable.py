"""Is this error the database being away (down, restarting, unreachable, or SQLite's file locked), rather than
a fault of the statement or the data? Such an error says nothing about the request or the event: the same
work later will succeed. The API answers it with 503, the consumer never dead-letters for it."""

from __future__ import annotations

from sqlalchemy import exc as sa_exc

# SQLSTATE classes and codes that mean "the server is not there for you right now": connection exceptions
# (08…), operator intervention (57P01 admin shutdown, 57P02 crash shutdown, 57P03 cannot connect now).
UNAVAILABLE_CLASSES = ("08",)
UNAVAILABLE_CODES = frozenset({"57P01", "57P02", "57P03"})


def _sqlstate(error: BaseException) -> str | None:
    for candidate in (error, getattr(error, "orig", None), getattr(error, "__cause__", None)):
        code = getattr(candidate, "sqlstate", None) or getattr(candidate, "pgcode", None)
        if isinstance(code, str):
            return code
    orig = getattr(error, "orig", None)
    cause = getattr(orig, "__cause__", None)
    code = getattr(cause, "sqlstate", None)
    return code if isinstance(code, str) else None


def database_unavailable(error: BaseException) -> bool:
    if isinstance(error, sa_exc.TimeoutError | sa_exc.OperationalError | sa_exc.InterfaceError):
        return True
    if isinstance(error, ConnectionError | TimeoutError):
        return True
    if isinstance(error, OSError) and not isinstance(error, FileNotFoundError | PermissionError):
        return True
    if isinstance(error, sa_exc.DBAPIError):
        if error.connection_invalidated:
            return True
        code = _sqlstate(error)
        if code is not None and (code.startswith(UNAVAILABLE_CLASSES) or code in UNAVAILABLE_CODES):
            return True
        # asyncpg's own connection errors, wrapped without a SQLSTATE
        orig = getattr(error, "orig", None)
        text = f"{error} {orig}".lower()
        return any(
            phrase in text
            for phrase in ("connection is closed", "connection was closed", "connection_lost", "shutting down")
        )
    return False
