"""Eligibility rules of the walking skeleton.

PLACEHOLDER, not the rules engine: one flat standard for every region and date, the subsistence allowance
only, every member counted and every income counted. It exists so the skeleton's journey has a real decision
to carry; the rules-as-code issue replaces it with dated per-region parameters and all five programmes.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from shared.contracts.eligibility import Reason
from shared.contracts.intake import HouseholdFacts

CENT = Decimal("0.01")
PLACEHOLDER_RULE = "skeleton-placeholder-v1"
DIBAO_SOURCE = "上海市社会救助条例 第十六条"


@dataclass(frozen=True)
class IncomeTest:
    counted_members: int
    counted_monthly_income: Decimal
    per_capita_monthly_income: Decimal


@dataclass(frozen=True)
class Decision:
    programme: str
    eligible: bool
    monthly_amount: Decimal
    reasons: list[Reason]


def income_test(household: HouseholdFacts) -> IncomeTest:
    members = len(household.members)
    income = sum((i.monthly for m in household.members for i in m.incomes), Decimal("0.00"))
    per_capita = (income / members).quantize(CENT, rounding=ROUND_HALF_UP)
    return IncomeTest(members, income.quantize(CENT), per_capita)


def subsistence_allowance(test: IncomeTest, standard: Decimal) -> Decision:
    if test.per_capita_monthly_income < standard:
        gap = standard - test.per_capita_monthly_income
        return Decision(
            "subsistence_allowance",
            True,
            (gap * test.counted_members).quantize(CENT),
            [
                Reason(
                    code="income_below_standard",
                    text=f"per-capita income {test.per_capita_monthly_income} is below the standard {standard}",
                    source=DIBAO_SOURCE,
                )
            ],
        )
    return Decision(
        "subsistence_allowance",
        False,
        Decimal("0.00"),
        [
            Reason(
                code="income_not_below_standard",
                text=f"per-capita income {test.per_capita_monthly_income} is not below the standard {standard}",
                source=DIBAO_SOURCE,
            )
        ],
    )
