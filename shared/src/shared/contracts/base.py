from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, PlainSerializer

CENT = Decimal("0.01")


def _to_money(value: Any) -> Any:
    if isinstance(value, float):
        raise ValueError("money must be a string with two decimals, not a float")
    if isinstance(value, str | int | Decimal):
        try:
            amount = Decimal(str(value))
        except ArithmeticError:
            raise ValueError("not a decimal amount") from None
        if not amount.is_finite():
            raise ValueError("not a finite amount")
        if amount != amount.quantize(CENT):
            raise ValueError("at most two decimal places (fen)")
        if amount < 0:
            raise ValueError("must not be negative")
        return amount.quantize(CENT)
    return value


def money_str(amount: Decimal) -> str:
    return str(amount.quantize(CENT, rounding=ROUND_HALF_UP))


# Yuan as Decimal in code, a two-decimal string in JSON, never a float.
Money = Annotated[Decimal, BeforeValidator(_to_money), PlainSerializer(money_str, return_type=str)]


class Event(BaseModel):
    """An event payload. Readers are tolerant (unknown fields ignored); payloads are immutable."""

    model_config = ConfigDict(frozen=True, extra="ignore")
    event_type: ClassVar[str]
