"""Nightly reconciliation: the ledger against the bank's statement for a day, and entitlements against the
payments of the month. Each mismatch is a line in the report and a `disbursement.reconciliation.flagged`
event. A job that owns its transaction (called by `doudi reconcile`); re-running a day replaces its report.

The statement is the bank's daily file (`doudi reconcile --statement PATH`: a CSV with `payment_id`, `status`
and `amount` columns, the sandbox bank's `statement-<day>.csv`), read line by line, or, for a small day, the
bank's API. At a million lines the job holds only the statement's keys and amounts, and streams the day's
ledger postings against them page by page: memory grows with the statement, never with the ledger."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from sqlalchemy import delete, exists, select

from disbursement import repository
from disbursement.bank import BankClient
from disbursement.models import Entitlement, LedgerEntry, LedgerTransaction, Payment, PaymentRun, Reconciliation
from shared.contracts.disbursement import MismatchFlagged
from shared.db.base import utcnow
from shared.db.uow import UnitOfWork

# The postings that move money at the bank, and the statement status each is. Other kinds (an advance's
# reclassification, a recovery, a write-off) move money between the fund's own accounts: no statement line.
KIND_OF_TXN = {"settlement": "settled", "reversal": "returned"}
STATEMENT_COLUMNS = ("payment_id", "status", "amount")
PAGE = 10_000  # ledger rows fetched per round trip, payment ids per lookup, events per insert

# One line of a statement: payment id, status (settled | returned), amount.
StatementLine = tuple[str, str, Decimal]


class StatementError(ValueError):
    """The file is not a bank statement this job can read (the message names the file and the line)."""


def read_statement_file(path: Path) -> Iterator[StatementLine]:
    """The lines of a statement file, one at a time. The header names the columns (any order, others ignored);
    an unreadable line stops the job rather than being skipped: a skipped line is a mismatch never seen."""
    with path.open(newline="", encoding="utf-8-sig") as handle:
        rows = csv.reader(handle)
        header = [name.strip() for name in next(rows, [])]
        if not set(STATEMENT_COLUMNS) <= set(header):
            raise StatementError(
                f"{path}: the first line must name the columns {', '.join(STATEMENT_COLUMNS)}; it is {header!r}"
            )
        at_id, at_status, at_amount = (header.index(name) for name in STATEMENT_COLUMNS)
        for number, row in enumerate(rows, start=2):
            if not row:
                continue
            try:
                amount = Decimal(row[at_amount])
                if not amount.is_finite():
                    raise InvalidOperation
                yield row[at_id], row[at_status], amount
            except (IndexError, InvalidOperation):
                raise StatementError(f"{path}, line {number}: not a statement line: {','.join(row)[:200]!r}") from None


def _lines_of(lines: Iterable[dict[str, str]]) -> Iterator[StatementLine]:
    for line in lines:
        yield line["payment_id"], line["status"], Decimal(line["amount"])


async def reconcile(
    uow: UnitOfWork, bank: BankClient | None, day: date, statement: Path | None = None
) -> Reconciliation:
    """Reconcile `day` against the statement file `statement`, or, without one, the statement `bank` serves."""
    session = uow.session
    if statement is not None:
        lines = read_statement_file(statement)
    elif bank is not None:
        lines = _lines_of(await bank.statement(day.isoformat()))
    else:
        raise ValueError("reconcile needs the bank's statement: a file or a bank to fetch it from")
    theirs: dict[str, dict[str, Decimal]] = {}  # status → payment id → amount; what the ledger matches is removed
    statement_lines = 0
    for payment_id, status, amount in lines:
        theirs.setdefault(status, {})[payment_id] = amount
        statement_lines += 1

    start = datetime.combine(day, time.min, tzinfo=UTC)
    posted = (
        select(LedgerTransaction.kind, LedgerTransaction.payment_id, LedgerEntry.amount, LedgerEntry.case_id)
        .join(LedgerEntry, LedgerEntry.txn_id == LedgerTransaction.txn_id)
        .where(
            LedgerTransaction.posted_at >= start,
            LedgerTransaction.posted_at < start + timedelta(days=1),
            LedgerTransaction.kind.in_(list(KIND_OF_TXN)),
            LedgerEntry.side == "debit",
        )
        .execution_options(yield_per=PAGE)
    )
    ours: list[tuple[str, str, dict[str, Any]]] = []  # (payment id, status, mismatch), sorted below
    ledger_transactions = 0
    # On the session's connection, as plain rows: the ORM's per-row bookkeeping is a tenth of the job's time.
    result = await (await session.connection()).stream(posted)
    async for page in result.partitions():
        for kind, payment_id, amount, case_id in page:
            ledger_transactions += 1
            status = KIND_OF_TXN[kind]
            booked = theirs[status].pop(payment_id, None) if status in theirs else None
            if booked is None:
                detail = f"ledger has {status} {amount}; the bank's statement does not"
                ours.append((payment_id, status, _mismatch("missing_at_bank", case_id, payment_id, detail)))
            elif booked != amount:
                detail = f"ledger {amount}, bank {booked}"
                ours.append((payment_id, status, _mismatch("amount_differs", case_id, payment_id, detail)))
    ours.sort(key=lambda found: found[:2])

    unmatched = sorted(
        (payment_id, status, amount) for status, rest in theirs.items() for payment_id, amount in rest.items()
    )
    theirs.clear()
    unknown_cases = await _cases_of(uow, sorted({payment_id for payment_id, _, _ in unmatched}))
    mismatches = [mismatch for _, _, mismatch in ours] + [
        _mismatch(
            "missing_in_ledger",
            unknown_cases.get(payment_id, "unknown"),
            payment_id,
            f"the bank booked {status} {amount}; the ledger has no such posting",
        )
        for payment_id, status, amount in unmatched
    ]
    mismatches += await _due_unpaid(uow, day)
    mismatches += await _advances_undecided(uow, day)
    await session.execute(delete(Reconciliation).where(Reconciliation.reconciliation_date == day))
    report = Reconciliation(
        reconciliation_date=day,
        ran_at=utcnow(),
        clean=not mismatches,
        statement_lines=statement_lines,
        ledger_transactions=ledger_transactions,
        mismatches=mismatches,
    )
    session.add(report)
    for start_at in range(0, len(mismatches), PAGE):
        await uow.outbox.add_many(
            [
                (MismatchFlagged(reconciliation_date=day.isoformat(), **mismatch), mismatch["case_id"])
                for mismatch in mismatches[start_at : start_at + PAGE]
            ]
        )
    return report


def _mismatch(kind: str, case_id: str, payment_id: str, detail: str) -> dict[str, Any]:
    return {"kind": kind, "case_id": case_id, "payment_id": payment_id, "detail": detail}


async def _cases_of(uow: UnitOfWork, payment_ids: list[str]) -> dict[str, str]:
    """The case of each payment the database knows, looked up a page of ids at a time (a million bound
    parameters in one IN would exceed what asyncpg accepts)."""
    cases: dict[str, str] = {}
    for start in range(0, len(payment_ids), PAGE):
        rows = await uow.session.execute(
            select(Payment.payment_id, Payment.case_id).where(Payment.payment_id.in_(payment_ids[start : start + PAGE]))
        )
        cases.update((payment_id, case_id) for payment_id, case_id in rows)
    return cases


async def _due_unpaid(uow: UnitOfWork, day: date) -> list[dict[str, Any]]:
    """Once the month's payment run has finished, every active monthly entitlement that has started must have
    a payment for the month: nothing due is left unpaid."""
    period = f"{day.year:04d}-{day.month:02d}"
    finished = (
        await uow.session.execute(
            select(PaymentRun.run_id)
            .where(PaymentRun.period == period, PaymentRun.finished_at.is_not(None), PaymentRun.scope == "000000")
            .limit(1)
        )
    ).first()
    if finished is None:
        return []
    # NOT EXISTS, an anti-join on the (entitlement, period) key. A NOT IN over a million payments does not fit
    # PostgreSQL's work_mem to hash, so once the tables are analysed it is planned as a subplan scanned again
    # for every entitlement (tried on PostgreSQL 15: estimated cost 8.6e9, against 1.3 s for NOT EXISTS).
    paid = exists().where(Payment.entitlement_id == Entitlement.entitlement_id, Payment.period == period)
    rows = (
        await uow.session.execute(
            select(Entitlement.entitlement_id, Entitlement.case_id).where(repository.due_in(period), ~paid)
        )
    ).all()
    return [
        {
            "kind": "due_unpaid",
            "case_id": case_id,
            "entitlement_id": entitlement_id,
            "detail": f"no payment for {period} after the month's run",
        }
        for entitlement_id, case_id in rows
    ]


# An advance is settled by the verification that follows it, within the decision deadline: 30 working days
# from acceptance, 45 when extended (S5 第二十二条), about nine weeks. One still open after that is a mismatch
# between the payment and the decision that should have followed it.
ADVANCE_DECISION_DAYS = 65


async def _advances_undecided(uow: UnitOfWork, day: date) -> list[dict[str, Any]]:
    """Advances against the decisions that followed: aid paid first whose verification never confirmed or
    flagged it."""
    cutoff = datetime.combine(day - timedelta(days=ADVANCE_DECISION_DAYS), time.min, tzinfo=UTC)
    rows = (
        await uow.session.execute(
            select(Entitlement.entitlement_id, Entitlement.case_id, Entitlement.created_at, Payment.payment_id)
            .join(Payment, Payment.entitlement_id == Entitlement.entitlement_id)
            .where(
                Entitlement.kind == "advance",
                Entitlement.advance_status == "open",
                Entitlement.created_at < cutoff,
                Payment.status.in_(("submitted", "settled")),
            )
        )
    ).all()
    return [
        {
            "kind": "advance_undecided",
            "case_id": case_id,
            "payment_id": payment_id,
            "entitlement_id": entitlement_id,
            "detail": f"paid as an advance on {created_at.date().isoformat()}; no verification has confirmed or "
            f"flagged it in {ADVANCE_DECISION_DAYS} days",
        }
        for entitlement_id, case_id, created_at, payment_id in rows
    ]


def report_of(reconciliation: Reconciliation) -> dict[str, Any]:
    return {
        "date": reconciliation.reconciliation_date.isoformat(),
        "ran_at": reconciliation.ran_at.isoformat(),
        "clean": reconciliation.clean,
        "statement_lines": reconciliation.statement_lines,
        "ledger_transactions": reconciliation.ledger_transactions,
        "mismatches": reconciliation.mismatches,
    }
