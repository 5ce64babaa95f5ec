"""The five programmes as vectorised functions of household columns and the parameters of one region and
date. Money is integer fen throughout, so every figure is exact; see RULES.md beside this package for the
rules in words.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from eligibility.columns import (
    DISABILITIES,
    EDUCATION,
    INCOME_KINDS,
    RELATIONSHIPS,
    STATUSES,
    WAGE,
    Bools,
    Columns,
    Ints,
)
from eligibility.params import ParameterError, Resolved

ADULT_AGE = 18
SCHOOLING = [EDUCATION.index(e) for e in ("compulsory", "high_school", "vocational")]

# Reason codes, by programme. A result's reasons are its primary code followed by any asset failures.
ASSET_CODES = ("monetary_assets_exceed_limit", "private_car", "non_residential_property", "too_many_homes")
SA_CODES = ("income_below_standard", "income_not_below_standard", "no_counted_members", "no_local_hukou")
MARGIN_CODES = (
    "income_within_margin",
    "income_above_margin",
    "eligible_for_subsistence_allowance",
    "no_counted_members",
    "no_local_hukou",
)
EXPENDITURE_CODES = (
    "rigid_expenditure_below_standard",
    "medical_expense_ratio",
    "income_above_benchmark",
    "no_trigger",
    "eligible_for_subsistence_allowance",
    "no_counted_members",
    "no_local_hukou",
)
TEMPORARY_CODES = ("emergency", "no_emergency")
EXTREME_CODES = (
    "no_work_capacity",
    "no_source_of_living",
    "no_capable_supporter",
    "has_work_capacity",
    "has_source_of_living",
    "has_capable_supporter",
)
DECIDED_BY = ("hukou", "residence", "occurrence")
ROUTES = ("cash", "shelter")


def _fen(value: Any) -> int:
    return int(value * 100)


def _fraction(value: Any) -> Fraction:
    return Fraction(str(value))


@dataclass(frozen=True)
class Scalars:
    """The parameters of one region and date, in the units the vectorised rules use."""

    standard: int
    excluded_statuses: list[int]
    requires_local_hukou: bool
    non_hukou_relationships: list[int]
    counted_income_kinds: Ints  # 1 where the kind counts
    employment_disregard: int
    minimum_wage: int | None
    asset_limit: int
    asset_limit_small: int
    small_household: int
    max_cars: int
    max_non_residential: int
    max_homes: int
    max_homes_small_area: int
    floor_area_limit_centi: int
    margin_multiple: Fraction
    margin_inclusive: bool
    margin_capped: bool
    benchmark: int | None
    medical_ratio: Fraction
    temp_multiple: Fraction
    temp_special_multiple: Fraction
    aid_first_max: int
    shelter: bool
    elderly_age: int
    minor_age: int
    disability_max_grade: Ints  # by disability code; 0 = never
    in_school_after_minor_age: bool
    supporter_age_allowance: int
    supporter_age_low_income: int
    living_floor: int

    @classmethod
    def from_resolved(cls, p: dict[str, Resolved]) -> Scalars:
        def v(name: str) -> Any:
            found = p.get(name)
            if found is None:
                raise ParameterError("as_of", f"the parameter {name} is not encoded for this region and date")
            return found.value

        excluded_kinds = set(v("income.excluded_kinds"))
        disability = np.zeros(len(DISABILITIES), dtype=np.int64)
        for entry in v("extreme_poverty.no_work_capacity_disabilities"):
            kind, _, grade = entry.partition(":")
            disability[DISABILITIES.index(kind)] = int(grade)
        minimum_wage = p.get("income.minimum_wage_monthly")
        benchmark = p.get("expenditure_hardship.annual_disposable_income_benchmark")
        return cls(
            standard=_fen(v("subsistence_allowance.standard")),
            excluded_statuses=[STATUSES.index(s) for s in v("household.excluded_statuses")],
            requires_local_hukou=v("household.requires_local_hukou"),
            non_hukou_relationships=[RELATIONSHIPS.index(r) for r in v("household.non_hukou_counted_relationships")],
            counted_income_kinds=np.array([k not in excluded_kinds for k in INCOME_KINDS], dtype=np.int64),
            employment_disregard=_fen(v("income.employment_disregard_monthly")),
            minimum_wage=None if minimum_wage is None else _fen(minimum_wage.value),
            asset_limit=_fen(v("subsistence_allowance.monetary_assets_limit_per_capita")),
            asset_limit_small=_fen(v("subsistence_allowance.monetary_assets_limit_per_capita_small_household")),
            small_household=v("subsistence_allowance.small_household_max_size"),
            max_cars=v("subsistence_allowance.max_private_cars"),
            max_non_residential=v("subsistence_allowance.max_non_residential_properties"),
            max_homes=v("subsistence_allowance.max_homes"),
            max_homes_small_area=v("subsistence_allowance.max_homes_small_area"),
            floor_area_limit_centi=_fen(v("subsistence_allowance.home_floor_area_limit_per_capita")),
            margin_multiple=_fraction(v("low_income_margin.multiple")),
            margin_inclusive=v("low_income_margin.inclusive"),
            margin_capped=v("low_income_margin.capped_at_minimum_wage"),
            benchmark=None if benchmark is None else _fen(benchmark.value),
            medical_ratio=_fraction(v("expenditure_hardship.medical_ratio")),
            temp_multiple=_fraction(v("temporary_aid.cap_multiple_per_person")),
            temp_special_multiple=_fraction(v("temporary_aid.special_hardship_cap_multiple_per_person")),
            aid_first_max=_fen(v("temporary_aid.aid_first_max")),
            shelter=v("temporary_aid.shelter_without_hukou_or_permit"),
            elderly_age=v("extreme_poverty.elderly_age"),
            minor_age=v("extreme_poverty.minor_age"),
            disability_max_grade=disability,
            in_school_after_minor_age=v("extreme_poverty.in_school_after_minor_age"),
            supporter_age_allowance=v("extreme_poverty.supporter_incapable_age_with_allowance"),
            supporter_age_low_income=v("extreme_poverty.supporter_incapable_age_low_income"),
            living_floor=_fen(v("extreme_poverty.basic_living_floor")),
        )

    @property
    def margin_line(self) -> int:
        line = _times(self.standard, self.margin_multiple)
        if self.margin_capped and self.minimum_wage is not None:
            line = min(line, self.minimum_wage)
        return line


def _times(amount: int, multiple: Fraction) -> int:
    """fen × a decimal multiple, rounded half up to the fen."""
    return (2 * amount * multiple.numerator + multiple.denominator) // (2 * multiple.denominator)


def _times_array(amount: Ints, multiple: Fraction) -> Ints:
    return (2 * amount * multiple.numerator + multiple.denominator) // (2 * multiple.denominator)


def _per_capita(total: Ints, persons: Ints) -> Ints:
    """total ÷ persons rounded half up; 0 where nobody counts."""
    safe = np.maximum(persons, 1)
    return np.where(persons > 0, (2 * total + safe) // (2 * safe), 0)


def _per_household(c: Columns, values: Any) -> Ints:
    return np.bincount(c.m_household, weights=values, minlength=c.n).astype(np.int64)


@dataclass
class Outcome:
    """Every programme's result for every household in the batch, as arrays."""

    m_excluded_reason: Ints  # -1 counted, else a status code, or len(STATUSES) for not_local_hukou
    m_income: Ints
    counted: Ints
    income: Ints
    per_capita: Ints
    asset_failures: Ints  # bit i set = ASSET_CODES[i] failed
    sa_eligible: Bools
    sa_code: Ints
    sa_gap: Ints
    sa_amount: Ints
    margin_line: int
    margin_eligible: Bools
    margin_code: Ints
    ex_eligible: Bools
    ex_code: Ints
    ex_trigger1: Bools
    ex_trigger2: Bools
    ex_per_capita_after: Ints
    ex_amount: Ints
    ta_eligible: Bools
    ta_persons: Ints
    ta_decided_by: Ints
    ta_route: Ints
    ta_max: Ints
    ta_special_max: Ints
    ta_aid_first: Ints
    ep_member: Bools
    ep_eligible: Bools
    ep_code: Ints
    ep_amount: Ints


