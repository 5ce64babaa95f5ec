"""What kind of help a refused household's situation points to, for charities."""

from __future__ import annotations

from datetime import date
from typing import Any

from eligibility.domain import need_categories

ON = date(2026, 11, 30)


def member(born: str, **facts: Any) -> dict[str, Any]:
    return {"ref": "m", "relationship": "applicant", "birth_date": born, "hukou_region": "310115", **facts}


def test_a_household_with_nothing_particular_needs_basic_living() -> None:
    assert need_categories({"members": [member("1980-05-01")]}, ON) == ["food"]


def test_each_situation_points_to_its_kind_of_help_most_specific_first() -> None:
    household = {
        "members": [
            member("1950-01-01", serious_illness=True),  # 76: elderly, and ill
            member("1985-03-03", disability={"kind": "visual", "grade": 2}),
            member("2008-12-01", education="high_school"),  # 17 on ON: a child, and a student
        ],
        "emergency": {"kind": "fire", "occurred_on": "2026-11-20", "region": "310115"},
    }
    assert need_categories(household, ON) == [
        "medical",
        "disability",
        "education",
        "elderly",
        "children",
        "housing",
        "food",
    ]


def test_ages_count_to_the_day() -> None:
    assert "elderly" not in need_categories({"members": [member("1966-12-01")]}, ON)  # 60 tomorrow
    assert "elderly" in need_categories({"members": [member("1966-11-30")]}, ON)
    assert "children" in need_categories({"members": [member("2008-12-01")]}, ON)  # 18 tomorrow
    assert "children" not in need_categories({"members": [member("2008-11-30")]}, ON)


def test_medical_and_education_costs_count_without_an_illness_or_a_student() -> None:
    household = {
        "members": [member("1980-05-01")],
        "expenditures": {"medical_monthly": "800.00", "education_monthly": "300.00"},
    }
    assert need_categories(household, ON) == ["medical", "education", "food"]
