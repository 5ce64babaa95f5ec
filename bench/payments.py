"""The monthly payment run at scale: `doudi pay-run` over N active monthly entitlements, as an operator runs
it, then again (a resumed or repeated run must instruct nothing). `make bench` runs it on PostgreSQL when a
server answers (the issue's figure is for PostgreSQL), else on SQLite.

Measured: wall time of the run (instructions, their `PaymentInstructed` outbox rows, committed per chunk),
instructions per second, the run process's peak resident memory, and the repeat's time. What the run does
not include yet, and so is not measured: submitting to the bank in batches (payments go one request each,
from the service's background submitter) and reconciling a statement of that size.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from bench.report import OUTPUT, machine, spread, write_section
from bench.stack import pg_admin, postgres_url
from disbursement.models import Entitlement, Payment, messaging
from doudi.stack import load_spec
from shared.db.migrate import upgrade

BIN = Path(sys.executable).parent
PERIOD = "2026-12"


def say(message: str) -> None:
    print(message, flush=True)  # noqa: T201


async def seed(url: str, n: int) -> None:
    engine = create_async_engine(url)
    now = datetime.now(UTC)
    try:
        for start in range(0, n, 10_000):
            rows = [
                {
                    "entitlement_id": str(uuid.uuid4()),
                    "determination_id": str(uuid.uuid4()),
                    "case_id": str(uuid.uuid4()),
                    "programme": "subsistence_allowance",
                    "region": "310115",
                    "kind": "monthly",
                    "amount": Decimal("1330.00") - Decimal(i % 500),
                    "first_period": "2026-01",
                    "last_period": None,
                    "payee_account": f"62220210{i:010d}",
                    "status": "active",
                    "created_at": now,
                }
                for i in range(start, min(n, start + 10_000))
            ]
            async with engine.begin() as conn:
                await conn.execute(insert(Entitlement), rows)
    finally:
        await engine.dispose()


async def counts(url: str) -> tuple[int, int]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            payments = (await conn.execute(select(func.count()).select_from(Payment))).scalar_one()
            outbox = (await conn.execute(select(func.count()).select_from(messaging.outbox))).scalar_one()
        return int(payments), int(outbox)
    finally:
        await engine.dispose()


def pay_run(url: str, data_dir: Path) -> tuple[float, float]:
    """`doudi pay-run` as a process: seconds, and its peak resident memory in MiB (VmHWM, read at the end)."""
    env = {
        **os.environ,
        "DISBURSEMENT_DATABASE_URL": url,
        "DOUDI_DATA_DIR": str(data_dir),
        "DOUDI_LOG_LEVEL": "WARNING",
    }
    # A wrapper reports the run's own high-water mark, which a parent cannot read once the child is gone.
    wrapper = (
        "import sys, runpy; sys.argv = ['doudi', 'pay-run', '--month', '" + PERIOD + "', '--region', '310115', "
        "'--wait', '0']\ntry:\n    runpy.run_module('doudi', run_name='__main__')\nexcept SystemExit:\n    pass\n"
        "print([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1], file=sys.stderr)"
    )
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", wrapper], env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"doudi pay-run failed:\n{done.stderr[:1500]}")
    seconds = time.perf_counter() - started
    peak_kib = int(done.stderr.strip().splitlines()[-1])
    return seconds, peak_kib / 1024


def one(n: int, admin_url: str | None) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="doudi-payments-") as scratch:
        name = f"doudi_bench_{uuid.uuid4().hex[:8]}_disbursement"
        if admin_url:
            asyncio.run(pg_admin(admin_url, f'CREATE DATABASE "{name}"'))
            url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
        else:
            url = f"sqlite+aiosqlite:///{scratch}/disbursement.db"
        try:
            upgrade(load_spec("disbursement").migrations, url)
            asyncio.run(seed(url, n))
            seconds, peak = pay_run(url, Path(scratch))
            payments, outbox = asyncio.run(counts(url))
            again, _ = pay_run(url, Path(scratch))
            payments_after, _ = asyncio.run(counts(url))
            if payments != n or outbox != n or payments_after != n:
                raise RuntimeError(f"expected {n:,} instructions once each: {payments=} {outbox=} {payments_after=}")
            return {"seconds": seconds, "per_s": n / seconds, "peak_mib": peak, "again_s": again}
        finally:
            if admin_url:
                asyncio.run(pg_admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entitlements", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--postgres", default="auto", help="admin URL, `auto` (the local server if it answers) or `none`"
    )
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args()
    admin_url = postgres_url(args.postgres)
    label = "PostgreSQL" if admin_url else "SQLite"
    runs: list[dict[str, Any]] = []
    for repeat in range(args.repeats):
        result = one(args.entitlements, admin_url)
        runs.append(result)
        say(
            f"[{label}] pay run {repeat + 1}/{args.repeats}: {args.entitlements:,} instructions in "
            f"{result['seconds']:.1f} s ({result['per_s']:,.0f}/s), peak {result['peak_mib']:.0f} MiB; "
            f"again: {result['again_s']:.1f} s"
        )
    n = args.entitlements
    per_million = [1_000_000 / r["per_s"] / 60 for r in runs]
    rows = [
        (
            f"{label}: `doudi pay-run`, {n:,} active entitlements",
            "s",
            spread([r["seconds"] for r in runs], "{:.1f}"),
            "—",
        ),
        (
            f"{label}: instructions written (with their outbox rows)",
            "per s",
            spread([r["per_s"] for r in runs]),
            "≥ 3,334",
        ),
        (f"{label}: the same run, per 1,000,000 entitlements", "min", spread(per_million, "{:.1f}"), "< 5"),
        (f"{label}: peak resident memory of the run", "MiB", spread([r["peak_mib"] for r in runs]), "< 1,024"),
        (
            f"{label}: the run again (nothing left to instruct)",
            "s",
            spread([r["again_s"] for r in runs], "{:.1f}"),
            "—",
        ),
    ]
    table = ["| measure | unit | median (min–max) | goal |", "|---|---|---|---|"]
    table += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    text = (
        f"Command: `make bench` (`python -m bench.payments {' '.join(sys.argv[1:])}`)  \nMachine: {machine()}  \n"
        f"Run: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {args.repeats} repeats, each on a fresh database seeded "
        f"with {n:,} monthly entitlements; the run is `doudi pay-run --month {PERIOD}` as a process.\n\n"
        + "\n".join(table)
        + "\n\nNot measured because not built: submitting the run to the bank in batches (the service's "
        "submitter sends one request per payment) and reconciling a 1,000,000-line statement.\n"
    )
    say(text)
    write_section("Payment run", text, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
