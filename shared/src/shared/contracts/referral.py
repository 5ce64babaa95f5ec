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
