"""Events disbursement publishes on `disbursement.payment`."""

from __future__ import annotations

from shared.contracts.base import Event, Money


class _Payment(Event):
    case_id: str
    payment_id: str
    determination_id: str
    programme: str
    period: str
    amount: Money


class PaymentInstructed(_Payment):
    """A payment instruction now exists and will be sent to the bank."""

    event_type = "disbursement.payment.instructed"


class PaymentSettled(_Payment):
    event_type = "disbursement.payment.settled"

    bank_reference: str


class PaymentFailed(_Payment):
    event_type = "disbursement.payment.failed"

    reason: str


class PaymentReturned(_Payment):
    event_type = "disbursement.payment.returned"

    reason: str
