"""Disbursement's use cases; the entrypoint commits."""

from __future__ import annotations

import uuid

from sqlalchemy import select

from disbursement import domain
from disbursement.callbacks import PaymentNotFound
from disbursement.models import Entitlement, EntitlementAmount, Payment
from shared.auth import Principal
from shared.authz import region_clause
from shared.contracts.disbursement import (
    PaymentCancelled,
    PaymentInstructed,
)
from shared.contracts.eligibility import DeterminationApproved, DeterminationChanged, DeterminationStopped
from shared.db.base import utcnow
from shared.db.uow import UnitOfWork
from shared.ids import new_id
from shared.logging import get_logger

log = get_logger(__name__)


async def open_entitlement(uow: UnitOfWork, approved: DeterminationApproved) -> None:
    """An approved determination opens an entitlement and instructs its first payment at once: a one-off
    or an advance is paid now, and a monthly allowance's first month does not wait for the month's run (the
    run skips what is instructed). An emergency's "aid first" amount granted before verification finished is
    an advance (advances.py)."""
    if approved.payment_kind == "none":
        return
    amount = approved.monthly_amount if approved.payment_kind == "monthly" else approved.amount
    if amount is None or amount <= 0:
        return
    now = utcnow()
    entitlement = Entitlement(
        entitlement_id=str(uuid.uuid4()),
        determination_id=approved.determination_id,
        case_id=approved.case_id,
        programme=approved.programme,
        region=approved.region,
        kind="advance" if approved.advance else approved.payment_kind,
        amount=amount,
        first_period=domain.first_period(approved.decided_on),
        payee_account=approved.payee_account or "",
        status="active",
        advance_status="open" if approved.advance else None,
        created_at=now,
    )
    held = not approved.payee_account
    payment = Payment(
        payment_id=new_id(),
        entitlement_id=entitlement.entitlement_id,
        case_id=approved.case_id,
        period=entitlement.first_period,
        amount=amount,
        status="held" if held else "pending",
        attempts=0,
        last_error="no payee account on the application" if held else None,
        created_at=now,
        updated_at=now,
    )
    uow.session.add(entitlement)
    await uow.session.flush()
    uow.session.add(payment)
    await uow.session.flush()
    if not held:
        await uow.outbox.add(
            PaymentInstructed(
                case_id=payment.case_id,
                payment_id=payment.payment_id,
                determination_id=approved.determination_id,
                programme=approved.programme,
                period=payment.period,
                amount=amount,
            ),
            key=payment.case_id,
        )


async def stop_entitlement(uow: UnitOfWork, stopped: DeterminationStopped) -> None:
    """A stopped determination ends its entitlement after `last_period`: later instructions that never
    reached the bank are cancelled; what the bank already has stands (a return, if any, comes back by the
    bank's word)."""
    entitlement = (
        await uow.session.execute(
            select(Entitlement).where(Entitlement.determination_id == stopped.determination_id).with_for_update()
        )
    ).scalar_one_or_none()
    if entitlement is None:  # nothing was ever payable (an approval with nothing to pay)
        return
    entitlement.status = "stopped"
    entitlement.last_period = stopped.last_period
    later = (
        (
            await uow.session.execute(
                select(Payment).where(
                    Payment.entitlement_id == entitlement.entitlement_id,
                    Payment.period > stopped.last_period,
                    Payment.status.in_(("pending", "held")),
                )
            )
        )
        .scalars()
        .all()
    )
    now = utcnow()
    for payment in later:
        payment.status = "cancelled"
        payment.last_error = f"entitlement stopped after {stopped.last_period}"
        payment.updated_at = now
        await uow.outbox.add(
            PaymentCancelled(
                case_id=payment.case_id,
                payment_id=payment.payment_id,
                determination_id=entitlement.determination_id,
                programme=entitlement.programme,
                period=payment.period,
                amount=payment.amount,
                reason=payment.last_error,
            ),
            key=payment.case_id,
        )
    log.info("entitlement_stopped", entitlement_id=entitlement.entitlement_id, cancelled=len(later))


async def change_entitlement(uow: UnitOfWork, changed: DeterminationChanged, event_id: str) -> None:
    """The monthly amount changes from a period on: later payment runs use it, and instructions for those
    periods that have not reached the bank are amended. What the bank already has stands."""
    entitlement = (
        await uow.session.execute(
            select(Entitlement).where(Entitlement.determination_id == changed.determination_id).with_for_update()
        )
    ).scalar_one_or_none()
    if entitlement is None or changed.monthly_amount is None:
        return
    existing = await uow.session.get(EntitlementAmount, (entitlement.entitlement_id, changed.from_period))
    if existing is None:
        uow.session.add(
            EntitlementAmount(
                entitlement_id=entitlement.entitlement_id,
                from_period=changed.from_period,
                amount=changed.monthly_amount,
                determination_event_id=event_id,
                created_at=utcnow(),
            )
        )
    else:
        existing.amount = changed.monthly_amount
    unsent = (
        (
            await uow.session.execute(
                select(Payment).where(
                    Payment.entitlement_id == entitlement.entitlement_id,
                    Payment.period >= changed.from_period,
                    Payment.status.in_(("pending", "held")),
                )
            )
        )
        .scalars()
        .all()
    )
    for payment in unsent:
        payment.amount = changed.monthly_amount
        payment.updated_at = utcnow()
    log.info("entitlement_changed", entitlement_id=entitlement.entitlement_id, amended=len(unsent))


async def get_payment(uow: UnitOfWork, payment_id: str, principal: Principal) -> Payment:
    payment = (
        await uow.session.execute(
            select(Payment)
            .join(Entitlement, Entitlement.entitlement_id == Payment.entitlement_id)
            .where(Payment.payment_id == payment_id, region_clause(principal, Entitlement.region))
        )
    ).scalar_one_or_none()
    if payment is None:
        raise PaymentNotFound(f"No payment {payment_id}.")
    return payment
