"""Random valid evaluation requests (hypothesis strategies, and a seeded generator for benchmarks)."""

from __future__ import annotations

import random
from datetime import date, timedelta
from typing import Any

from hypothesis import strategies as st

REGIONS = ["310115", "310112", "310113", "310000", "330000", "331000"]
INCOME_KINDS = ["wage", "business", "pension", "support_received", "scholarship", "social_assistance", "other"]


def _money(draw_int: int) -> str:
    return f"{draw_int // 100}.{draw_int % 100:02d}"


money = st.integers(min_value=0, max_value=600_000).map(_money)


@st.composite
def members(draw: Any) -> dict[str, Any]:
    province = draw(st.sampled_from(["31", "33", "11"]))
    born = draw(st.dates(min_value=date(1930, 1, 1), max_value=date(2020, 12, 31)))
    member: dict[str, Any] = {
        "ref": "m",
        "relationship": draw(st.sampled_from(["applicant", "spouse", "child", "parent", "other"])),
        "birth_date": born.isoformat(),
        "hukou_region": province + "0115",
        "residence_permit_region": draw(st.sampled_from([None, "310000", "330000"])),
        "status": draw(st.sampled_from(["ordinary"] * 6 + ["imprisoned", "missing"])),
        "education": draw(st.sampled_from(["none", "compulsory", "high_school", "undergraduate"])),
        "incomes": draw(
            st.lists(st.fixed_dictionaries({"kind": st.sampled_from(INCOME_KINDS), "monthly": money}), max_size=3)
        ),
    }
    if draw(st.booleans()):
        member["disability"] = {
            "kind": draw(st.sampled_from(["physical", "intellectual", "visual"])),
            "grade": draw(st.integers(1, 4)),
        }
    if draw(st.booleans()):
        member["supporters"] = [
            {
                "birth_date": "1950-01-01",
                "receives_subsistence_allowance": draw(st.booleans()),
                "monthly_income": draw(money),
            }
        ]
    return member


@st.composite
def requests(draw: Any) -> dict[str, Any]:
    people = draw(st.lists(members(), min_size=1, max_size=6))
    for i, person in enumerate(people):
        person["ref"] = f"m{i + 1}"
    household: dict[str, Any] = {
        "members": people,
        "assets": {
            "monetary": draw(st.integers(0, 20_000_000).map(_money)),
            "private_cars": draw(st.integers(0, 1)),
            "homes": draw(st.integers(0, 2)),
            "home_floor_area_m2": draw(st.sampled_from([None, "40.00", "120.00"])),
        },
        "expenditures": {"medical_monthly": draw(money), "education_monthly": draw(money)},
    }
    if draw(st.booleans()):
        household["emergency"] = {"kind": "fire", "occurred_on": "2024-03-01", "region": draw(st.sampled_from(REGIONS))}
    as_of = draw(st.dates(min_value=date(2020, 4, 1), max_value=date(2026, 6, 30)))
    return {"region": draw(st.sampled_from(REGIONS)), "as_of": as_of.isoformat(), "household": household}


def generate(n: int, seed: int = 7) -> list[dict[str, Any]]:
    """n plausible households near the line, for benchmarks (no hypothesis shrinking machinery)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        size = rng.choice([1, 1, 2, 2, 3, 3, 4, 5])
        people = []
        for i in range(size):
            age = rng.randint(1, 90)
            person: dict[str, Any] = {
                "ref": f"m{i + 1}",
                "relationship": "applicant" if i == 0 else rng.choice(["spouse", "child", "parent"]),
                "birth_date": (date(2024, 1, 1) - timedelta(days=365 * age + rng.randint(0, 364))).isoformat(),
                "hukou_region": "310115" if rng.random() < 0.9 else "420100",
            }
            if 18 <= age < 60 and rng.random() < 0.7:
                person["incomes"] = [{"kind": "wage", "monthly": _money(rng.randint(0, 500_000))}]
            if age >= 60 and rng.random() < 0.5:
                person["incomes"] = [{"kind": "pension", "monthly": _money(rng.randint(50_000, 400_000))}]
            if rng.random() < 0.05:
                person["disability"] = {"kind": "physical", "grade": rng.randint(1, 4)}
            people.append(person)
        household: dict[str, Any] = {
            "members": people,
            "assets": {"monetary": _money(rng.randint(0, 10_000_000)), "homes": 1},
        }
        if rng.random() < 0.1:
            household["expenditures"] = {"medical_monthly": _money(rng.randint(0, 800_000))}
        if rng.random() < 0.05:
            household["emergency"] = {"kind": "sudden_illness", "occurred_on": "2024-02-01", "region": "310115"}
        out.append(
            {"region": rng.choice(["310115", "310112", "331000"]), "as_of": "2024-03-01", "household": household}
        )
    return out
