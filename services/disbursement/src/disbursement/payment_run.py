"""The monthly payment run: a job that owns its transactions (it commits per chunk, so a long run keeps its
progress), called by `doudi pay-run` and `POST /v1/payment-runs`."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from disbursement import repository
from disbursement.models import Entitlement, Payment, PaymentRun
from shared.auth import Principal
from shared.authz import region_clause
from shared.contracts.disbursement import PaymentInstructed
from shared.db.base import utcnow
from shared.db.uow import UnitOfWork


async def run_payments(uow: UnitOfWork, period: str, principal: Principal, chunk: int = 5_000) -> dict[str, Any]:
    """Instruct every payment due for `period` within the caller's region: one per active monthly entitlement
    that has started by then. The (entitlement, period) key is unique in the database and the insert skips
    what exists, so a run that crashed anywhere is resumed by running it again, and nobody is paid twice.
    Commits per chunk, so a long run keeps its progress."""
    now = utcnow()
    run = PaymentRun(run_id=str(uuid.uuid4()), period=period, scope=principal.region, started_at=now, instructed=0)
    uow.session.add(run)
    await uow.commit()
    # First the ids of every entitlement due (one indexed read, about 100 MB for a million), then chunk by
    # chunk by id: a query per chunk with keyset and LIMIT left the plan to PostgreSQL's statistics, and on a
    # freshly loaded table it scanned everything for every chunk (a million would have taken hours).
    table = Entitlement.__table__
    due_ids = list(
        (
            await uow.session.execute(
                select(table.c.entitlement_id)
                .where(repository.due_in(period), region_clause(principal, Entitlement.region))
                .order_by(table.c.entitlement_id)
            )
        ).scalars()
    )
    for start in range(0, len(due_ids), chunk):
        ids = due_ids[start : start + chunk]
        # Already instructed (a resumed run) is skipped here; the insert's ON CONFLICT still guards a run
        # racing another.
        paid = set(
            (
                await uow.session.execute(
                    select(Payment.entitlement_id).where(Payment.period == period, Payment.entitlement_id.in_(ids))
                )
            ).scalars()
        )
        fresh = [i for i in ids if i not in paid]
        rows = (
            (await uow.session.execute(select(table).where(table.c.entitlement_id.in_(fresh)))).all() if fresh else []
        )
        created = await repository.add_missing_payments(uow.session, rows, period)
        await uow.outbox.add_many(
            [
                (
                    PaymentInstructed(
                        case_id=payment.case_id,
                        payment_id=payment.payment_id,
                        determination_id=entitlement.determination_id,
                        programme=entitlement.programme,
                        period=period,
                        amount=payment.amount,
                    ),
                    payment.case_id,
                )
                for payment, entitlement in created
            ]
        )
        run.instructed += len(created)
        await uow.commit()
    run.finished_at = utcnow()
    await uow.commit()
    return await run_report(uow, period, principal)


async def run_report(uow: UnitOfWork, period: str, principal: Principal) -> dict[str, Any]:
    """What a period's payments came to, within the caller's region: paid, failed, held, still in flight."""
    rows = (
        await uow.session.execute(
            select(Payment.status, Payment.amount)
            .join(Entitlement, Entitlement.entitlement_id == Payment.entitlement_id)
            .where(Payment.period == period, region_clause(principal, Entitlement.region))
        )
    ).all()
    report: dict[str, Any] = {"period": period, "by_status": {}}
    for status, amount in rows:
        entry = report["by_status"].setdefault(status, {"payments": 0, "amount": Decimal("0.00")})
        entry["payments"] += 1
        entry["amount"] += amount
    for entry in report["by_status"].values():
        entry["amount"] = str(entry["amount"])
    report["payments"] = len(rows)
    return report
