"""A stopped determination ends its entitlement: later instructions that never reached the bank are
cancelled, later payment runs skip it, the last month stands."""

from __future__ import annotations

import uuid

from sqlalchemy import select

from disbursement import payment_run, service
from disbursement.models import Entitlement, Payment, messaging
from shared.auth import Principal
from shared.contracts.eligibility import DeterminationStopped
from tests.conftest import ServiceFactory, deliver_twice, manual
from tests.disbursement.test_payments import approved

NATIONAL = Principal(subject="job", role="reconciler", region="000000")


def stopped(event: object, last_period: str) -> DeterminationStopped:
    fields = event.model_dump()  # type: ignore[attr-defined]
    for name in ("payment_kind", "payee_account"):
        fields.pop(name, None)
    return DeterminationStopped(**fields, last_period=last_period)


async def payments_of(runtime: object, case_id: str) -> dict[str, str]:
    async with runtime.sessionmaker() as session:  # type: ignore[attr-defined]
        rows = (await session.execute(select(Payment).where(Payment.case_id == case_id))).scalars()
        return {p.period: p.status for p in rows}


async def test_a_stop_before_the_first_period_cancels_its_instruction(services: ServiceFactory) -> None:
    async with manual(services, "disbursement") as runtime:
        case_id = str(uuid.uuid4())
        grant = approved(case_id)  # first period 2026-12, instructed at once, not yet sent
        async with runtime.uow() as uow:
            await service.open_entitlement(uow, grant)
            await uow.commit()
        await deliver_twice(runtime, stopped(grant, "2026-11"), key=case_id)
        assert await payments_of(runtime, case_id) == {"2026-12": "cancelled"}
        outbox = messaging.outbox
        async with runtime.engine.connect() as conn:
            types = (
                await conn.execute(
                    select(outbox.c.event_type).where(outbox.c.kafka_key == case_id).order_by(outbox.c.seq)
                )
            ).scalars()
            assert list(types) == ["disbursement.payment.instructed", "disbursement.payment.cancelled"]
        async with runtime.uow() as uow:
            await payment_run.run_payments(uow, "2027-01", NATIONAL)
        assert await payments_of(runtime, case_id) == {"2026-12": "cancelled"}  # nothing after the stop


async def test_the_last_period_is_still_paid_and_nothing_after_it(services: ServiceFactory) -> None:
    async with manual(services, "disbursement") as runtime:
        case_id = str(uuid.uuid4())
        grant = approved(case_id)
        async with runtime.uow() as uow:
            await service.open_entitlement(uow, grant)
            await uow.commit()
        async with runtime.uow() as uow:
            await service.stop_entitlement(uow, stopped(grant, "2027-01"))
            await uow.commit()
        for period in ("2027-01", "2027-02"):
            async with runtime.uow() as uow:
                await payment_run.run_payments(uow, period, NATIONAL)
        assert await payments_of(runtime, case_id) == {"2026-12": "pending", "2027-01": "pending"}
        async with runtime.sessionmaker() as session:
            entitlement = (
                await session.execute(select(Entitlement).where(Entitlement.case_id == case_id))
            ).scalar_one()
        assert (entitlement.status, entitlement.last_period) == ("stopped", "2027-01")


async def test_a_changed_amount_is_paid_from_its_period_and_amends_what_the_bank_has_not_seen(
    services: ServiceFactory,
) -> None:
    from decimal import Decimal

    from shared.contracts.eligibility import DeterminationChanged

    async with manual(services, "disbursement") as runtime:
        case_id = str(uuid.uuid4())
        grant = approved(case_id, account=None)  # first period 2026-12, held: not yet sent
        async with runtime.uow() as uow:
            await service.open_entitlement(uow, grant)
            await uow.commit()
        fields = grant.model_dump()
        for name in ("payment_kind", "payee_account", "review_due"):
            fields.pop(name, None)
        fields["monthly_amount"] = Decimal("400.00")
        changed = DeterminationChanged(**fields, previous_monthly_amount=Decimal("830.00"), from_period="2027-01")
        await deliver_twice(runtime, changed, key=case_id)
        for period in ("2027-01", "2027-02"):
            async with runtime.uow() as uow:
                await payment_run.run_payments(uow, period, NATIONAL)
        async with runtime.sessionmaker() as session:
            rows = (await session.execute(select(Payment).where(Payment.case_id == case_id))).scalars()
            amounts = {p.period: p.amount for p in rows}
        assert amounts == {"2026-12": Decimal("830.00"), "2027-01": Decimal("400.00"), "2027-02": Decimal("400.00")}
        earlier = changed.model_copy(update={"from_period": "2026-12", "monthly_amount": Decimal("500.00")})
        async with runtime.uow() as uow:  # a change from a month not yet sent amends that instruction
            await service.change_entitlement(uow, earlier, str(uuid.uuid4()))
            await uow.commit()
        async with runtime.sessionmaker() as session:
            first = (
                await session.execute(select(Payment).where(Payment.case_id == case_id, Payment.period == "2026-12"))
            ).scalar_one()
        assert first.amount == Decimal("500.00")
