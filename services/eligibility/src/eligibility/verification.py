"""The means test's report: what each source said, how fresh, and where it differs from what was declared.

The household's declared facts are checked against every configured source (sources.py), members found by
their person keys. What the rules then see:

- **Income**: a kind of income a source reports for a member replaces what the member declared of that
  kind (the departments' records are the evidence; S5 第十一条 has the household's income and property
  verified, not taken on its word). Kinds no source reports stay as declared: a source proves what it
  holds, not that nothing else exists. Where several sources report a kind, the first configured wins.
- **Assets**: the household's monetary assets, cars and non-residential properties are the larger of what
  was declared and what the sources hold for its members (a source does not see cash at home, so a lower
  verified figure does not lower the declaration).

Every difference is kept with the source that showed it. A source that cannot answer delays the case
(`VerificationPending`): it is tried again later, and nothing is decided meanwhile. Reviews of households
receiving aid go through the same test (lifecycle.review_case): a review whose sources cannot answer waits
the same way, and the aid goes on unchanged until it can be verified.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from eligibility.models import PendingVerification
from eligibility.sources import PersonRecord, Source, SourceAnswer, SourceUnavailable
from shared.contracts.eligibility import Difference, SourceEvidence, VerificationDelayed
from shared.contracts.intake import ApplicationReviewed, ApplicationSubmitted
from shared.db.uow import UnitOfWork

ASSET_FIELDS = ("monetary", "private_cars", "non_residential_properties")
RECORD_FIELD = {"monetary": "monetary_assets"}
MAX_RETRY = timedelta(hours=1)


class VerificationPending(Exception):
    def __init__(self, down: list[tuple[str, str]]) -> None:
        self.down = down
        super().__init__("; ".join(reason for _, reason in down))


@dataclass
class Report:
    household: dict[str, Any]  # the facts the rules see, verified figures in place
    evidence: list[SourceEvidence] = field(default_factory=list)
    differences: list[Difference] = field(default_factory=list)

    @property
    def sources(self) -> list[str]:
        return ["declared", *(e.source for e in self.evidence)]

    def discrepancies(self) -> list[str]:
        return [
            f"{d.member or 'household'} {d.field}: declared {d.declared}, verified {d.verified} ({d.source})"
            for d in self.differences
        ]


async def verify(household: dict[str, Any], sources: Sequence[Source]) -> Report:
    """Ask every source about the household's members; raise `VerificationPending` if any cannot answer."""
    keys = [m["person_key"] for m in household["members"] if m.get("person_key")]
    answers: list[SourceAnswer] = []
    down: list[tuple[str, str]] = []
    for source in sources:
        if not keys:  # nobody to look up (facts that came without person keys): nothing to verify against
            answers.append(SourceAnswer(source.name, None, {}))
            continue
        try:
            answers.append(await source.lookup(keys))
        except SourceUnavailable as exc:
            down.append((source.name, str(exc)))
    if down:
        raise VerificationPending(down)
    return reconcile(household, answers)


def reconcile(household: dict[str, Any], answers: Sequence[SourceAnswer]) -> Report:
    """Put the sources' figures in place of the declared ones (the rules in the module's docstring)."""
    verified = {**household, "members": [dict(m) for m in household["members"]]}
    differences: list[Difference] = []
    evidence = [
        SourceEvidence(
            source=a.source,
            data_as_of=a.data_as_of,
            members_found=sum(1 for m in household["members"] if m.get("person_key") in a.people),
        )
        for a in answers
    ]
    held: dict[str, list[tuple[str, Decimal]]] = {name: [] for name in ASSET_FIELDS}
    for member in verified["members"]:
        records = [(a.source, a.people[member["person_key"]]) for a in answers if member.get("person_key") in a.people]
        if not records:
            continue
        member["incomes"] = _verified_incomes(member, records, differences)
        for name in ASSET_FIELDS:
            for source, record in records:
                value = getattr(record, RECORD_FIELD.get(name, name))
                if value is not None:
                    held[name].append((source, Decimal(value)))
                    break
    assets = dict(household.get("assets") or {})
    for name, found in held.items():
        if not found:
            continue
        total = sum((value for _, value in found), Decimal(0))
        declared = Decimal(str(assets.get(name, 0) or 0))
        if total != declared:
            shown = (lambda v: f"{v:.2f}") if name == "monetary" else (lambda v: str(int(v)))
            source = ", ".join(sorted({s for s, _ in found}))
            differences.append(Difference(field=name, declared=shown(declared), verified=shown(total), source=source))
        if total > declared:
            assets[name] = f"{total:.2f}" if name == "monetary" else int(total)
    verified["assets"] = assets
    return Report(household=verified, evidence=evidence, differences=differences)


