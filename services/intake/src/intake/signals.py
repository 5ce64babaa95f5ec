"""Signals from other departments (政策找人): who may send what, and how a signal finds its household.

A signal names a person by resident ID number. It is matched to the household intake knows (an open case
first, else the person's latest case) and passed on without the number: eligibility pre-screens it, and a
household that may qualify becomes a lead for the community's advisor.
"""

from __future__ import annotations

import tomllib
import uuid
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from functools import lru_cache
from pathlib import Path

from prometheus_client import Counter
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from intake.models import Case, Member, OpenMembership, Signal
from shared.auth import Principal
from shared.authz import Forbidden
from shared.contracts.intake import HouseholdFacts, SignalReceived
from shared.db.base import utcnow
from shared.db.uow import UnitOfWork
from shared.errors import Unprocessable
from shared.pii import PiiVault

SIGNALS = Counter("doudi_signals_received_total", "Signals from other departments", ["kind", "outcome"])
SOURCES_FILE = Path(__file__).parent / "signal_sources.toml"
# The person's household, when intake knows none: one key per person, stable across signals.
HOUSEHOLD_NAMESPACE = uuid.UUID("5a1f0c3e-8d4b-4e59-9d8e-2f5b6c7a9e10")


class UnknownSource(Unprocessable):
    title = "Unknown signal source"


@dataclass(frozen=True)
class Source:
    name: str
    description: str
    kinds: frozenset[str]


@lru_cache(maxsize=1)
def sources() -> dict[str, Source]:
    data = tomllib.loads(SOURCES_FILE.read_text(encoding="utf-8"))
    return {name: Source(name, entry["description"], frozenset(entry["kinds"])) for name, entry in data.items()}


@dataclass(frozen=True)
class SignalIn:
    source: str
    source_id: str
    kind: str
    id_number: str
    region: str
    community: str | None
    occurred_on: date
    amount: Decimal | None


def check_source(signal: SignalIn, principal: Principal) -> None:
    """The source must be registered, allowed this kind, and be who the token says it is."""
    source = sources().get(signal.source)
    if source is None:
        raise UnknownSource(f"no signal source {signal.source!r} is registered", field="source")
    if signal.kind not in source.kinds:
        raise UnknownSource(f"{signal.source} does not report {signal.kind!r}", field="kind")
    if principal.role == "department" and principal.subject != signal.source:
        raise Forbidden(f"this client is {principal.subject!r}, not the source {signal.source!r}")


async def receive(uow: UnitOfWork, signal: SignalIn, vault: PiiVault) -> tuple[Signal, bool]:
    """Record the signal once and pass it on. Returns (the signal, whether it is new)."""
    existing = await _find(uow, signal.source, signal.source_id)
    if existing is not None:
        SIGNALS.labels(signal.kind, "recognised").inc()
        return existing, False
    hashes = vault.lookup_hashes(signal.id_number)
    case, member_ref = await _household_of(uow, hashes)
    row = Signal(
        signal_id=str(uuid.uuid4()),
        source=signal.source,
        source_id=signal.source_id,
        kind=signal.kind,
        id_number_hash=vault.lookup_hash(signal.id_number),
        region=signal.region,
        community=signal.community,
        occurred_on=signal.occurred_on,
        amount=signal.amount,
        household_key=case.case_id if case else str(uuid.uuid5(HOUSEHOLD_NAMESPACE, hashes[0])),
        case_id=case.case_id if case else None,
        received_at=utcnow(),
    )
    try:
        async with uow.session.begin_nested():
            uow.session.add(row)
            await uow.session.flush()
    except IntegrityError:  # the same signal, sent twice at once: the other request recorded it
        found = await _find(uow, signal.source, signal.source_id)
        assert found is not None
        return found, False
    await uow.outbox.add(
        SignalReceived(
            signal_id=row.signal_id,
            source=row.source,
            kind=row.kind,  # type: ignore[arg-type]
            region=case.region if case else row.region,
            community=(case.community if case else None) or row.community,
            occurred_on=row.occurred_on,
            amount=row.amount,
            household_key=row.household_key,
            case_id=row.case_id,
            case_status=case.status if case else None,
            member_ref=member_ref,
            household=HouseholdFacts.model_validate(case.household) if case else None,
        ),
        key=row.household_key,
    )
    SIGNALS.labels(signal.kind, "matched" if case else "new_household").inc()
    return row, True


async def _find(uow: UnitOfWork, source: str, source_id: str) -> Signal | None:
    return (
        await uow.session.execute(select(Signal).where(Signal.source == source, Signal.source_id == source_id))
    ).scalar_one_or_none()


async def _household_of(uow: UnitOfWork, hashes: list[str]) -> tuple[Case | None, str | None]:
    """The person's open case, else their latest case, and which member of it they are; a household the
    person has left is not theirs any more."""
    open_case = (
        await uow.session.execute(select(OpenMembership.case_id).where(OpenMembership.id_number_hash.in_(hashes)))
    ).scalar_one_or_none()
    statement = select(Case, Member.ref).join(Member, Member.case_id == Case.case_id)
    statement = statement.where(Member.id_number_hash.in_(hashes), Member.left_on.is_(None))  # not one they left
    if open_case is not None:
        statement = statement.where(Case.case_id == open_case)
    found = (await uow.session.execute(statement.order_by(Case.created_at.desc()).limit(1))).first()
    return (found[0], found[1]) if found else (None, None)
