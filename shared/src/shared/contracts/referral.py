"""Events referral publishes on `referral.need` and `referral.service`."""

from __future__ import annotations

from shared.contracts.base import Event, Money


class NeedPublished(Event):
    event_type = "referral.need.published"

    case_id: str
    need_id: str
    category: str
    area: str
    amount: Money | None = None
    reason: str = ""
    # The household agreed that the charity taking this need on may have its contact details from intake
    # (`GET /v1/needs/{need_id}/contact` there). No contact data travels here.
    consented: bool = False


class NeedClaimed(Event):
    """A charity took the need on (within its categories, areas and capacity)."""

    event_type = "referral.need.claimed"

    case_id: str
    need_id: str
    organisation: str


class NeedMatched(Event):
    """An advisor or officer matched a charity's offer to the case (two-way claiming): the case has a need in
    the offer's category, claimed by the offering charity, which then delivers it like any claimed need. The
    need may be one a denial published (it is then claimed) or a new one."""

    event_type = "referral.need.matched"

    case_id: str
    need_id: str
    offer_id: str
    organisation: str
    category: str
    area: str
    amount: Money | None = None
    consented: bool = False


class NeedDelivered(Event):
    """The charity says the help was given."""

    event_type = "referral.need.delivered"

    case_id: str
    need_id: str
    organisation: str
    amount: Money | None = None
    # The charity's feedback on what it did (no personal data: it is shown on the case).
    note: str = ""


class _ServiceReferral(Event):
    case_id: str
    referral_id: str
    # counselling | shelter (a string, so a reader does not fail on a kind added later)
    kind: str
    organisation: str | None = None


class ServiceReferred(_ServiceReferral):
    """The household is referred for a service (counselling during verification; shelter for people with
    neither a local hukou nor a local residence permit). `organisation` is the provider it was referred to,
    None when no registered provider of that kind covers the area; `reason` says why it was referred."""

    event_type = "referral.service.referred"

    area: str
    reason: str = ""


class ServiceAccepted(_ServiceReferral):
    """The provider took the referral on."""

    event_type = "referral.service.accepted"

    note: str = ""


class ServiceDeclined(_ServiceReferral):
    """The provider could not take the referral on."""

    event_type = "referral.service.declined"

    note: str = ""


class ServiceCompleted(_ServiceReferral):
    """The service was given; `outcome` is the provider's short account of it (not case notes)."""

    event_type = "referral.service.completed"

    outcome: str = ""


class ServiceMissed(_ServiceReferral):
    """The household did not come (no-show)."""

    event_type = "referral.service.missed"

    note: str = ""
