"""Every event type, by its CloudEvents `type`: what a consumer parses a payload into."""

from __future__ import annotations

from shared.contracts import disbursement, eligibility, intake, referral
from shared.contracts.base import Event

EVENT_TYPES: dict[str, type[Event]] = {
    model.event_type: model
    for model in (
        intake.ApplicationSubmitted,
        intake.ApplicationWithdrawn,
        intake.ApplicationReviewed,
        intake.ContactConsentWithdrawn,
        intake.SignalReceived,
        eligibility.VerificationCompleted,
        eligibility.VerificationDelayed,
        eligibility.DeterminationProposed,
        eligibility.DeterminationNoticed,
        eligibility.DeterminationObjected,
        eligibility.DeterminationApproved,
        eligibility.DeterminationDenied,
        eligibility.DeterminationWithdrawn,
        eligibility.DeterminationStopped,
        eligibility.DeterminationReviewed,
        eligibility.DeterminationConfirmed,
        eligibility.DeterminationFlagged,
        eligibility.DeterminationChanged,
        eligibility.LeadQualified,
        disbursement.PaymentInstructed,
        disbursement.PaymentSettled,
        disbursement.PaymentFailed,
        disbursement.PaymentReturned,
        disbursement.PaymentCancelled,
        disbursement.RecoveryOpened,
        disbursement.RecoveryClosed,
        disbursement.MismatchFlagged,
        referral.NeedPublished,
        referral.NeedClaimed,
        referral.NeedMatched,
        referral.NeedDelivered,
        referral.ServiceReferred,
        referral.ServiceAccepted,
        referral.ServiceDeclined,
        referral.ServiceCompleted,
        referral.ServiceMissed,
    )
}
