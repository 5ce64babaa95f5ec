"""Events eligibility publishes on `eligibility.verification` and `eligibility.determination`."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

from shared.contracts.base import Event, Money
from shared.contracts.intake import Programme


class Reason(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")
    code: str
    text: str = ""
    source: str = ""


class SourceEvidence(BaseModel):
    """What one verification source said: how fresh its data is and how many members it knew."""

    model_config = ConfigDict(frozen=True, extra="ignore")
    source: str
    data_as_of: date | None = None
    members_found: int = 0


class Difference(BaseModel):
    """A figure the household declared that a source verified differently; the verified figure counts."""

    model_config = ConfigDict(frozen=True, extra="ignore")
    member: str | None = None  # the member's ref; None for the household's assets
    field: str
    declared: str
    verified: str
    source: str


# What a means test was run for: the application, or a review of a household receiving aid.
VerificationKind = Literal["application", "review"]


class VerificationCompleted(Event):
    event_type = "eligibility.verification.completed"

    case_id: str
    verification_id: str
    sources: list[str]
    counted_members: int
    counted_monthly_income: Money
    per_capita_monthly_income: Money
    discrepancies: list[str] = []
    evidence: list[SourceEvidence] = []
    differences: list[Difference] = []
    kind: VerificationKind = "application"
    # The review it was run for (kind `review`).
    reviewed_on: date | None = None


class VerificationDelayed(Event):
    """A verification source could not answer: the case waits (it is neither approved nor denied) and is
    tried again from `next_attempt_at`. For a review (`kind` review), the aid goes on unchanged meanwhile:
    nothing is stopped or changed on figures nobody could verify."""

    event_type = "eligibility.verification.delayed"

    case_id: str
    reason: str
    sources_down: list[str]
    attempts: int
    next_attempt_at: datetime
    kind: VerificationKind = "application"
    reviewed_on: date | None = None


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
    """A street office's proposal, waiting for an officer: to grant (`outcome` grant, with the amount) or to
    refuse (`outcome` deny, with the reasons)."""

    event_type = "eligibility.determination.proposed"

    outcome: Literal["grant", "deny"] = "grant"
    # The whole procedure is due by this date (30 working days from acceptance; S5 第二十二条).
    decision_due: date | None = None


class DeterminationNoticed(_Determination):
    """An officer approved the proposal: it is under public notice (公示) until `notice_ends_on`; an objection
    during it sends the case back to review."""

    event_type = "eligibility.determination.noticed"

    notice_ends_on: date


class DeterminationObjected(_Determination):
    """An objection was filed during public notice: the determination is back in review (no free text here:
    what the objection says stays in eligibility)."""

    event_type = "eligibility.determination.objected"

    objections: int = 1


class AidGap(BaseModel):
    """A necessary cost the approved monthly aid leaves uncovered (eligibility's gaps.py): `monthly_amount`
    short of the standard a month, in a charity category (medical, education, food), and why in words."""

    model_config = ConfigDict(frozen=True, extra="ignore")
    category: str
    monthly_amount: Money
    reason: str = ""


class DeterminationApproved(_Determination):
    event_type = "eligibility.determination.approved"

    payment_kind: Literal["monthly", "one_off", "none"] = "monthly"
    payee_account: str | None = None
    # Paid as an advance: an emergency's "aid first" amount granted before verification finished (S8);
    # verification then confirms it (`confirmed`) or flags it for recovery (`flagged`).
    advance: bool = False
    # Monthly aid is reviewed by this date (yearly; every 6 months with unstable income; S5 第三十一条).
    review_due: date | None = None
    # What the monthly aid leaves uncovered of the household's necessary costs, for referral to publish as
    # needs to charities (none when it covers them, and for aid not paid monthly).
    gaps: list[AidGap] = []


class DeterminationDenied(_Determination):
    event_type = "eligibility.determination.denied"

    # Written notice of the refusal, with reasons, is due by this date (3 working days; S5 第二十一条).
    notice_due: date | None = None
    # What kind of help the household's situation points to, for referral to charities (most specific
    # first, `food` last): medical, disability, education, elderly, children, housing, food.
    need_categories: list[str] = []


class DeterminationWithdrawn(_Determination):
    """The applicant withdrew before the determination was final: it will not be decided."""

    event_type = "eligibility.determination.withdrawn"


class DeterminationStopped(_Determination):
    """An approved monthly determination ends: nothing is paid for periods after `last_period` (YYYY-MM).
    Usually the month of the decision; after a member found work, the last month of the phase-out (渐退期),
    months ahead: the aid is paid, unchanged, until then (the reasons say so)."""

    event_type = "eligibility.determination.stopped"

    last_period: str


class DeterminationConfirmed(_Determination):
    """Verification, finished after an emergency's "aid first" amount was granted and paid, supports the
    grant: it stands."""

    event_type = "eligibility.determination.confirmed"


class DeterminationFlagged(_Determination):
    """Verification, finished after an emergency's "aid first" amount was granted and paid, does not
    support the grant: the amount paid is flagged for an officer to decide whether it is recovered
    (`recoverable_amount`), with the reasons the verified figures give."""

    event_type = "eligibility.determination.flagged"

    recoverable_amount: Money


class DeterminationReviewed(_Determination):
    """A review found the household still eligible: the aid goes on and the next review is due by
    `review_due`. `finding` says whether the amount the rules give now differs from the one paid
    (`proposed_monthly_amount`); a difference is applied by the `changed` event that follows."""

    event_type = "eligibility.determination.reviewed"

    reviewed_on: date
    review_due: date
    finding: Literal["unchanged", "amount_differs"] = "unchanged"
    proposed_monthly_amount: Money | None = None


class DeterminationChanged(_Determination):
    """The monthly amount changes from `from_period` (YYYY-MM) on; `monthly_amount` is the new amount."""

    event_type = "eligibility.determination.changed"

    previous_monthly_amount: Money
    from_period: str


class LeadQualified(Event):
    """A household that may qualify, found by a signal (or a sweep): an advisor should visit. `programmes`
    are those the rules say it may now qualify for ([] when the household is not known: the visit finds
    out); `evidence` says why, in words."""

    event_type = "eligibility.lead.qualified"

    lead_id: str
    signal_id: str | None = None
    household_key: str
    case_id: str | None = None
    region: str
    community: str | None = None
    programmes: list[Programme] = []
    evidence: list[str] = []
    found_on: date
