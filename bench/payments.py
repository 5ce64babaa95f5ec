"""The monthly payment run at scale: `doudi pay-run` over N active monthly entitlements, as an operator runs
it, with the disbursement service (its API and its worker) and the sandbox bank running beside it, as in
production; then the run again (a resumed or repeated run must instruct nothing). `make bench` runs it on
PostgreSQL when a server answers (the issue's figure is for PostgreSQL), else on SQLite.

Measured: wall time of the run (instructions and their `PaymentInstructed` outbox rows, committed per chunk);
the time until every payment was submitted to the bank in batches and settled, its ledger transaction
written (the bank reports each batch in one callback); the peak resident memory of the run, of the service's
processes and of the bank; the repeat's time. The relay is not running: the events stay in the outbox (their
publication is the relay's figure, not the run's).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
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
from bench.stack import cpu_seconds, pg_admin, postgres_url
from disbursement.models import Entitlement, LedgerTransaction, Payment, messaging
from doudi.stack import load_spec
from shared.db.migrate import upgrade
from shared.messaging.embedded_broker import EmbeddedBroker, free_port
from shared.messaging.kafka import create_topics

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
                    # Accounts ending 11: the sandbox bank settles them (other endings fail or return on purpose).
                    "payee_account": f"62220210{i:08d}11",
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


def peak_mib(pid: int) -> float:
    """A running process's peak resident memory (VmHWM), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM"):
            return int(line.split()[1]) / 1024
    return 0.0


class Beside:
    """The disbursement service's API and worker, the sandbox bank and a broker, as processes."""

    def __init__(self, url: str, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.ports = {name: free_port() for name in ("broker", "bank", "api")}
        self.broker = EmbeddedBroker(self.ports["broker"], data_dir / "broker.log")
        self.env = {
            **os.environ,
            "DOUDI_DATA_DIR": str(data_dir),
            "DOUDI_LOG_LEVEL": "WARNING",
            "DOUDI_KAFKA_BOOTSTRAP_SERVERS": self.broker.bootstrap_servers,
            "DISBURSEMENT_DATABASE_URL": url,
            "DISBURSEMENT_PORT": str(self.ports["api"]),
            "DISBURSEMENT_BANK_URL": f"http://127.0.0.1:{self.ports['bank']}",
            "SANDBOX_BANK_PORT": str(self.ports["bank"]),
            "SANDBOX_BANK_STATEMENT_DIR": str(data_dir / "bank"),
        }
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self) -> None:
        self.broker.start()
        asyncio.run(create_topics(self.broker.bootstrap_servers))
        commands = {
            "bank": [sys.executable, "-m", "sandbox_bank"],
            "api": [sys.executable, "-m", "disbursement", "api"],
            "worker": [sys.executable, "-m", "disbursement", "worker"],
        }
        for name, command in commands.items():
            log = (self.data_dir / f"{name}.log").open("ab")
            self.processes[name] = subprocess.Popen(command, env=self.env, stdout=log, stderr=log)
        deadline = time.monotonic() + 60
        for port in (self.ports["bank"], self.ports["api"]):
            while True:
                with contextlib.suppress(OSError):
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"a process beside the run did not start; see {self.data_dir}")
                time.sleep(0.2)

    def peaks(self) -> dict[str, float]:
        return {name: peak_mib(process.pid) for name, process in self.processes.items()}

    def cpu(self) -> dict[str, float]:
        """CPU seconds each process beside the run has used so far."""
        return {name: cpu_seconds(process.pid) for name, process in self.processes.items()}

    def stop(self) -> None:
        for process in self.processes.values():
            process.terminate()
        for process in self.processes.values():
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
        self.broker.stop()


async def in_flight(url: str) -> int:
    """Payments still to settle (pending or submitted): a count through the status index, cheap enough to ask
    every two seconds while the run goes on (counting every payment and ledger row that often loads the
    database being measured)."""
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            statement = select(func.count()).select_from(Payment).where(Payment.status.in_(("pending", "submitted")))
            return int((await conn.execute(statement)).scalar_one())
    finally:
        await engine.dispose()


