"""How an engine result becomes a determination: which amount, which payment, which reasons."""

from __future__ import annotations

from dataclasses import dataclass
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
