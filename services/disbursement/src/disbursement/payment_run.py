"""The monthly payment run: a job that owns its transactions (it commits per chunk, so a long run keeps its
progress), called by `doudi pay-run` and `POST /v1/payment-runs`."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

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
    # The ids due, streamed in order on a connection of its own while this one commits chunk by chunk (chunks
    # of ids sent back in IN lists were a third of the run's time). Each chunk is then read again as a range
    # of ids in the writing transaction, with its amount for the period, under FOR KEY SHARE: a change or a
    # stop committed since the stream began is seen, and one arriving now waits until the chunk's payments
    # are committed, then amends or cancels them. What a crashed run already instructed is skipped by the
    # insert (ON CONFLICT DO NOTHING on the unique (entitlement, period) key), which also guards a run racing
    # another. In id order, the payments' unique index takes its inserts in key order, not on random pages.
    # Tried and dropped: a keyset query per chunk with LIMIT (on a freshly loaded table PostgreSQL's
    # statistics made it scan everything per chunk); a NOT EXISTS against payments in the stream (planned on
    # an empty table, it scanned the payments the run was writing once per entitlement).
    table = Entitlement.__table__
    scope = (repository.due_in(period), region_clause(principal, Entitlement.region))
    ids = select(table.c.entitlement_id).where(*scope).order_by(table.c.entitlement_id)
    engine = uow.session.bind
    assert isinstance(engine, AsyncEngine)
    async with engine.connect() as reader:
        await reader.execution_options(read_only=True)  # on SQLite a reader: it must not take the write lock
        result = await reader.stream(ids.execution_options(yield_per=chunk))
        async for part in result.partitions(chunk):
            await _instruct(uow, run, period, scope, part[0][0], part[-1][0])
    run.finished_at = utcnow()
    await uow.commit()
    return await run_report(uow, period, principal)


async def _instruct(uow: UnitOfWork, run: PaymentRun, period: str, scope: Sequence[Any], first: str, last: str) -> None:
    """One chunk, the entitlements due from `first` to `last`: their payments and events, committed."""
    table = Entitlement.__table__
    rows = (
        await uow.session.execute(
            select(
                table.c.entitlement_id,
                table.c.determination_id,
                table.c.case_id,
                table.c.programme,
                table.c.payee_account,
                repository.amount_in(period).label("amount"),
            )
            .where(*scope, table.c.entitlement_id.between(first, last))
            .order_by(table.c.entitlement_id)
            .with_for_update(read=True, key_share=True, of=table)
        )
    ).all()
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
