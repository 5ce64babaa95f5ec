"""Stuck cases are found in the case read model; waiting visibly (a verification source down) is not stuck."""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from typing import Any

from sqlalchemy import update

from intake.models import Case, CaseDetermination
from intake.stuck import stuck_cases
from shared.db.base import utcnow
from tests.conftest import ServiceFactory, api_client
from tests.factories import application


async def a_case(client: Any, status: str, quiet: timedelta, verification: dict[str, Any] | None = None) -> str:
    response = await client.post("/v1/applications", json=application())
    assert response.status_code == 201, response.text
    case_id = response.json()["case_id"]
    async with client.runtime.sessionmaker.begin() as session:
        await session.execute(
            update(Case)
            .where(Case.case_id == case_id)
            .values(status=status, updated_at=utcnow() - quiet, verification=verification)
        )
    return case_id


async def determination(client: Any, case_id: str, status: str, decision_due: date | None) -> None:
    async with client.runtime.sessionmaker.begin() as session:
        session.add(
            CaseDetermination(
                determination_id=str(uuid.uuid4()),
                case_id=case_id,
                programme="subsistence_allowance",
                status=status,
                reasons=[],
                decision_due=decision_due,
            )
        )


async def test_each_kind_of_stuck_case_is_found_and_nothing_else(services: ServiceFactory) -> None:
    long, short = timedelta(hours=3), timedelta(minutes=5)
    today = date(2026, 11, 30)
    async with api_client(services, "intake") as client:
        lost = await a_case(client, "submitted", long)
        waiting = await a_case(client, "submitted", long, {"status": "delayed", "reason": "centre down"})
        recent = await a_case(client, "submitted", short)
        undecided = await a_case(client, "verified", long)
        overdue = await a_case(client, "proposed", long)
        await determination(client, overdue, "proposed", today - timedelta(days=1))
        in_time = await a_case(client, "proposed", long)
        await determination(client, in_time, "proposed", today + timedelta(days=10))
        approved = await a_case(client, "approved", long)
        await determination(client, approved, "approved", today - timedelta(days=40))
        async with client.runtime.uow() as uow:
            found = await stuck_cases(uow, now=utcnow(), today=today, quiet_for=timedelta(hours=1))
    why = {case["case_id"]: case["why"] for case in found}
    assert why == {
        lost: "submitted; no verification came back",
        undecided: "verified; no determination followed",
        overdue: "a determination is past its decision deadline",
    }
    assert not {waiting, recent, in_time, approved} & set(why)
