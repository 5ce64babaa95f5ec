"""Worklists: cases in the caller's region by filters, newest first, a page at a time with an opaque cursor."""

from __future__ import annotations

import base64
import json
from datetime import date, datetime
from typing import Any

from intake.domain import (
    IN_PROCEDURE,
)
from intake.models import Case
from intake.repository import CaseRepository
from intake.service import case_scope
from shared.auth import Principal
from shared.db.uow import UnitOfWork
from shared.errors import Unprocessable
from shared.logging import get_logger

log = get_logger(__name__)


class BadCursor(Unprocessable):
    title = "Invalid cursor"


def encode_cursor(case: Case) -> str:
    raw = json.dumps([case.created_at.isoformat(), case.case_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        created_at, case_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        return datetime.fromisoformat(created_at), str(case_id)
    except (ValueError, TypeError) as exc:
        raise BadCursor("cursor is not one this service returned", field="cursor") from exc


async def list_cases(
    uow: UnitOfWork,
    principal: Principal,
    *,
    filters: dict[str, str | None],
    cursor: str | None,
    limit: int,
    today: date,
) -> tuple[list[Case], str | None]:
    """A worklist page within the caller's region, newest first, and the cursor of the next page."""
    where: list[Any] = [case_scope(principal)]
    if filters.get("region"):
        where.append(Case.region.startswith(filters["region"]))
    for column in ("street", "community", "status", "channel"):
        if filters.get(column):
            where.append(getattr(Case, column) == filters[column])
    if filters.get("programme"):
        where.append(CaseRepository.has_programme(str(filters["programme"])))
    if filters.get("overdue"):
        where.append(CaseRepository.overdue(IN_PROCEDURE, today))
    if filters.get("review_due"):
        where.append(CaseRepository.review_due(today))
    after = decode_cursor(cursor) if cursor else None
    rows = await CaseRepository(uow.session).page(where, after, limit + 1)
    page, more = rows[:limit], len(rows) > limit
    return page, encode_cursor(page[-1]) if more else None
