"""What differs between the two databases and is written once here."""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects import postgresql, sqlite


def insert_for(executor: Any) -> Any:
    """The dialect's `insert` (PostgreSQL's or SQLite's, both with ON CONFLICT) for a session, connection or
    engine; a session bound to nothing is taken for SQLite."""
    bind = executor if hasattr(executor, "dialect") else getattr(executor, "bind", None)
    return postgresql.insert if bind is not None and bind.dialect.name == "postgresql" else sqlite.insert