async def settled(url: str) -> tuple[int, int]:
    """Payments settled and settlement transactions in the ledger (asked once, when nothing is in flight)."""
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            done = await conn.execute(select(func.count()).select_from(Payment).where(Payment.status == "settled"))
            txns = await conn.execute(
                select(func.count()).select_from(LedgerTransaction).where(LedgerTransaction.kind == "settlement")
            )
            return int(done.scalar_one()), int(txns.scalar_one())
    finally:
        await engine.dispose()


def database_server_cpu() -> float:
    """CPU seconds PostgreSQL has used so far: the postmaster, its live backends and those that have exited
    (their time is added to the postmaster's children's). 0 where no server runs here."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            program = (entry / "cmdline").read_bytes().split(b"\0")[0]
            if program.startswith(b"postgres") or program.endswith(b"/postgres"):
                total += cpu_seconds(int(entry.name), children=program.endswith(b"/postgres"))
    return total


def pay_run(url: str, data_dir: Path) -> tuple[subprocess.Popen[str], float]:
    """`doudi pay-run` as a process, started; it prints its peak resident memory (KiB) last on stderr."""
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
        "import resource\nu = resource.getrusage(resource.RUSAGE_SELF)\n"
        "print(u.ru_utime + u.ru_stime, file=sys.stderr)\n"
        "print([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1], file=sys.stderr)"
    )
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-c", wrapper], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    return process, started


def finish(process: subprocess.Popen[str], started: float) -> tuple[float, float, float]:
    """Wait for the run: its seconds, its peak resident memory in MiB and the CPU seconds it used."""
    _out, err = process.communicate()
    seconds = time.perf_counter() - started
    if process.returncode != 0:
        raise RuntimeError(f"doudi pay-run failed:\n{err[:1500]}")
    *_, cpu, peak = err.strip().splitlines()
    return seconds, int(peak) / 1024, float(cpu)


def one(n: int, admin_url: str | None, limit_s: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="doudi-payments-") as scratch:
        name = f"doudi_bench_{uuid.uuid4().hex[:8]}_disbursement"
        if admin_url:
            asyncio.run(pg_admin(admin_url, f'CREATE DATABASE "{name}"'))
            url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
        else:
            url = f"sqlite+aiosqlite:///{scratch}/disbursement.db"
        beside = Beside(url, Path(scratch))
        try:
            upgrade(load_spec("disbursement").migrations, url)
            asyncio.run(seed(url, n))
            beside.start()
            cpu_before = {**beside.cpu(), "database server": database_server_cpu()}
            process, started = pay_run(url, Path(scratch))
            seconds = all_settled = run_cpu = 0.0
            peak = 0.0
            while True:
                if seconds == 0.0 and process.poll() is not None:
                    seconds, peak, run_cpu = finish(process, started)
                    say(f"  run finished in {seconds:.1f} s; the bank is being paid")
                time.sleep(2)
                open_ = asyncio.run(in_flight(url))
                elapsed = time.perf_counter() - started
                say(f"  {elapsed:6.0f} s: {open_:,} on their way to the bank or back")
                if seconds and open_ == 0:
                    all_settled = elapsed
                    done, txns = asyncio.run(settled(url))
                    if done != n or txns != n:
                        raise RuntimeError(f"nothing in flight but {done:,} settled and {txns:,} booked of {n:,}")
                    break
                if elapsed > limit_s:
                    raise RuntimeError(f"not all settled within {limit_s:.0f} s: {open_:,} of {n:,} in flight")
            cpu_after = {**beside.cpu(), "database server": database_server_cpu()}
            # CPU per payment, in ms, of each process until the last settlement was booked (the run's own
            # from its rusage; the others' includes up to two seconds of idle polling after it).
            cpu = {"run": run_cpu * 1000 / n} | {
                name: (cpu_after[name] - cpu_before[name]) * 1000 / n for name in cpu_before
            }
            say("  CPU per payment: " + ", ".join(f"{name} {ms:.3f} ms" for name, ms in cpu.items()))
            peaks = beside.peaks()
            payments, outbox = asyncio.run(counts(url))
            again_process, again_started = pay_run(url, Path(scratch))
            again, _, _ = finish(again_process, again_started)
            payments_after, _ = asyncio.run(counts(url))
            if payments != n or payments_after != n:
                raise RuntimeError(f"expected {n:,} instructions once each: {payments=} {payments_after=}")
            if outbox != 2 * n:  # instructed and settled, once each
                raise RuntimeError(f"expected {2 * n:,} events in the outbox, found {outbox:,}")
            return {
                "seconds": seconds,
                "per_s": n / seconds,
                "peak_mib": peak,
                "settled_s": all_settled,
                "settled_per_s": n / all_settled,
                "service_mib": peaks["api"] + peaks["worker"],
                "bank_mib": peaks["bank"],
                "again_s": again,
                **{f"cpu {name}": ms for name, ms in cpu.items()},
            }
        finally:
            beside.stop()
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
    parser.add_argument("--limit", type=float, default=1800, help="seconds to wait for every payment to settle")
    args = parser.parse_args()
    admin_url = postgres_url(args.postgres)
    label = "PostgreSQL" if admin_url else "SQLite"
    runs: list[dict[str, Any]] = []
    for repeat in range(args.repeats):
        result = one(args.entitlements, admin_url, args.limit)
        runs.append(result)
        say(
            f"[{label}] pay run {repeat + 1}/{args.repeats}: {args.entitlements:,} instructions in "
            f"{result['seconds']:.1f} s ({result['per_s']:,.0f}/s), peak {result['peak_mib']:.0f} MiB; "
            f"all settled at {result['settled_s']:.1f} s; again: {result['again_s']:.1f} s"
        )
    n = args.entitlements
    settled_per_million = [1_000_000 / r["settled_per_s"] / 60 for r in runs]
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
            "—",
        ),
        (
            f"{label}: from the run's start until every payment is submitted in batches, settled and in the ledger",
            "s",
            spread([r["settled_s"] for r in runs], "{:.1f}"),
            "—",
        ),
        (f"{label}: the same, per 1,000,000 entitlements", "min", spread(settled_per_million, "{:.1f}"), "< 5"),
        (f"{label}: payments settled and booked", "per s", spread([r["settled_per_s"] for r in runs]), "—"),
        (f"{label}: peak resident memory of the run", "MiB", spread([r["peak_mib"] for r in runs]), "< 1,024"),
        (
            f"{label}: peak resident memory of the service (API + worker)",
            "MiB",
            spread([r["service_mib"] for r in runs]),
            "—",
        ),
        (f"{label}: peak resident memory of the sandbox bank", "MiB", spread([r["bank_mib"] for r in runs]), "—"),
        *[
            (f"{label}: CPU per payment, {key[4:]}", "ms", spread([r[key] for r in runs], "{:.3f}"), "—")
            for key in runs[0]
            if key.startswith("cpu ")
        ],
        (
            f"{label}: CPU per payment, everything",
            "ms",
            spread([sum(v for k, v in r.items() if k.startswith("cpu ")) for r in runs], "{:.3f}"),
            "≤ 0.6 (2 cores × 5 min / 1,000,000)",
        ),
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
        f"with {n:,} monthly entitlements; the run is `doudi pay-run --month {PERIOD}` as a process, with the "
        "disbursement service's API and worker and the sandbox bank running beside it (the submitter sends "
        "batches of 1,000, the bank answers each batch in one callback, the API books the settlements). The relay "
        "is not running: the events wait in the outbox.\n\n" + "\n".join(table) + "\n"
    )
    say(text)
    write_section("Payment run", text, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
