"""Every query intake makes."""

from __future__ import annotations

import functools
from datetime import date
from typing import Any

from sqlalchemy import and_, delete, exists, insert, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from intake.models import (
    Case,
    CaseDetermination,
    CaseEvent,
    CasePayment,
    CaseReferral,
    ContactDisclosure,
    Member,
    OpenMembership,
)
from shared.db.dialect import insert_for


class CaseRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def insert(self, case: dict[str, Any], members: list[dict[str, Any]]) -> None:
        """Write a new case and its members as two plain INSERTs: an application's hot path, where the ORM's
        unit of work (identity map, change tracking, a flush) would cost more than the statements."""
        await self.session.execute(insert(Case.__table__), [case])
        await self.session.execute(insert(Member.__table__), members)

    async def get(
        self, case_id: str, *, for_update: bool = False, for_share: bool = False, where: Any = None
    ) -> Case | None:
        """`for_update` for a change; `for_share` for a view assembled from several tables: every change to a
        case locks its row first, so a shared lock waits for one in flight and keeps the next out until the
        view is read (on PostgreSQL each statement sees its own snapshot; SQLite reads one anyway)."""
        statement = select(Case).where(Case.case_id == case_id)
        if where is not None:
            statement = statement.where(where)
        if for_update:
            statement = statement.with_for_update()
        elif for_share:
            statement = statement.with_for_update(read=True)
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def open_case_of(self, hashes: list[str]) -> tuple[str, str] | None:
        """(hash, case id) of the first of these people already on an open case, if any."""
        row = (
            await self.session.execute(
                select(OpenMembership.id_number_hash, OpenMembership.case_id)
                .where(OpenMembership.id_number_hash.in_(hashes))
                .limit(1)
            )
        ).first()
        return (row[0], row[1]) if row else None

    async def hold(self, case_id: str, hashes: list[str]) -> set[str]:
        """Put these people (by lookup hash) on the case's open membership, in one statement. The primary key
        keeps one open case per person, also between two applications filed at once; the hashes of people
        already held by another case come back, and nothing of theirs is written."""
        result = await self.session.execute(
            _hold_statement(insert_for(self.session)),
            [{"id_number_hash": hashed, "case_id": case_id} for hashed in hashes],
        )
        return set(hashes) - set(result.scalars())

    async def release_members(self, case_id: str, hashes: list[str] | None = None) -> None:
        """Let the case's members go (all of them, or those with these lookup hashes: people who left)."""
        statement = delete(OpenMembership).where(OpenMembership.case_id == case_id)
        if hashes is not None:
            statement = statement.where(OpenMembership.id_number_hash.in_(hashes))
        await self.session.execute(statement)

    async def reclaim_members(self, case_id: str) -> None:
        """A case that was closed is open again (events arrive in any order): hold its members again, unless
        one has since been taken by another open case."""
        for member in await self.list_members(case_id):
            if member.left_on is None and await self.open_case_of([member.id_number_hash]) is None:
                self.session.add(OpenMembership(id_number_hash=member.id_number_hash, case_id=case_id))

    async def page(self, where: list[Any], after: tuple[Any, str] | None, limit: int) -> list[Case]:
        """A page of cases, newest first, after the cursor (created_at, case_id) if given."""
        statement = select(Case).where(*where)
        if after is not None:
            created_at, case_id = after
            statement = statement.where(
                or_(Case.created_at < created_at, and_(Case.created_at == created_at, Case.case_id < case_id))
            )
        statement = statement.order_by(Case.created_at.desc(), Case.case_id.desc()).limit(limit)
        return list((await self.session.execute(statement)).scalars())

    @staticmethod
    def overdue(in_procedure: frozenset[str], today: date) -> Any:
        """Some determination is still in the procedure past its decision deadline."""
        return exists().where(
            CaseDetermination.case_id == Case.case_id,
            CaseDetermination.status.in_(in_procedure),
            CaseDetermination.decision_due < today,
        )

    @staticmethod
    def review_due(today: date) -> Any:
        """Some approved aid of the case is due (or overdue) for its review."""
        return exists().where(
            CaseDetermination.case_id == Case.case_id,
            CaseDetermination.status == "approved",
            CaseDetermination.review_due <= today,
        )

    @staticmethod
    def has_programme(programme: str) -> Any:
        return exists().where(CaseDetermination.case_id == Case.case_id, CaseDetermination.programme == programme)

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

    async def list_disclosures(self, case_id: str) -> list[ContactDisclosure]:
        result = await self.session.execute(
            select(ContactDisclosure)
            .where(ContactDisclosure.case_id == case_id)
            .order_by(ContactDisclosure.disclosed_at, ContactDisclosure.id)
        )
        return list(result.scalars())

    async def add_event(self, **values: object) -> bool:
        """Record a timeline entry once per event id; False if it was already there."""
        result = await self.session.execute(_event_statement(insert_for(self.session)), values)
        return bool(result.rowcount)

    async def list_events(self, case_id: str) -> list[CaseEvent]:
        result = await self.session.execute(
            select(CaseEvent).where(CaseEvent.case_id == case_id).order_by(CaseEvent.occurred_at, CaseEvent.id)
        )
        return list(result.scalars())


# The hot paths' statements, built once per dialect (`insert_for` gives each database's own `insert`): SQLAlchemy
# then finds the compiled form in its cache from the statement's memoised key, instead of building and keying
# (and, for a multi-row VALUES, compiling) a new statement on every call. Rows go in as parameters; several
# rows are an executemany, which SQLAlchemy sends as one multi-row INSERT, RETURNING included.
@functools.cache
def _hold_statement(insert_: Any) -> Any:
    table = OpenMembership.__table__
    return insert_(table).on_conflict_do_nothing(index_elements=["id_number_hash"]).returning(table.c.id_number_hash)


@functools.cache
def _event_statement(insert_: Any) -> Any:
    return insert_(CaseEvent.__table__).on_conflict_do_nothing(index_elements=["event_id"])
