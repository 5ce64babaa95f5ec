"""HTTP shapes of intake (request bodies refuse unknown fields, so a misspelt field is an error, not lost)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from intake.domain import id_number_problem
from shared.contracts.base import Money
from shared.contracts.intake import (
    Assets,
    Channel,
    Emergency,
    Expenditures,
    HouseholdFacts,
    MemberFacts,
    Programme,
    ServiceKind,
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MemberCreate(MemberFacts):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=50)
    id_number: str
    person_key: None = Field(default=None, description="set by intake from the ID number; not to be sent")

    @field_validator("id_number")
    @classmethod
    def _valid_id(cls, value: str) -> str:
        value = value.strip().upper()
        problem = id_number_problem(value)
        if problem:
            raise ValueError(problem)
        return value


class HouseholdCreate(_Strict):
    members: list[MemberCreate] = Field(min_length=1, max_length=30)
    assets: Assets = Field(default_factory=Assets)
    expenditures: Expenditures = Field(default_factory=Expenditures)

    @model_validator(mode="after")
    def _unique_members(self) -> HouseholdCreate:
        refs = [m.ref for m in self.members]
        if len(set(refs)) != len(refs):
            raise ValueError("member refs must be unique")
        ids = [m.id_number for m in self.members]
        if len(set(ids)) != len(ids):
            raise ValueError("the same ID number appears twice")
        return self


class Consent(_Strict):
    economic_verification: bool
    # Optional and separate: whether a charity that takes on the household's need may have the applicant's
    # name and phone (from intake, over HTTP, and only while it holds the need). No by default.
    charity_contact: bool = Field(
        default=False,
        description="the household agrees that a charity taking on its need may have the applicant's name and phone",
    )

    @field_validator("economic_verification")
    @classmethod
    def _given(cls, value: bool) -> bool:
        if not value:
            raise ValueError("consent to economic verification is required to apply")
        return value


class ApplicationCreate(_Strict):
    region: str = Field(pattern=r"^\d{6}$")
    street: str | None = Field(default=None, pattern=r"^\d{9}$|^\d{12}$")
    community: str | None = Field(default=None, pattern=r"^\d{12}$|^\d{15}$")
    channel: Channel
    programmes: list[Programme] | None = Field(default=None, min_length=1)
    household: HouseholdCreate
    consent: Consent
    emergency: Emergency | None = None
    payee_account: str | None = Field(default=None, pattern=r"^\d{8,30}$")
    # The lead an advisor's visit came from (政策找人): the application is then of channel `discovery`.
    lead_id: str | None = Field(default=None, min_length=1, max_length=36)
    # Services the household asks for besides money: counselling during verification, shelter. Referral
    # refers it to a provider of each (and does so unasked after an emergency, or for a household with no
    # local hukou or residence permit).
    services_requested: list[ServiceKind] = Field(default_factory=list, max_length=2)
    # How the household may be reached (stored encrypted; given to a charity only with its consent).
    contact_phone: str | None = Field(default=None, pattern=r"^\+?[0-9][0-9 -]{4,19}$")

    @model_validator(mode="after")
    def _discovery_has_a_lead(self) -> ApplicationCreate:
        if self.lead_id is not None and self.channel != "discovery":
            raise ValueError("an application from a lead has channel 'discovery'")
        return self


class ApplicationRead(BaseModel):
    case_id: str
    status: str
    region: str
    channel: str
    programmes: list[str]
    created_at: datetime


class MemberRead(BaseModel):
    ref: str
    name: str
    id_number: str
    relationship: str
    # When a review recorded the person joining (none: on the application) or leaving the household.
    joined_on: date | None = None
    left_on: date | None = None


class DeterminationRead(BaseModel):
    determination_id: str
    programme: str
    status: str
    monthly_amount: Money | None = None
    amount: Money | None = None
    decided_on: date | None = None
    reasons: list[dict[str, Any]]
    rule: str
    # The procedure: decision due (30 working days from acceptance), the end of public notice, the date
    # written notice of a refusal is due; `overdue` once the decision is late.
    decision_due: date | None = None
    notice_ends_on: date | None = None
    notice_due: date | None = None
    overdue: bool = False
    # Approved monthly aid: the next review is due by this date.
    review_due: date | None = None
    # Stopped monthly aid: paid through this month (YYYY-MM), then no more; months ahead during a phase-out
    # after employment (the reasons say so).
    last_period: str | None = None


class PaymentRead(BaseModel):
    payment_id: str
    determination_id: str
    programme: str
    period: str
    amount: Money
    status: str
    bank_reference: str | None = None
    reason: str | None = None


class ReferralRead(BaseModel):
    """A charity need (`charity_need`), a charity's offer an advisor matched to the case (`charity_offer`), or
    a service referral (`service`: category counselling or shelter)."""

    referral_id: str
    kind: str
    category: str
    area: str
    status: str
    amount: Money | None = None
    # The charity or provider that has it (none until a charity claims a need, or when no provider covers
    # a service referral's area); why it was made; what came of it, in the provider's words.
    organisation: str | None = None
    reason: str = ""
    outcome: str = ""


class DisclosureRead(BaseModel):
    need_id: str
    organisation: str
    disclosed_at: datetime


class CharityContactRead(BaseModel):
    """The household's consent to share its contact details with a charity holding its need, and to whom
    they have been given."""

    consented: bool = False
    withdrawn_at: datetime | None = None
    disclosures: list[DisclosureRead] = []


class CaseRead(BaseModel):
    case_id: str
    status: str
    region: str
    street: str | None
    community: str | None
    channel: str
    programmes: list[str]
    submitted_on: date
    created_at: datetime
    updated_at: datetime
    # The latest means test (the application's, or a review's: `kind`, `reviewed_on`): {"status":
    # "completed", sources, evidence, differences} or {"status": "delayed", reason, sources_down,
    # next_attempt_at}; null until eligibility has started on it.
    verification: dict[str, Any] | None = None
    members: list[MemberRead]
    determinations: list[DeterminationRead]
    payments: list[PaymentRead]
    referrals: list[ReferralRead]
    contact_phone: str | None = None
    charity_contact: CharityContactRead = Field(default_factory=CharityContactRead)


class TimelineEntry(BaseModel):
    event_id: str
    type: str
    source: str
    time: datetime
    summary: dict[str, Any]


class TimelineRead(BaseModel):
    case_id: str
    events: list[TimelineEntry]


class CaseSummary(BaseModel):
    """A worklist row: where the case is and how far it has got, no personal data."""

    case_id: str
    status: str
    region: str
    street: str | None
    community: str | None
    channel: str
    programmes: list[str]
    submitted_on: date
    created_at: datetime
    updated_at: datetime


class CasePage(BaseModel):
    items: list[CaseSummary]
    # Pass as `cursor` for the next page; null on the last page.
    next_cursor: str | None


class Withdrawal(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=500, description="In the household's words, as recorded")


class ReviewMember(MemberFacts):
    """A member as the review found them. Someone already on the case is named by their ref (their name and
    ID number may be repeated, and must then be theirs); a person who has joined the household comes with a
    new ref, their name and ID number, checked exactly as at application."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = Field(default=None, min_length=1, max_length=50)
    id_number: str | None = None
    person_key: None = Field(default=None, description="set by intake from the ID number on the case; not to be sent")

    @field_validator("id_number")
    @classmethod
    def _valid_id(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip().upper()
        problem = id_number_problem(value)
        if problem:
            raise ValueError(problem)
        return value


class ReviewHousehold(HouseholdFacts):
    """The household as the review found it. A member on the case whose ref is missing has left it."""

    members: list[ReviewMember] = Field(min_length=1, max_length=30)  # type: ignore[assignment]

    @model_validator(mode="after")
    def _unique_members(self) -> ReviewHousehold:
        refs = [m.ref for m in self.members]
        if len(set(refs)) != len(refs):
            raise ValueError("member refs must be unique")
        ids = [m.id_number for m in self.members if m.id_number]
        if len(set(ids)) != len(ids):
            raise ValueError("the same ID number appears twice")
        return self


class Review(BaseModel):
    """The household as the review found it, as the rules see it: members on the case by their refs; a person
    who joined with a new ref, name and ID number; a member left out has left the household."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["scheduled", "change_reported"] = "scheduled"
    household: ReviewHousehold