def _verified_incomes(
    member: dict[str, Any], records: list[tuple[str, PersonRecord]], differences: list[Difference]
) -> list[dict[str, Any]]:
    declared: dict[str, Decimal] = {}
    for income in member.get("incomes") or []:
        declared[income["kind"]] = declared.get(income["kind"], Decimal(0)) + Decimal(str(income["monthly"]))
    reported: dict[str, tuple[str, Decimal]] = {}
    for source, record in records:
        for kind, amount in record.incomes.items():
            reported.setdefault(kind, (source, amount))
    incomes = [i for i in member.get("incomes") or [] if i["kind"] not in reported]
    for kind, (source, amount) in reported.items():
        before = declared.get(kind, Decimal(0))
        if amount != before:
            differences.append(
                Difference(
                    member=member["ref"],
                    field=f"income.{kind}",
                    declared=f"{before:.2f}",
                    verified=f"{amount:.2f}",
                    source=source,
                )
            )
        if amount:
            incomes.append({"kind": kind, "monthly": f"{amount:.2f}"})
    return incomes


async def delay(
    uow: UnitOfWork,
    event: ApplicationSubmitted | ApplicationReviewed,
    pending: VerificationPending,
    now: datetime,
    every: float,
) -> PendingVerification:
    """Park the application (or the review) until its sources answer, and say so on the case. A review
    parked while another review of the case waits takes its place: it holds the household as found later."""
    kind = "review" if isinstance(event, ApplicationReviewed) else "application"
    row = await waiting(uow, event.case_id)
    if row is None:
        row = PendingVerification(case_id=event.case_id, kind=kind, attempts=0, created_at=now)
        uow.session.add(row)
    elif row.kind != kind or row.application != event.model_dump(mode="json"):
        row.kind, row.attempts = kind, 0
    row.application = event.model_dump(mode="json")
    row.attempts += 1
    row.reason = str(pending)[:500]
    row.next_attempt_at = now + min(timedelta(seconds=every * 2 ** (row.attempts - 1)), MAX_RETRY)
    await uow.outbox.add(
        VerificationDelayed(
            case_id=event.case_id,
            reason=row.reason,
            sources_down=[name for name, _ in pending.down],
            attempts=row.attempts,
            next_attempt_at=row.next_attempt_at,
            kind=kind,
            reviewed_on=event.reviewed_on if isinstance(event, ApplicationReviewed) else None,
        ),
        key=event.case_id,
    )
    return row


async def waiting(uow: UnitOfWork, case_id: str) -> PendingVerification | None:
    """What of the case waits for its sources, locked. Flushed first: a consumer applies a batch of events
    in one transaction (autoflush off), and an earlier event of the batch may have parked or freed it."""
    await uow.session.flush()
    return await uow.session.get(PendingVerification, case_id, with_for_update=True)


async def finished(uow: UnitOfWork, case_id: str) -> None:
    """The case's verification has answered: nothing of it waits any more."""
    row = await waiting(uow, case_id)
    if row is not None:
        await uow.session.delete(row)
        await uow.session.flush()


async def due_for_retry(uow: UnitOfWork, now: datetime, limit: int = 50) -> list[PendingVerification]:
    return list(
        (
            await uow.session.execute(
                select(PendingVerification)
                .where(PendingVerification.next_attempt_at <= now)
                .order_by(PendingVerification.next_attempt_at)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
        ).scalars()
    )
