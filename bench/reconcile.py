"""Nightly reconciliation at scale: `doudi reconcile --date D --statement PATH` over a day of N settled payments
and the bank's N-line statement file for that day, as an operator runs it. `make bench` runs it on PostgreSQL
when a server answers, else on SQLite.

Seeded (bulk inserts, once per database: the job only reads them and replaces its own report): N + 6
monthly entitlements; N + 3 payments of the month, N of them settled with their settlement transaction
(debit benefits_paid, credit fund_bank) posted on D; the month's national payment run, finished; and the
bank's statement file for D in the sandbox bank's format (`statement-D.csv`), N lines in booking order.

Planted on purpose, three of each kind: a line whose amount differs from the ledger's (`amount_differs`), a
settlement the bank's file lacks (`missing_at_bank`), a line for a payment the ledger has no posting for
(`missing_in_ledger`), and an entitlement left without a payment after the run (`due_unpaid`). Each run
must report exactly these, store them and write one event each, or the benchmark fails: a check of the
benchmark, not of the time.

Measured: wall time of the `doudi reconcile` process (start-up, reading the file, streaming the ledger,
the month's due-unpaid check, the report and its events, commit), and its peak resident memory.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from bench.report import OUTPUT, machine, spread, write_section
from bench.stack import pg_admin, postgres_url
from disbursement.ledger import BENEFITS_PAID, FUND_BANK
from disbursement.models import (
    Entitlement,
    LedgerEntry,
    LedgerTransaction,
    Payment,
    PaymentRun,
    Reconciliation,
    messaging,
)
from doudi.stack import load_spec
from shared.db.migrate import upgrade

DAY = date(2026, 12, 10)
PERIOD = f"{DAY:%Y-%m}"
PLANTED = 3  # of each kind
BATCH = 10_000
# The sandbox bank's statement file: these columns, in this order (sandbox_bank.app.Bank.book).
HEADER = "bank_reference,payment_id,amount,status,at"


def say(message: str) -> None:
    print(message, flush=True)  # noqa: T201


async def bulk_insert(conn: AsyncConnection, table: Any, rows: list[dict[str, Any]]) -> None:
    """COPY on PostgreSQL (about four times as fast as a multi-row INSERT; five million rows to load), an
    executemany INSERT elsewhere. The rows already hold what the columns store: Decimals to the fen, UTC."""
    if not rows:
        return
    if conn.dialect.name != "postgresql":
        await conn.execute(insert(table), rows)
        return
    columns = list(rows[0])
    raw = (await conn.get_raw_connection()).driver_connection
    await raw.copy_records_to_table(
        table.name, records=[tuple(row[c] for c in columns) for row in rows], columns=columns
    )


async def seed(url: str, n: int, statement: Path) -> set[tuple[str, str]]:
    """The day's data and the bank's file for it; returns the planted mismatches as (kind, id)."""
    engine = create_async_engine(url)
    opened = datetime(2026, 1, 5, tzinfo=UTC)
    booked = datetime.combine(DAY, datetime.min.time(), tzinfo=UTC) + timedelta(hours=6)
    planted: set[tuple[str, str]] = set()
    # Which of the N settled payments the bank's file leaves out, and which it books at another amount.
    left_out = {n // 4 + i for i in range(PLANTED)}
    differs = {n // 2 + i for i in range(PLANTED)}
    try:
        with statement.open("w", encoding="utf-8") as out:
            out.write(HEADER + "\n")
            # N settled and posted; then PLANTED the bank settled but whose callback never came (no posting);
            # then PLANTED entitlements the month's run left without a payment.
            total = n + 2 * PLANTED
            for start in range(0, total, BATCH):
                entitlements, payments, transactions, entries = [], [], [], []
                for i in range(start, min(total, start + BATCH)):
                    entitlement_id, case_id = str(uuid.uuid4()), str(uuid.uuid4())
                    amount = Decimal("1330.00") - Decimal(i % 500)
                    entitlements.append(
                        {
                            "entitlement_id": entitlement_id,
                            "determination_id": str(uuid.uuid4()),
                            "case_id": case_id,
                            "programme": "subsistence_allowance",
                            "region": "310115",
                            "kind": "monthly",
                            "amount": amount,
                            "first_period": "2026-01",
                            "last_period": None,
                            "payee_account": f"62220210{i:010d}",
                            "status": "active",
                            "created_at": opened,
                        }
                    )
                    if i >= n + PLANTED:
                        planted.add(("due_unpaid", entitlement_id))
                        continue
                    payment_id, reference = str(uuid.uuid4()), f"SBX{i:016d}"
                    at = booked + timedelta(milliseconds=i)
                    posted = i < n
                    payments.append(
                        {
                            "payment_id": payment_id,
                            "entitlement_id": entitlement_id,
                            "case_id": case_id,
                            "period": PERIOD,
                            "amount": amount,
                            "status": "settled" if posted else "submitted",
                            "bank_reference": reference,
                            "attempts": 1,
                            "next_attempt_at": None,
                            "last_error": None,
                            "created_at": opened,
                            "updated_at": at,
                        }
                    )
                    if posted:
                        txn_id = str(uuid.uuid4())
                        transactions.append(
                            {
                                "txn_id": txn_id,
                                "kind": "settlement",
                                "payment_id": payment_id,
                                "reverses": None,
                                "posted_at": at,
                                "description": f"subsistence_allowance {PERIOD}",
                            }
                        )
                        common = {
                            "txn_id": txn_id,
                            "amount": amount,
                            "programme": "subsistence_allowance",
                            "region": "310115",
                            "case_id": case_id,
                        }
                        entries.append({**common, "account": BENEFITS_PAID, "side": "debit"})
                        entries.append({**common, "account": FUND_BANK, "side": "credit"})
                    else:
                        planted.add(("missing_in_ledger", payment_id))
                    if i in left_out:
                        planted.add(("missing_at_bank", payment_id))
                        continue
                    if i in differs:
                        planted.add(("amount_differs", payment_id))
                        amount += Decimal("100.00")
                    out.write(f"{reference},{payment_id},{amount},settled,{at.isoformat()}\n")
                async with engine.begin() as conn:
                    for model, rows in (
                        (Entitlement, entitlements),
                        (Payment, payments),
                        (LedgerTransaction, transactions),
                        (LedgerEntry, entries),
                    ):
                        await bulk_insert(conn, model.__table__, rows)
        async with engine.begin() as conn:
            await conn.execute(
                insert(PaymentRun),
                [
                    {
                        "run_id": str(uuid.uuid4()),
                        "period": PERIOD,
                        "scope": "000000",
                        "started_at": booked - timedelta(days=8),
                        "finished_at": booked - timedelta(days=8) + timedelta(minutes=2),
                        "instructed": n + PLANTED,
                    }
                ],
            )
        if engine.dialect.name == "postgresql":
            # A database in service has been analysed by autovacuum; a freshly loaded one has not.
            async with engine.begin() as conn:
                await conn.execute(text("ANALYZE"))
    finally:
        await engine.dispose()
    return planted


async def stored(url: str) -> tuple[list[dict[str, Any]], int]:
    """The report the job stored for the day, and how many mismatch events are in the outbox."""
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            mismatches = (
                await conn.execute(select(Reconciliation.mismatches).where(Reconciliation.reconciliation_date == DAY))
            ).scalar_one()
            outbox = messaging.outbox
            events = (
                await conn.execute(
                    select(func.count())
                    .select_from(outbox)
                    .where(outbox.c.event_type == "disbursement.reconciliation.flagged")
                )
            ).scalar_one()
        return list(mismatches), int(events)
    finally:
        await engine.dispose()


def reconcile(url: str, data_dir: Path, statement: Path) -> tuple[float, float, int, dict[str, Any]]:
    """`doudi reconcile` as a process: seconds, its peak resident memory in MiB (VmHWM, read at the end), its
    exit code and the report it printed."""
    env = {
        **os.environ,
        "DISBURSEMENT_DATABASE_URL": url,
        "DOUDI_DATA_DIR": str(data_dir),
        "DOUDI_LOG_LEVEL": "WARNING",
    }
    # A wrapper reports the job's own high-water mark, which a parent cannot read once the child is gone.
    argv = ["doudi", "reconcile", "--date", DAY.isoformat(), "--statement", str(statement)]
    wrapper = (
        f"import sys, runpy; sys.argv = {argv!r}\ncode = 0\ntry:\n    runpy.run_module('doudi', run_name='__main__')\n"
        "except SystemExit as exc:\n    code = exc.code\nsys.stdout.flush()\n"
        "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]\n"
        "print(hwm, code, file=sys.stderr)"
    )
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", wrapper], env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    try:
        peak_kib, code = done.stderr.strip().splitlines()[-1].split()
        report = json.loads(done.stdout)
    except (IndexError, ValueError) as exc:
        raise RuntimeError(f"doudi reconcile failed:\n{done.stdout[:500]}\n{done.stderr[-1500:]}") from exc
    return seconds, int(peak_kib) / 1024, int(code), report


def check(n: int, planted: set[tuple[str, str]], code: int, report: dict[str, Any], kept: list[Any]) -> None:
    """Exactly the planted mismatches, in the printed report and the stored one; fail loudly otherwise."""
    found = sorted((m["kind"], m.get("payment_id") or m.get("entitlement_id")) for m in report["mismatches"])
    problems = []
    if found != sorted(planted):
        missed, extra = sorted(planted - set(found)), sorted(set(found) - planted)
        problems.append(
            f"found {len(found)} mismatches, planted {len(planted)}; missed {missed[:5]}, extra {extra[:5]}"
        )
    if len(found) != len(set(found)):
        problems.append("a mismatch is reported twice")
    if code != 1 or report["clean"]:
        problems.append(f"exit code {code} and clean={report['clean']}: mismatches must exit 1")
    if report["statement_lines"] != n or report["ledger_transactions"] != n:
        problems.append(f"{report['statement_lines']=:,} and {report['ledger_transactions']=:,}, expected {n:,}")
    if sorted(map(json.dumps, kept)) != sorted(map(json.dumps, report["mismatches"])):
        problems.append("the stored report differs from the printed one")
    if problems:
        raise SystemExit("bench.reconcile: THE JOB DID NOT FIND WHAT WAS PLANTED:\n  " + "\n  ".join(problems))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1_000_000, help="settled payments of the day = statement lines")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--postgres", default="auto", help="admin URL, `auto` (the local server if it answers) or `none`"
    )
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args()
    if args.n < 4 * PLANTED:
        parser.error(f"--n must be at least {4 * PLANTED}")
    admin_url = postgres_url(args.postgres)
    label = "PostgreSQL" if admin_url else "SQLite"
    if not admin_url:
        why = "--postgres none" if args.postgres == "none" else "no PostgreSQL server answers"
        say(f"bench.reconcile: running on SQLite ({why})")
    n = args.n
    runs: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="doudi-reconcile-") as scratch:
        name = f"doudi_bench_{uuid.uuid4().hex[:8]}_disbursement"
        if admin_url:
            asyncio.run(pg_admin(admin_url, f'CREATE DATABASE "{name}"'))
            url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
        else:
            url = f"sqlite+aiosqlite:///{scratch}/disbursement.db"
        try:
            upgrade(load_spec("disbursement").migrations, url)
            statement = Path(scratch) / f"statement-{DAY.isoformat()}.csv"
            started = time.perf_counter()
            planted = asyncio.run(seed(url, n, statement))
            seeded = time.perf_counter() - started
            size = statement.stat().st_size / 2**20
            say(f"[{label}] seeded {n:,} settled payments and a {size:.0f} MiB statement file in {seeded:.0f} s")
            for repeat in range(args.repeats):
                seconds, peak, code, report = reconcile(url, Path(scratch), statement)
                kept, events = asyncio.run(stored(url))
                check(n, planted, code, report, kept)
                if events != len(planted) * (repeat + 1):
                    raise SystemExit(f"bench.reconcile: {events} mismatch events after {repeat + 1} runs")
                runs.append({"seconds": seconds, "peak_mib": peak, "per_s": n / seconds})
                say(
                    f"[{label}] reconcile {repeat + 1}/{args.repeats}: {n:,} lines in {seconds:.1f} s "
                    f"({n / seconds:,.0f}/s), peak {peak:.0f} MiB; found exactly the {len(planted)} planted mismatches"
                )
        finally:
            if admin_url:
                asyncio.run(pg_admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    per_million = [1_000_000 / r["per_s"] / 60 for r in runs]
    rows = [
        (
            f"{label}: `doudi reconcile --statement`, {n:,} lines against {n:,} postings",
            "s",
            spread([r["seconds"] for r in runs], "{:.1f}"),
            "—",
        ),
        (f"{label}: statement lines reconciled", "per s", spread([r["per_s"] for r in runs]), "≥ 8,334"),
        (f"{label}: the same job, per 1,000,000 lines", "min", spread(per_million, "{:.2f}"), "< 2"),
        (f"{label}: peak resident memory of the job", "MiB", spread([r["peak_mib"] for r in runs]), "< 1,024"),
    ]
    table = ["| measure | unit | median (min–max) | goal |", "|---|---|---|---|"]
    table += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    text = (
        f"Command: `make bench` (`python -m bench.reconcile {' '.join(sys.argv[1:])}`)  \nMachine: {machine()}  \n"
        f"Run: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {args.repeats} repeats of `doudi reconcile --date "
        f"{DAY.isoformat()} --statement statement-{DAY.isoformat()}.csv` as a process, on one database seeded once "
        f"(the job only reads what it reconciles) with {n:,} settled payments, their settlement postings and a "
        f"finished payment run for {PERIOD}, and the bank's {n:,}-line statement file in the sandbox bank's "
        f"format. Each run found exactly the {len(planted)} mismatches planted ({PLANTED} each of "
        "`amount_differs`, `missing_at_bank`, `missing_in_ledger` and `due_unpaid`), stored them and wrote one "
        f"event each; the benchmark fails otherwise. Seeding took {seeded:.0f} s and is not part of the figures.\n\n"
        + "\n".join(table)
        + "\n\nIn the time: the interpreter's start-up, reading the file line by line, streaming the day's postings "
        "against it, the month's due-unpaid check over every entitlement, the report, its events and the commit. "
        "The job holds the statement's ids and amounts, so its memory grows with the statement, not with the "
        "ledger. Not measured: the statement fetched from the bank's API instead of its file (one JSON document, "
        "kept for small days), and a ledger holding years of postings: this database holds one day, and the day's "
        "postings are found by scanning `ledger_transactions`, which has no index on `posted_at`.\n"
    )
    say(text)
    write_section("Reconciliation", text, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
