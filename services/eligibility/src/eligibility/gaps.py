"""The gap aid leaves: what a household granted monthly aid still cannot pay for its necessary costs, so that
referral can publish it to charities (where government aid ends, charities take over).

The rule, for an approved determination paid monthly (the subsistence allowance, or the expenditure-hardship
living aid), on the verified household and the standard in force:

    resources after costs = counted monthly income + the monthly aid granted − necessary costs
                            (medical, education and other necessary spending, as verified)
    shortfall             = standard × counted members − resources after costs

The shortfall is what the household lacks to live at the standard once it has paid its necessary costs. It
is shared out over the costs that cause it, medical first, then education, then other necessary costs
(basic living, `food`); each share at least `aid_gap.minimum_monthly` is a gap in that category, with the
amount a month and the reason in words. A household with no necessary costs has no gap: the aid brings it to
the standard by definition.

Why: the subsistence allowance pays the gap to the standard on income (上海市社会救助条例 第十六条), not the
household's bills; the expenditure-hardship aid deducts necessary costs but pays at most the standard when
they exceed income (第十八条第二款), and special hardship beyond it is for special assistance (第十八条第一款).
What neither covers is left to charities. The threshold has no legal source (a project default, flagged
unverified in the parameter file). Pure: no database, no web, no broker.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

CENT = Decimal("0.01")
# category, the verified expenditure it comes from, and the words for it; in the order a shortfall is shared.
COSTS = (
    ("medical", "medical_monthly", "medical costs"),
    ("education", "education_monthly", "education costs"),
    ("food", "other_rigid_monthly", "other necessary costs"),
)
PROGRAMME_WORDS = {
    "subsistence_allowance": "subsistence allowance",
    "expenditure_hardship": "expenditure-hardship aid",
}


@dataclass(frozen=True)
class Gap:
    category: str
    monthly_amount: Decimal
    reason: str


def _money(value: Any) -> Decimal:
    return Decimal(str(value or 0))


def aid_gaps(
    household: dict[str, Any],
    *,
    programme: str,
    counted_members: int,
    counted_monthly_income: Decimal,
    monthly_aid: Decimal,
    standard: Decimal,
    threshold: Decimal,
) -> list[Gap]:
    """The gaps the monthly aid of `programme` leaves the verified `household` (module docstring)."""
    spending = household.get("expenditures") or {}
    costs = [(category, _money(spending.get(field)), words) for category, field, words in COSTS]
    necessary = sum((cost for _c, cost, _w in costs), Decimal(0))
    if counted_members <= 0 or necessary <= 0:
        return []
    shortfall = standard * counted_members - (counted_monthly_income + monthly_aid - necessary)
    aid = PROGRAMME_WORDS.get(programme, programme)
    gaps = []
    for category, cost, words in costs:
        if shortfall <= 0:
            break
        share = min(cost, shortfall)
        shortfall -= share
        if share > 0 and share >= threshold:
            amount = share.quantize(CENT)
            gaps.append(
                Gap(
                    category,
                    amount,
                    f"{words} of {cost:.2f} a month leave {amount:.2f} a month uncovered after the "
                    f"{monthly_aid:.2f} a month of {aid} (standard {standard:.2f} a person)",
                )
            )
    return gaps
