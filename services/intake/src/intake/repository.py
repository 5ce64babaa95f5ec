"""Every query intake makes."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from intake.models import Case, CaseDetermination, CaseEvent, CasePayment, CaseReferral, Member


class CaseRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def add(self, case: Case, members: list[Member]) -> None:
        self.session.add(case)
        self.session.add_all(members)

    async def get(self, case_id: str, *, for_update: bool = False, where: Any = None) -> Case | None:
        statement = select(Case).where(Case.case_id == case_id)
        if where is not None:
            statement = statement.where(where)
        if for_update:
            statement = statement.with_for_update()
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def list_members(self, case_id: str) -> list[Member]:
        result = await self.session.execute(select(Member).where(Member.case_id == case_id).order_by(Member.ref))
        return list(result.scalars())

    async def list_determinations(self, case_id: str) -> list[CaseDetermination]:
        result = await self.session.execute(
            select(CaseDetermination).where(CaseDetermination.case_id == case_id).order_by(CaseDetermination.programme)
        )
        return list(result.scalars())

    async def get_determination(self, determination_id: str) -> CaseDetermination | None:
        return await self.session.get(CaseDetermination, determination_id)

    async def list_payments(self, case_id: str) -> list[CasePayment]:
        result = await self.session.execute(
            select(CasePayment)
            .where(CasePayment.case_id == case_id)
            .order_by(CasePayment.period, CasePayment.payment_id)
        )
        return list(result.scalars())

    async def get_payment(self, payment_id: str) -> CasePayment | None:
        return await self.session.get(CasePayment, payment_id)

    async def list_referrals(self, case_id: str) -> list[CaseReferral]:
        result = await self.session.execute(select(CaseReferral).where(CaseReferral.case_id == case_id))
        return list(result.scalars())

    async def get_referral(self, referral_id: str) -> CaseReferral | None:
        return await self.session.get(CaseReferral, referral_id)

    async def add_event(self, **values: object) -> bool:
        """Record a timeline entry once per event id; False if it was already there."""
        dialect = self.session.bind.dialect.name if self.session.bind is not None else "sqlite"
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        result = await self.session.execute(
            insert(CaseEvent).values(**values).on_conflict_do_nothing(index_elements=["event_id"])
        )
        return bool(result.rowcount)

    async def list_events(self, case_id: str) -> list[CaseEvent]:
        result = await self.session.execute(
            select(CaseEvent).where(CaseEvent.case_id == case_id).order_by(CaseEvent.occurred_at, CaseEvent.id)
        )
        return list(result.scalars())
