"""Test data: valid applications and events."""

from __future__ import annotations

import itertools
import random
import uuid
from datetime import date
from typing import Any

from intake.domain import with_check_digit


def id_number(region: str = "310115", born: str = "19800501", serial: int = 1) -> str:
    return with_check_digit(f"{region}{born}{serial:03d}")


# A person is on at most one open case, so every application the tests make is of new people: ten million
# distinct numbers from a random start, never repeating within a run.
_people = itertools.count(random.randrange(10_000_000))


def new_id_number() -> str:
    n = next(_people) % 10_000_000
    return id_number(region=f"31{n // 1000:04d}", serial=n % 1000)


def application(
    *, wage: str = "800.00", members: int = 2, payee_account: str | None = "6222021001112223", **extra: Any
) -> dict[str, Any]:
    people = []
    for i in range(members):
        people.append(
            {
                "ref": f"m{i + 1}",
                "name": f"成员{i + 1}",
                "id_number": new_id_number(),
                "relationship": "applicant" if i == 0 else "spouse" if i == 1 else "child",
                "birth_date": "1980-05-01",
                "hukou_region": "310115",
                "incomes": [{"kind": "wage", "monthly": wage}] if i == 0 else [],
            }
        )
    body: dict[str, Any] = {
        "region": "310115",
        "channel": "window",
        "household": {"members": people, "assets": {"monetary": "3000.00"}},
        "consent": {"economic_verification": True},
        **extra,
    }
    if payee_account is not None:
        body["payee_account"] = payee_account
    return body


def household_facts() -> dict[str, Any]:
    return {
        "members": [
            {
                "ref": "m1",
                "relationship": "applicant",
                "birth_date": "1980-05-01",
                "hukou_region": "310115",
                "incomes": [{"kind": "wage", "monthly": "500.00"}],
            }
        ],
    }


def new_id() -> str:
    return str(uuid.uuid4())


TODAY = date(2026, 11, 22)
