"""Households as columns: integer fen and small integer codes in numpy arrays, members and supporters
flattened with the index of the household (and member) they belong to.

One builder serves both `/v1/evaluations` (a batch of one) and `doudi screen` (a million), so both run
exactly the same rules. Input is a plain dict as JSON gives it; `add` raises `ValueError` on anything it
cannot read exactly, and callers fall back to the pydantic schema for a precise error message.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any, get_args

import numpy as np
import numpy.typing as npt

from shared.contracts.intake import (
    DisabilityKind,
    Education,
    EmergencyKind,
    IncomeKind,
    MemberStatus,
    Relationship,
)

# The codes follow the event contract's own lists, so a kind added there is known here at once.
STATUSES: tuple[str, ...] = get_args(MemberStatus)
RELATIONSHIPS: tuple[str, ...] = get_args(Relationship)
DISABILITIES: tuple[str, ...] = ("none", *get_args(DisabilityKind))
EDUCATION: tuple[str, ...] = get_args(Education)
INCOME_KINDS: tuple[str, ...] = get_args(IncomeKind)
EMERGENCY_KINDS: tuple[str, ...] = get_args(EmergencyKind)
WAGE = INCOME_KINDS.index("wage")

_STATUS = {name: i for i, name in enumerate(STATUSES)}
_RELATIONSHIP = {name: i for i, name in enumerate(RELATIONSHIPS)}
_DISABILITY = {name: i for i, name in enumerate(DISABILITIES)}
_EDUCATION = {name: i for i, name in enumerate(EDUCATION)}
_INCOME = {name: i for i, name in enumerate(INCOME_KINDS)}

Ints = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]


def fen(value: Any) -> int:
    """'800.5' → 80050. Only non-negative strings with at most two decimals; anything else is a ValueError."""
    if type(value) is str and value.isascii():
        whole, dot, cents = value.partition(".")
        if whole.isdigit() and len(whole) <= 12:
            if not dot:
                return int(whole) * 100
            if cents.isdigit() and len(cents) <= 2:
                return int(whole) * 100 + int(cents) * (10 if len(cents) == 1 else 1)
    raise ValueError(f"not an amount: {value!r}")


def age_on(birth: date, on: date) -> int:
    return on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))


def _count(value: Any) -> int:
    if value is None:
        return 0
    if type(value) is not int or value < 0:
        raise ValueError(f"not a count: {value!r}")
    return value


def _fen_of(block: dict[str, Any], key: str) -> int:
    value = block.get(key)
    return 0 if value is None else fen(value)


def _is_region(code: Any) -> bool:
    return type(code) is str and len(code) == 6 and code.isascii() and code.isdigit()


@dataclass
class Columns:
    """The arrays the rules read. h = households, m = members, s = supporters."""

    n: int
    # per household
    monetary: Ints
    cars: Ints
    non_residential: Ints
    homes: Ints
    floor_area_centi: Ints  # m² × 100; -1 when not given
    medical: Ints
    education_spend: Ints
    other_rigid: Ints
    emergency: Bools
    # per member
    m_household: Ints
    m_age: Ints
    m_status: Ints
    m_relationship: Ints
    m_hukou_local: Bools
    m_permit_local: Bools
    m_disability: Ints
    m_grade: Ints
    m_education: Ints
    m_income: Ints  # shape (members, len(INCOME_KINDS)), fen per kind
    # per supporter
    s_member: Ints
    s_age: Ints
    s_allowance: Bools
    s_extreme: Bools
    s_income: Ints


class ColumnBuilder:
    """Collects households that share one region and date, then turns them into `Columns`."""

    def __init__(self, region: str, as_of: date) -> None:
        self.region = region
        self.as_of = as_of
        self._province = region[:2]
        self.h: list[tuple[int, int, int, int, int, int, int, int, bool]] = []
        self.m: list[tuple[int, int, int, int, bool, bool, int, int, int]] = []
        self.income: list[tuple[int, int, int]] = []
        self.s: list[tuple[int, int, bool, bool, int]] = []
        self._ages: dict[str, int] = {}

    def _age(self, birth_date: str) -> int:
        age = self._ages.get(birth_date)
        if age is None:
            age = self._ages[birth_date] = age_on(date.fromisoformat(birth_date), self.as_of)
        return age

    def __len__(self) -> int:
        return len(self.h)

    def add(self, household: dict[str, Any]) -> int:
        """Append one household (the `household` object of an evaluation request); returns its index."""
        index = len(self.h)
        members = household["members"]
        if not isinstance(members, list) or not members or len(members) > 30:
            raise ValueError("members")
        province = self._province
        m_rows, incomes, supporters = [], [], []
        first_member = len(self.m)
        for offset, member in enumerate(members):
            member_index = first_member + offset
            hukou = member["hukou_region"]
            permit = member.get("residence_permit_region")
            if not _is_region(hukou) or (permit is not None and not _is_region(permit)):
                raise ValueError("region code")
            disability = member.get("disability")
            if disability is None:
                kind, grade = 0, 0
            else:
                kind, grade = _DISABILITY[disability["kind"]], disability["grade"]
                if kind == 0 or not isinstance(grade, int) or isinstance(grade, bool) or not 1 <= grade <= 4:
                    raise ValueError("disability")
            ref = member.get("ref")
            if type(ref) is not str or not ref or type(member.get("serious_illness", False)) is not bool:
                raise ValueError("ref or serious_illness")
            m_rows.append(
                (
                    index,
                    self._age(member["birth_date"]),
                    _STATUS[member.get("status") or "ordinary"],
                    _RELATIONSHIP[member["relationship"]],
                    hukou[:2] == province,
                    permit is not None and permit[:2] == province,
                    kind,
                    grade,
                    _EDUCATION[member.get("education") or "none"],
                )
            )
            for income in member.get("incomes") or ():
                incomes.append((member_index, _INCOME[income["kind"]], fen(income["monthly"])))
            for supporter in member.get("supporters") or ():
                supporters.append(
                    (
                        member_index,
                        self._age(supporter["birth_date"]),
                        _flag(supporter.get("receives_subsistence_allowance", False)),
                        _flag(supporter.get("extreme_poverty", False)),
                        fen(supporter.get("monthly_income", "0.00")),
                    )
                )
        assets = household.get("assets") or {}
        spend = household.get("expenditures") or {}
        area = assets.get("home_floor_area_m2")
        emergency = household.get("emergency")
        if emergency is not None:
            if emergency["kind"] not in EMERGENCY_KINDS or not _is_region(emergency["region"]):
                raise ValueError("emergency")
            date.fromisoformat(emergency["occurred_on"])
        row = (
            _fen_of(assets, "monetary"),
            _count(assets.get("private_cars")),
            _count(assets.get("non_residential_properties")),
            _count(assets.get("homes")),
            -1 if area is None else fen(area),
            _fen_of(spend, "medical_monthly"),
            _fen_of(spend, "education_monthly"),
            _fen_of(spend, "other_rigid_monthly"),
            emergency is not None,
        )
        # Everything was read: only now does the household join the batch, so a bad one leaves no trace.
        self.h.append(row)
        self.m.extend(m_rows)
        self.income.extend(incomes)
        self.s.extend(supporters)
        return index

    def build(self) -> Columns:
        h = np.array(self.h, dtype=np.int64).reshape(-1, 9)
        m = np.array(self.m, dtype=np.int64).reshape(-1, 9)
        s = np.array(self.s, dtype=np.int64).reshape(-1, 5)
        income = np.zeros((len(m), len(INCOME_KINDS)), dtype=np.int64)
        if self.income:
            triplets = np.array(self.income, dtype=np.int64)
            np.add.at(income, (triplets[:, 0], triplets[:, 1]), triplets[:, 2])
        return Columns(
            n=len(h),
            monetary=h[:, 0],
            cars=h[:, 1],
            non_residential=h[:, 2],
            homes=h[:, 3],
            floor_area_centi=h[:, 4],
            medical=h[:, 5],
            education_spend=h[:, 6],
            other_rigid=h[:, 7],
            emergency=h[:, 8].astype(bool),
            m_household=m[:, 0],
            m_age=m[:, 1],
            m_status=m[:, 2],
            m_relationship=m[:, 3],
            m_hukou_local=m[:, 4].astype(bool),
            m_permit_local=m[:, 5].astype(bool),
            m_disability=m[:, 6],
            m_grade=m[:, 7],
            m_education=m[:, 8],
            m_income=income,
            s_member=s[:, 0],
            s_age=s[:, 1],
            s_allowance=s[:, 2].astype(bool),
            s_extreme=s[:, 3].astype(bool),
            s_income=s[:, 4],
        )


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("flag")
    return value
