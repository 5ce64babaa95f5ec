"""How an engine result becomes a determination: which amount, which payment, which reasons."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any, Literal

from shared.contracts.eligibility import Reason

RULE = "rules-engine-v1"
PaymentKind = Literal["monthly", "one_off", "none"]


@dataclass(frozen=True)
class Decision:
    eligible: bool
    monthly_amount: Decimal | None
    amount: Decimal | None
    payment_kind: PaymentKind
    reasons: list[Reason]


def decision_from(result: dict[str, Any]) -> Decision:
    """The subsistence allowance and the expenditure-hardship living aid are paid monthly; temporary aid pays
    its 'aid first' amount at once (the rest of an episode needs an officer's decision); the margin opens
    special assistance only. Extreme-poverty support is decided here but not paid automatically: it replaces
    the allowance for the supported person, which the case workflow must settle before money moves."""
    programme = result["programme"]
    reasons = [Reason(code=r["code"], text=r["text"], source=r["source"]) for r in result["reasons"]]
    eligible = bool(result["eligible"])
    if programme == "temporary_aid":
        amount = Decimal(result["aid_first_amount"]) if eligible else Decimal("0.00")
        return Decision(eligible, None, amount, "one_off" if eligible and amount > 0 else "none", reasons)
    monthly = Decimal(result["monthly_amount"])
    paid = programme in ("subsistence_allowance", "expenditure_hardship") and eligible and monthly > 0
    return Decision(eligible, monthly, None, "monthly" if paid else "none", reasons)


def need_categories(household: dict[str, Any], on: date) -> list[str]:
    """What kind of help a refused household's situation points to, for charities (the categories of
    referral's register), most specific first; `food` (basic living) always last. Read from the verified
    facts: medical costs or a serious illness, a disability, education costs or a student, a member aged 60
    or more, a child under 18, a home lost to fire or disaster."""
    members = household.get("members") or []
    spending = household.get("expenditures") or {}
    emergency = household.get("emergency") or {}

    def age(member: dict[str, Any]) -> int:
        born = date.fromisoformat(str(member["birth_date"]))
        return on.year - born.year - ((on.month, on.day) < (born.month, born.day))

    found = []
    if Decimal(str(spending.get("medical_monthly") or 0)) > 0 or any(m.get("serious_illness") for m in members):
        found.append("medical")
    if any(m.get("disability") for m in members):
        found.append("disability")
    studying = any((m.get("education") or "none") not in ("none", "compulsory") and age(m) < 25 for m in members)
    if Decimal(str(spending.get("education_monthly") or 0)) > 0 or studying:
        found.append("education")
    if any(age(m) >= 60 for m in members):
        found.append("elderly")
    if any(age(m) < 18 for m in members):
        found.append("children")
    if emergency.get("kind") in ("fire", "disaster"):
        found.append("housing")
    return [*found, "food"]


def wage_of(member: dict[str, Any]) -> Decimal:
    return sum((Decimal(str(i["monthly"])) for i in member.get("incomes") or [] if i.get("kind") == "wage"), Decimal(0))


def new_wage_earners(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """Members (by ref) who had no wage in the household as last decided and have one now: people who found
    work (就业). A person who joined the household with a wage is not among them: they brought it."""
    earlier = {m["ref"]: m for m in before.get("members") or []}
    return [
        m["ref"]
        for m in after.get("members") or []
        if m["ref"] in earlier and wage_of(earlier[m["ref"]]) == 0 and wage_of(m) > 0
    ]


def without_wages(household: dict[str, Any], refs: list[str]) -> dict[str, Any]:
    """The household as it would be had these members not found work: their wages taken out."""
    members = [
        {**m, "incomes": [i for i in m.get("incomes") or [] if i.get("kind") != "wage"]} if m["ref"] in refs else m
        for m in household.get("members") or []
    ]
    return {**household, "members": members}
