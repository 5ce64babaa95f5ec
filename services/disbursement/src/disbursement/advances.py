"""Advances: an emergency's "aid first" amount, paid before verification finished (临时救助 先行救助, S8).

Verification then confirms the advance (it becomes an ordinary benefit) or does not support it: what the
bank paid is owed back (上海市社会救助条例 第五十四条) until an officer records it recovered or waived.
The money's place in the ledger follows (ledger.py): `advances_outstanding` while open, `benefits_paid` once
confirmed or waived, `recoveries_receivable` while owed. What is owed is always read from the ledger, never
kept beside it, so a bank that fails, returns or settles the advance late cannot make the two disagree.

    open ──confirmed──▶ confirmed
      │ ──flagged, never reached the bank──▶ cancelled (the instruction is cancelled)
      └──flagged, the bank has it──▶ recovery ──▶ recovered | waived | not_paid (the bank failed it)
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal

from sqlalchemy import select

from disbursement import ledger
from disbursement.models import Entitlement, Payment
from shared.auth import Principal
from shared.authz import region_clause
from shared.contracts.disbursement import PaymentCancelled, RecoveryClosed, RecoveryOpened
from shared.contracts.eligibility import DeterminationConfirmed, DeterminationFlagged
from shared.db.base import utcnow
from shared.db.uow import UnitOfWork
from shared.errors import Conflict, NotFound
from shared.logging import get_logger

log = get_logger(__name__)

NOT_SUPPORTED = "verification did not support the aid paid first"


class AdvanceNotFound(NotFound):
    title = "Advance not found"


async def _advance(uow: UnitOfWork, determination_id: str, principal: Principal | None = None) -> Any:
    """The advance entitlement of a determination and its one payment, locked; None when there is none."""
    statement = (
        select(Entitlement, Payment)
        .join(Payment, Payment.entitlement_id == Entitlement.entitlement_id)
        .where(Entitlement.determination_id == determination_id, Entitlement.kind == "advance")
        .with_for_update()
    )
    if principal is not None:
        statement = statement.where(region_clause(principal, Entitlement.region))
    return (await uow.session.execute(statement)).first()


def _common(payment: Payment, entitlement: Entitlement) -> dict[str, Any]:
    return {
        "case_id": payment.case_id,
        "payment_id": payment.payment_id,
        "determination_id": entitlement.determination_id,
        "programme": entitlement.programme,
        "period": payment.period,
        "amount": payment.amount,
    }


async def _move(
    uow: UnitOfWork, kind: str, payment: Payment, entitlement: Entitlement, source: str, target: str, why: str
) -> Decimal:
    """Move whatever of this payment sits in `source` to `target`; returns the amount moved."""
    held = await ledger.account_balance(uow.session, source, payment.payment_id)
    if held > 0:
        await ledger.post(
            uow.session, kind, payment, entitlement, debit=target, credit=source, amount=held, description=why
        )
    return held


async def confirm(uow: UnitOfWork, confirmed: DeterminationConfirmed) -> None:
    """Verification supports the advance: it is a benefit like any other from now on."""
    found = await _advance(uow, confirmed.determination_id)
    if found is None or found.Entitlement.advance_status != "open":
        return  # not an advance (granted after verification), or already settled by an earlier word
    entitlement, payment = found
    await _move(
        uow,
        "reclassification",
        payment,
        entitlement,
        ledger.ADVANCES_OUTSTANDING,
        ledger.BENEFITS_PAID,
        "advance confirmed by verification",
    )
    entitlement.advance_status = "confirmed"
    log.info("advance_confirmed", determination_id=entitlement.determination_id)


async def flag(uow: UnitOfWork, flagged: DeterminationFlagged) -> None:
    """Verification does not support the advance. An instruction the bank never had is cancelled; what the
    bank has (or has paid) is owed back."""
    found = await _advance(uow, flagged.determination_id)
    if found is None or found.Entitlement.advance_status != "open":
        return
    entitlement, payment = found
    if payment.status in ("pending", "held"):
        payment.status = "cancelled"
        payment.last_error = NOT_SUPPORTED
        payment.updated_at = utcnow()
        entitlement.advance_status = "cancelled"
        await uow.outbox.add(
            PaymentCancelled(**_common(payment, entitlement), reason=NOT_SUPPORTED), key=payment.case_id
        )
        return
    if payment.status in ("failed", "cancelled"):
        entitlement.advance_status = "cancelled"  # nothing went out: nothing is owed
        return
    entitlement.advance_status = "recovery"
    await _move(
        uow,
        "reclassification",
        payment,
        entitlement,
        ledger.ADVANCES_OUTSTANDING,
        ledger.RECOVERIES_RECEIVABLE,
        "advance not supported by verification: owed back",
    )
    await uow.outbox.add(RecoveryOpened(**_common(payment, entitlement), reason=NOT_SUPPORTED), key=payment.case_id)
    log.info("advance_recovery_opened", determination_id=entitlement.determination_id, amount=str(payment.amount))


async def after_bank_outcome(uow: UnitOfWork, payment: Payment, entitlement: Entitlement) -> None:
    """The bank failed or returned an advance that is owed back: nothing is owed any more."""
    if entitlement.advance_status != "recovery" or payment.status not in ("failed", "returned"):
        return
    outcome: Literal["recovered", "not_paid"] = "recovered" if payment.status == "returned" else "not_paid"
    entitlement.advance_status = outcome
    note = "the bank returned the advance" if outcome == "recovered" else "the bank never paid the advance"
    await uow.outbox.add(
        RecoveryClosed(**_common(payment, entitlement), outcome=outcome, note=note), key=payment.case_id
    )


async def record_recovery(
    uow: UnitOfWork, determination_id: str, outcome: Literal["recovered", "waived"], note: str, principal: Principal
) -> dict[str, Any]:
    """An officer's word on an advance owed back: repaid into the fund's account, or waived (written off)."""
    found = await _advance(uow, determination_id, principal)
    if found is None:
        raise AdvanceNotFound(f"No advance for determination {determination_id}.")
    entitlement, payment = found
    if entitlement.advance_status != "recovery":
        raise Conflict(f"The advance is {entitlement.advance_status}: only an advance owed back can be {outcome}.")
    if outcome == "recovered":
        kind, target, why = "recovery", ledger.FUND_BANK, f"advance repaid: {note}"
    else:
        kind, target, why = "write_off", ledger.BENEFITS_PAID, f"advance recovery waived: {note}"
    amount = await _move(uow, kind, payment, entitlement, ledger.RECOVERIES_RECEIVABLE, target, why)
    if amount <= 0:
        raise Conflict("Nothing is owed yet: the bank has not settled the advance. Record this once it has.")
    entitlement.advance_status = outcome
    await uow.outbox.add(
        RecoveryClosed(**{**_common(payment, entitlement), "amount": amount}, outcome=outcome, note=note),
        key=payment.case_id,
    )
    return await describe(uow, entitlement, payment)


async def describe(uow: UnitOfWork, entitlement: Entitlement, payment: Payment) -> dict[str, Any]:
    return {
        "determination_id": entitlement.determination_id,
        "case_id": entitlement.case_id,
        "programme": entitlement.programme,
        "region": entitlement.region,
        "amount": str(payment.amount),
        "status": entitlement.advance_status,
        "payment_id": payment.payment_id,
        "payment_status": payment.status,
        "owed": str(await ledger.account_balance(uow.session, ledger.RECOVERIES_RECEIVABLE, payment.payment_id)),
    }


async def list_advances(uow: UnitOfWork, principal: Principal, status: str | None, limit: int) -> list[dict[str, Any]]:
    """Advances in the caller's region, oldest first: an officer's worklist of what is owed back."""
    statement = (
        select(Entitlement, Payment)
        .join(Payment, Payment.entitlement_id == Entitlement.entitlement_id)
        .where(Entitlement.kind == "advance", region_clause(principal, Entitlement.region))
        .order_by(Entitlement.created_at)
        .limit(limit)
    )
    if status is not None:
        statement = statement.where(Entitlement.advance_status == status)
    rows = (await uow.session.execute(statement)).all()
    return [await describe(uow, entitlement, payment) for entitlement, payment in rows]
