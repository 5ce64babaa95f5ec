"""Events intake publishes on `intake.application`."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.contracts.base import Event, Money

Relationship = Literal["applicant", "spouse", "child", "parent", "sibling", "grandparent", "grandchild", "other"]
MemberStatus = Literal["ordinary", "imprisoned", "compulsory_rehab", "missing", "religious_detached"]
IncomeKind = Literal[
    "wage",
    "business",
    "property",
    "pension",
    "support_received",
    "unemployment_benefit",
    "family_planning_award",
    "social_assistance",
    "basic_pension_base",
    "preferential_care",
    "scholarship",
    "heroism_award",
    "other",
]
Channel = Literal["window", "advisor", "online", "discovery"]
# Services a household can be referred to (referral's service referrals), besides money.
ServiceKind = Literal["counselling", "shelter"]
Programme = Literal[
    "subsistence_allowance", "low_income_margin", "expenditure_hardship", "temporary_aid", "extreme_poverty"
]
ZERO = Decimal("0.00")
PROGRAMMES: tuple[str, ...] = Programme.__args__  # type: ignore[attr-defined]


class _Facts(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


DisabilityKind = Literal["physical", "intellectual", "mental", "visual", "hearing", "speech", "multiple"]
Education = Literal["none", "compulsory", "high_school", "vocational", "undergraduate", "postgraduate"]
EmergencyKind = Literal["fire", "traffic_accident", "sudden_illness", "disaster", "other"]


class Disability(_Facts):
    kind: DisabilityKind
    grade: int = Field(ge=1, le=4)


class Supporter(_Facts):
    birth_date: date
    receives_subsistence_allowance: bool = False
    extreme_poverty: bool = False
    monthly_income: Money = ZERO


class Income(_Facts):
    kind: IncomeKind
    monthly: Money


class MemberFacts(_Facts):
    """A member as the rules see them: no name and no ID number travel in events."""

    ref: str = Field(min_length=1, max_length=40)
    # The pseudonymous key a verification source finds the person by (shared.pii.person_key); set by intake.
    person_key: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    relationship: Relationship
    birth_date: date
    hukou_region: str = Field(pattern=r"^\d{6}$")
    residence_permit_region: str | None = Field(default=None, pattern=r"^\d{6}$")
    status: MemberStatus = "ordinary"
    disability: Disability | None = None
    serious_illness: bool = False
    education: Education = "none"
    supporters: list[Supporter] = Field(default_factory=list, max_length=20)
    incomes: list[Income] = Field(default_factory=list, max_length=50)


class Assets(_Facts):
    monetary: Money = ZERO
    private_cars: int = Field(default=0, ge=0)
    non_residential_properties: int = Field(default=0, ge=0)
    homes: int = Field(default=0, ge=0)
    home_floor_area_m2: Money | None = None


class Expenditures(_Facts):
    medical_monthly: Money = ZERO
    education_monthly: Money = ZERO
    other_rigid_monthly: Money = ZERO


class Emergency(_Facts):
    kind: EmergencyKind
    occurred_on: date
    region: str = Field(pattern=r"^\d{6}$")


class HouseholdFacts(_Facts):
    members: list[MemberFacts] = Field(min_length=1, max_length=30)
    assets: Assets = Field(default_factory=Assets)
    expenditures: Expenditures = Field(default_factory=Expenditures)
    emergency: Emergency | None = None


class ApplicationSubmitted(Event):
    event_type = "intake.application.submitted"

    case_id: str
    region: str
    street: str | None = None
    community: str | None = None
    channel: Channel
    programmes: list[Programme]
    household: HouseholdFacts
    submitted_at: date
    payee_account: str | None = None
    # Who filed it (the token's subject): they may not approve its determinations (maker-checker).
    filed_by: str = ""
    # The lead (政策找人) an advisor's visit turned into this application, if any.
    lead_id: str | None = None
    # Services the household asked for at application (counselling during verification, shelter); referral
    # refers it to a provider of each.
    services_requested: list[ServiceKind] = []
    # The household agreed that a charity which takes on one of its needs may have the applicant's name and
    # phone from intake (never from this event: no contact data travels here). Separate from, and not implied
    # by, the consent to economic verification every application carries.
    charity_contact_consent: bool = False


class ApplicationWithdrawn(Event):
    """The household withdrew its application, or asked to leave assistance: what is still open is not
    decided, and monthly aid stops after the month of withdrawal."""

    event_type = "intake.application.withdrawn"

    case_id: str
    region: str
    withdrawn_on: date


class ContactConsentWithdrawn(Event):
    """The household withdrew its consent to share its contact details with a charity that takes on its need:
    intake discloses them to nobody from now on (what was disclosed before stays in intake's audit log)."""

    event_type = "intake.application.consent_withdrawn"

    case_id: str
    region: str
    withdrawn_at: datetime


class ApplicationReviewed(Event):
    """The street office reviewed an approved household (on schedule, or because a change was reported):
    its facts as found now (members with their person keys, people who joined included, people who left
    gone), for eligibility to verify against its sources and evaluate again."""

    event_type = "intake.application.reviewed"

    case_id: str
    region: str
    household: HouseholdFacts
    reviewed_on: date
    kind: Literal["scheduled", "change_reported"] = "scheduled"
    # Members (by ref) who joined the household since the case's last facts, and who left it: `household`
    # already holds the new membership; these say what changed, for the reasons of the decision.
    joined: list[str] = []
    left: list[str] = []


SignalKind = Literal[
    "hospitalisation",
    "medical_bill",
    "unemployment",
    "disability_registration",
    "disaster",
    "utility_arrears",
    "earner_death",
    "prison_release",
]


class SignalReceived(Event):
    """Another department's signal about a person, matched to the household intake knows (`case_id` and its
    facts, and the member it names) or to none (`household_key` then stands for the person's household).
    No name or ID number travels here."""

    event_type = "intake.signal.received"

    signal_id: str
    source: str
    kind: SignalKind
    region: str
    community: str | None = None
    occurred_on: date
    amount: Money | None = None
    household_key: str
    case_id: str | None = None
    case_status: str | None = None
    member_ref: str | None = None
    household: HouseholdFacts | None = None
