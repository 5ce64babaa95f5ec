"""Fund supervision: every individual payment traceable end to end — payment, entitlement, determination,
case, bank reference — for the fund internal-control platform, as JSON Lines."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy import select

from disbursement.models import Entitlement, Payment
from shared.db.uow import UnitOfWork

PAGE = 5_000


async def payment_lines(uow: UnitOfWork, period: str, where: Any = None) -> AsyncIterator[dict[str, Any]]:
    """The period's payments in a stable order, read page by page (bounded memory for any size)."""
    after = ""
    while True:
        statement = (
            select(Payment, Entitlement)
            .join(Entitlement, Entitlement.entitlement_id == Payment.entitlement_id)
            .where(Payment.period == period, Payment.payment_id > after)
            .order_by(Payment.payment_id)
            .limit(PAGE)
        )
        if where is not None:
            statement = statement.where(where)
        rows = (await uow.session.execute(statement)).all()
        if not rows:
            return
        for payment, entitlement in rows:
            yield {
                "payment_id": payment.payment_id,
                "period": payment.period,
                "amount": str(payment.amount),
                "status": payment.status,
                "bank_reference": payment.bank_reference,
                "entitlement_id": entitlement.entitlement_id,
                "determination_id": entitlement.determination_id,
                "case_id": payment.case_id,
                "programme": entitlement.programme,
                "region": entitlement.region,
                "kind": entitlement.kind,
            }
        after = rows[-1][0].payment_id
