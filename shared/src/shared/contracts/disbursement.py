"""Events disbursement publishes on `disbursement.payment`."""

from __future__ import annotations

from typing import Literal

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


class PaymentCancelled(_Payment):
    """An instruction that never reached the bank is cancelled: its entitlement stopped before its period."""

    event_type = "disbursement.payment.cancelled"

    reason: str


class RecoveryOpened(_Payment):
    """Verification did not support an advance ("aid first") the bank already had: its amount is owed back
    until an officer records it recovered or waived (上海市社会救助条例 第五十四条)."""

    event_type = "disbursement.payment.recovery_opened"

    reason: str


class RecoveryClosed(_Payment):
    """An advance under recovery is settled: repaid (`recovered`), written off by an officer (`waived`), or
    never paid after all (`not_paid`: the bank failed it). `amount` is what was recovered or written off."""

    event_type = "disbursement.payment.recovery_closed"

    outcome: Literal["recovered", "waived", "not_paid"]
    note: str = ""


class MismatchFlagged(Event):
    """Nightly reconciliation found the ledger, the bank's statement and the entitlements disagreeing."""

    event_type = "disbursement.reconciliation.flagged"

    case_id: str
    reconciliation_date: str
    kind: str  # missing_at_bank | missing_in_ledger | amount_differs | due_unpaid | advance_undecided
    payment_id: str | None = None
    entitlement_id: str | None = None
    detail: str = ""
