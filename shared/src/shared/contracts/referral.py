"""Events referral publishes on `referral.need`."""

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


class NeedClaimed(Event):
    """A charity took the need on (within its categories, areas and capacity)."""

    event_type = "referral.need.claimed"

    case_id: str
    need_id: str
    organisation: str


class NeedDelivered(Event):
    """The charity says the help was given."""

    event_type = "referral.need.delivered"

    case_id: str
    need_id: str
    organisation: str
    amount: Money | None = None