def evaluate(c: Columns, p: Scalars) -> Outcome:
    hh = c.m_household
    # Who counts.
    excluded = np.isin(c.m_status, p.excluded_statuses)
    if p.requires_local_hukou:
        local_counted = _per_household(c, c.m_hukou_local & ~excluded) > 0
        may_join = np.isin(c.m_relationship, p.non_hukou_relationships) & local_counted[hh]
        not_local = ~excluded & ~c.m_hukou_local & ~may_join
    else:
        not_local = np.zeros(len(hh), dtype=bool)
    counted_m = ~excluded & ~not_local
    excluded_reason = np.where(excluded, c.m_status, np.where(not_local, len(STATUSES), -1))
    counted = _per_household(c, counted_m)
    local_household = _per_household(c, counted_m & c.m_hukou_local) > 0 if p.requires_local_hukou else counted > 0

    # Income.
    m_income = c.m_income @ p.counted_income_kinds
    if p.minimum_wage is not None and p.employment_disregard:
        wage = c.m_income[:, WAGE]
        m_income = m_income - np.where(wage >= p.minimum_wage, np.minimum(wage, p.employment_disregard), 0)
    income = _per_household(c, m_income * counted_m)
    per_capita = _per_capita(income, counted)

    # Assets.
    limit = np.where(counted <= p.small_household, p.asset_limit_small, p.asset_limit)
    area_per_capita = np.where(c.floor_area_centi >= 0, _per_capita(np.maximum(c.floor_area_centi, 0), counted), -1)
    homes_ok = (c.homes <= p.max_homes) | (
        (c.homes <= p.max_homes_small_area) & (area_per_capita >= 0) & (area_per_capita < p.floor_area_limit_centi)
    )
    asset_failures = (
        (_per_capita(c.monetary, counted) > limit).astype(np.int64)
        | ((c.cars > p.max_cars).astype(np.int64) << 1)
        | ((c.non_residential > p.max_non_residential).astype(np.int64) << 2)
        | ((~homes_ok).astype(np.int64) << 3)
    )
    assets_ok = asset_failures == 0
    someone = counted > 0
    basic = someone & local_household

    # Subsistence allowance.
    below = per_capita < p.standard
    sa_eligible = basic & below & assets_ok
    sa_code = np.select([~someone, ~local_household, below], [2, 3, 0], default=1)
    sa_gap = np.where(sa_eligible, p.standard - per_capita, 0)
    sa_amount = sa_gap * counted

    # Low-income margin.
    line = p.margin_line
    within = (per_capita <= line) if p.margin_inclusive else (per_capita < line)
    margin_eligible = basic & ~below & within & assets_ok
    margin_code = np.select([~someone, ~local_household, below, within], [3, 4, 2, 0], default=1)

    # Expenditure hardship.
    rigid = c.medical + c.education_spend + c.other_rigid
    after = _per_capita(np.maximum(income - rigid, 0), counted)
    trigger1 = after < p.standard
    ratio = p.medical_ratio
    trigger2 = (c.medical > 0) & (c.medical * ratio.denominator >= income * ratio.numerator)
    under_benchmark = per_capita * 12 < p.benchmark if p.benchmark is not None else np.zeros(c.n, dtype=bool)
    covered = basic & below & assets_ok
    ex_eligible = basic & assets_ok & under_benchmark & ~covered & (trigger1 | trigger2)
    ex_code = np.select(
        [~someone, ~local_household, covered, ~under_benchmark, trigger1, trigger2],
        [5, 6, 4, 2, 0, 1],
        default=3,
    )
    ex_amount = np.where(ex_eligible & trigger1, (p.standard - after) * counted, 0)

    # Temporary aid.
    present = ~excluded
    persons = np.where(someone, counted, _per_household(c, present))
    by_hukou = _per_household(c, present & c.m_hukou_local) > 0
    by_permit = _per_household(c, present & c.m_permit_local) > 0
    decided_by = np.select([by_hukou, by_permit], [0, 1], default=2)
    route = np.where((decided_by == 2) & p.shelter, 1, 0)
    cash = c.emergency & (route == 0)
    ta_max = np.where(cash, _times_array(np.full(c.n, p.standard) * persons, p.temp_multiple), 0)
    ta_special = np.where(cash, _times_array(np.full(c.n, p.standard) * persons, p.temp_special_multiple), 0)
    ta_aid_first = np.where(cash, np.minimum(p.aid_first_max, ta_max), 0)

    # Extreme poverty.
    age = c.m_age
    in_school = (
        p.in_school_after_minor_age & (age >= p.minor_age) & (age < ADULT_AGE) & np.isin(c.m_education, SCHOOLING)
    )
    disabled = (c.m_disability > 0) & (c.m_grade <= p.disability_max_grade[c.m_disability])
    no_work = counted_m & ((age >= p.elderly_age) | (age < p.minor_age) | in_school | disabled)
    no_source = (m_income < p.standard) & assets_ok[hh]
    incapable = c.s_extreme | ((c.s_age >= p.supporter_age_allowance) & c.s_allowance)
    if p.benchmark is not None:
        incapable |= (c.s_age >= p.supporter_age_low_income) & (c.s_income * 12 < p.benchmark)
    has_capable = np.bincount(c.s_member, weights=~incapable, minlength=len(hh)) > 0
    ep_member = no_work & no_source & ~has_capable
    qualifying = _per_household(c, ep_member)
    ep_eligible = qualifying > 0
    ep_code = np.select(
        [ep_eligible, _per_household(c, no_work) == 0, _per_household(c, no_work & no_source) == 0],
        [0, 3, 4],
        default=5,
    )
    ep_amount = qualifying * max(p.standard, p.living_floor)

    return Outcome(
        m_excluded_reason=excluded_reason,
        m_income=m_income,
        counted=counted,
        income=income,
        per_capita=per_capita,
        asset_failures=asset_failures,
        sa_eligible=sa_eligible,
        sa_code=sa_code,
        sa_gap=sa_gap,
        sa_amount=sa_amount,
        margin_line=line,
        margin_eligible=margin_eligible,
        margin_code=margin_code,
        ex_eligible=ex_eligible,
        ex_code=ex_code,
        ex_trigger1=trigger1,
        ex_trigger2=trigger2,
        ex_per_capita_after=after,
        ex_amount=ex_amount,
        ta_eligible=c.emergency.copy(),
        ta_persons=persons,
        ta_decided_by=decided_by,
        ta_route=route,
        ta_max=ta_max,
        ta_special_max=ta_special,
        ta_aid_first=ta_aid_first,
        ep_member=ep_member,
        ep_eligible=ep_eligible,
        ep_code=ep_code,
        ep_amount=ep_amount,
    )
