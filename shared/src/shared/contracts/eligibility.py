"""Events eligibility publishes on `eligibility.verification` and `eligibility.determination`."""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict

from shared.contracts.base import Event, Money
from shared.contracts.intake import Programme


class Reason(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")
    code: str
    text: str = ""
    source: str = ""


class VerificationCompleted(Event):
    event_type = "eligibility.verification.completed"

    case_id: str
    verification_id: str
    sources: list[str]
    counted_members: int
    counted_monthly_income: Money
    per_capita_monthly_income: Money
    discrepancies: list[str] = []


class _Determination(Event):
    case_id: str
    determination_id: str
    programme: Programme
    region: str
    decided_on: date
    monthly_amount: Money | None = None
    amount: Money | None = None
    reasons: list[Reason] = []
    rule: str = ""


class DeterminationProposed(_Determination):
    event_type = "eligibility.determination.proposed"


class DeterminationApproved(_Determination):
    event_type = "eligibility.determination.approved"

    payment_kind: Literal["monthly", "one_off", "none"] = "monthly"
    payee_account: str | None = None


class DeterminationDenied(_Determination):
    event_type = "eligibility.determination.denied"
