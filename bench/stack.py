"""End to end on the running stack: applications submitted over HTTP by concurrent clients until each case
has its determinations. `make bench` runs it on the embedded stack (`doudi up` as it is: four services,
Tansu, SQLite) and, with `--postgres`, with every database on PostgreSQL.

For each database, repeated `--repeats` times on one stack:
1. **Saturation**: `--cases` applications sent by `--concurrency` clients as fast as they are answered;
   throughput is cases per second from the first submission to the last case's first determination.
2. **Paced**: applications sent at a fixed rate (`--rate`, default half the 500/s goal) for `--paced-seconds`;
   latency is from each submission to its case's first determination (eligibility's own row), p50 and p99.
3. **Scaling** (`--replicas 2`): the saturation run again with a second worker process per service in the
   same consumer groups.
4. **Where the time goes**: py-spy samples each service process during a saturation run; the functions
   that hold the most samples are listed. Each process's CPU per case, and the statements and commits each
   service sends to its database per case (its own `doudi_db_statements_total` / `doudi_db_commits_total`).
5. **One application alone**: `bench.request` sends applications to intake's API in this process, one at
   a time, and reports the CPU each costs: the ceiling of one intake process, whatever the rest does.
6. **Raw ceilings**, measured in the same run: the broker's produce and consume rates (aiokafka, 1 KiB
   records) and the database's insert rate (one row per transaction, as a handler commits, and 500 per
   transaction, as the relay batches).

The load generator runs on the same 2 cores as the stack, and takes its share of them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from bench.report import OUTPUT, machine, percentile, spread, write_section
from bench.request import request_cost
from eligibility.models import Determination
from intake.domain import with_check_digit
from shared.auth import mint_dev_token
from shared.messaging.embedded_broker import free_port

BIN = Path(sys.executable).parent
SERVICES = ("intake", "eligibility", "disbursement", "referral")
OURS = {*SERVICES, "shared", "sandbox_bank", "doudi"}
GOAL_RATE = 500.0
PROBLEM = re.compile(r'"level": ?"(warning|error|critical)"|^(WARNING|ERROR|CRITICAL):? |^Traceback')


def say(message: str) -> None:
    print(message, flush=True)  # noqa: T201


class People:
    """Distinct, valid resident ID numbers: a person is on at most one open case."""

    def __init__(self) -> None:
        self.n = 0

    def next(self) -> str:
        self.n += 1
        district = 1000 + self.n // 1000  # never a region code the rest of the system uses for real people
        return with_check_digit(f"36{district:04d}19750101{self.n % 1000:03d}")


def application(people: People) -> dict[str, Any]:
    return {
        "region": "310115",
        "street": "310115001",
        "community": "310115001002",
        "channel": "window",
        "household": {
            "members": [
                {
                    "ref": f"m{i}",
                    "name": f"压测{i}",
                    "id_number": people.next(),
                    "relationship": "applicant" if i == 1 else "spouse",
                    "birth_date": "1975-01-01",
                    "hukou_region": "310115",
                    "incomes": [{"kind": "wage", "monthly": "800.00"}] if i == 1 else [],
                }
                for i in (1, 2)
            ],
            "assets": {"monetary": "3000.00"},
        },
        "consent": {"economic_verification": True},
        "payee_account": "6222021001112223",
    }


# --- the stack -----------------------------------------------------------------------------------------


async def pg_admin(admin_url: str, statement: str) -> None:
    engine = create_async_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(text(statement))
    finally:
        await engine.dispose()


@contextlib.contextmanager
def databases(admin_url: str | None, data_dir: Path, services: Sequence[str] = SERVICES) -> Iterator[dict[str, str]]:
    """Fresh databases on PostgreSQL (dropped afterwards) as `<SERVICE>_DATABASE_URL`s, or nothing to do for
    SQLite (`doudi up` migrates)."""
    if not admin_url:
        yield {}
        return
    names = {svc: f"doudi_bench_{uuid.uuid4().hex[:8]}_{svc}" for svc in services}
    for name in names.values():
        asyncio.run(pg_admin(admin_url, f'CREATE DATABASE "{name}"'))
    try:
        yield {
            f"{svc.upper()}_DATABASE_URL": make_url(admin_url).set(database=name).render_as_string(hide_password=False)
            for svc, name in names.items()
        }
    finally:
        for name in names.values():
            asyncio.run(pg_admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@dataclass
class Stack:
    data_dir: Path
    env: dict[str, str]
    process: subprocess.Popen[bytes]
    ports: dict[str, int]
    replicas: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    def database_url(self, service: str) -> str:
        return self.env.get(f"{service.upper()}_DATABASE_URL") or f"sqlite+aiosqlite:///{self.data_dir / service}.db"

    def service_pids(self) -> dict[str, int]:
        """The stack's service processes (`python -m <service> all`), found by their command lines."""
        found = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                argv = (entry / "cmdline").read_bytes().split(b"\0")
                environ = (entry / "environ").read_bytes().split(b"\0")
                if f"DOUDI_DATA_DIR={self.data_dir}".encode() in environ and b"all" in argv and b"-m" in argv:
                    found[argv[argv.index(b"-m") + 1].decode()] = int(entry.name)
        return found

    def log_sizes(self) -> dict[Path, int]:
        return {path: path.stat().st_size for path in (self.data_dir / "logs").glob("*.log")}

    def log_problems(self, since: dict[Path, int], per_file: int = 8) -> list[str]:
        """Warnings and errors the processes logged after `since` (from `log_sizes`), at most `per_file` from
        each log: structlog's JSON lines at warning or above, uvicorn's own (`WARNING:  message`) and, for a
        traceback, the line that names the exception."""
        found = []
        for path in sorted((self.data_dir / "logs").glob("*.log")):
            with path.open("rb") as log:
                log.seek(since.get(path, 0))
                lines = log.read().decode(errors="replace").splitlines()
            problems, in_traceback = [], False
            for line in lines:
                if in_traceback and line[:1].isspace():
                    continue
                if in_traceback or PROBLEM.search(line):
                    problems.append(line[:300])
                in_traceback = line.startswith("Traceback")
            found += [f"{path.stem}: {line}" for line in problems[:per_file]]
            if len(problems) > per_file:
                found.append(f"{path.stem}: … and {len(problems) - per_file} more")
        return found or ["(the services logged no warning or error meanwhile)"]

    def add_worker_replicas(self) -> None:
        """A second worker (and relay) process per service: consumer groups share the partitions."""
        for svc in SERVICES:
            # `doudi up` tells its own children where the broker is; a replica started beside them is told here.
            env = {**self.env, "DOUDI_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{self.ports['broker']}"}
            self.replicas.append(
                subprocess.Popen(
                    [sys.executable, "-m", svc, "worker"],
                    env=env,
                    cwd=self.data_dir,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        time.sleep(8)  # the groups rebalance

    def stop(self) -> None:
        for process in [*self.replicas, self.process]:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        for process in [*self.replicas, self.process]:
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()


@contextlib.contextmanager
def stack(admin_url: str | None) -> Iterator[Stack]:
    with tempfile.TemporaryDirectory(prefix="doudi-bench-") as scratch:
        data_dir = Path(scratch)
        ports = {name: free_port() for name in ("broker", "sandbox_bank", *SERVICES)}
        with databases(admin_url, data_dir) as urls:
            env = {
                **os.environ,
                **urls,
                "DOUDI_DATA_DIR": str(data_dir),
                "DOUDI_KAFKA_PORT": str(ports["broker"]),
                "SANDBOX_BANK_PORT": str(ports["sandbox_bank"]),
                "DOUDI_LOG_LEVEL": "WARNING",
                # The load comes from one client: the per-client limit would measure itself, not the stack.
                "DOUDI_RATE_LIMIT_PER_MINUTE": "100000000",
                "DOUDI_RATE_LIMIT_BURST": "1000000",
                **{f"{svc.upper()}_PORT": str(ports[svc]) for svc in SERVICES},
            }
            log = (data_dir / "up.log").open("wb")
            process = subprocess.Popen(
                [str(BIN / "doudi"), "up"], env=env, cwd=data_dir, stdout=log, stderr=subprocess.STDOUT
            )
            running = Stack(data_dir, env, process, ports)
            try:
                deadline = time.monotonic() + 120
                while b"doudi is up:" not in (data_dir / "up.log").read_bytes():
                    if process.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError("doudi up did not come up:\n" + (data_dir / "up.log").read_text()[-3000:])
                    time.sleep(0.2)
                yield running
            finally:
                running.stop()
                log.close()


# --- load ----------------------------------------------------------------------------------------------


@dataclass
class Round:
    sent: dict[str, float]  # case id → when it was sent (epoch seconds)
    determined: dict[str, float]  # case id → its first determination (epoch seconds)
    errors: Counter[str]

    @property
    def throughput(self) -> float:
        span = max(self.determined.values()) - min(self.sent.values())
        return len(self.determined) / span if span > 0 else 0.0

    def latencies_ms(self) -> list[float]:
        return [(self.determined[c] - self.sent[c]) * 1000 for c in self.sent if c in self.determined]


async def submit(
    running: Stack, people: People, cases: int, concurrency: int, rate: float | None = None
) -> tuple[dict[str, float], Counter[str]]:
    bearer = mint_dev_token(
        running.data_dir, role="window", region="310115", subject="bench", issuer="doudi-dev", audience="doudi"
    )
    bodies = [application(people) for _ in range(cases)]
    sent: dict[str, float] = {}
    errors: Counter[str] = Counter()
    queue: asyncio.Queue[tuple[int, dict[str, Any]]] = asyncio.Queue()
    for item in enumerate(bodies):
        queue.put_nowait(item)
    started = time.monotonic()

    async def client_loop(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            index, body = queue.get_nowait()
            if rate:  # open loop: each request at its scheduled moment, however slow the answers
                delay = started + index / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            at = time.time()
            try:
                response = await client.post("/v1/applications", json=body)
            except httpx.HTTPError as exc:
                errors[type(exc).__name__] += 1
                continue
            if response.status_code == 201:
                sent[response.json()["case_id"]] = at
            else:
                errors[str(response.status_code)] += 1

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=running.url("intake"),
        headers={"Authorization": f"Bearer {bearer}"},
        timeout=30,
        limits=limits,
    ) as client:
        await asyncio.gather(*(client_loop(client) for _ in range(concurrency)))
    return sent, errors


async def wait_for_determinations(running: Stack, sent: dict[str, float], timeout: float = 180) -> dict[str, float]:
    """Each case's first determination, read from eligibility's database as it is written."""
    engine = create_async_engine(running.database_url("eligibility"))
    wanted = set(sent)
    found: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    try:
        while len(found) < len(wanted) and time.monotonic() < deadline:
            async with engine.connect() as conn:
                rows = await conn.execute(
                    select(Determination.case_id, func.min(Determination.created_at)).group_by(Determination.case_id)
                )
                for case_id, created in rows:
                    if case_id in wanted:
                        found[case_id] = _epoch(created)
            await asyncio.sleep(0.5)
    finally:
        await engine.dispose()
    return found


def _epoch(value: Any) -> float:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return float(value.timestamp())


async def one_round(running: Stack, people: People, cases: int, concurrency: int, rate: float | None = None) -> Round:
    seen = running.log_sizes()
    sent, errors = await submit(running, people, cases, concurrency, rate)
    determined = await wait_for_determinations(running, sent)
    if errors:  # what the services said while the failures happened (a request can fail without a 500)
        for line in running.log_problems(seen):
            say(f"    {line}")
    return Round(sent, determined, errors)


# --- where the time goes -------------------------------------------------------------------------------

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int, *, children: bool = False) -> float:
    """User + system CPU a process has used so far (0 when it is gone); with `children`, also that of its
    children that have exited and been waited for."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    used = int(fields[11]) + int(fields[12]) + (int(fields[13]) + int(fields[14]) if children else 0)
    return used / TICKS


def cpu_pids(running: Stack) -> dict[str, list[int]]:
    """Who shares the cores during a round: each service, the broker, the database server (PostgreSQL's
    processes; SQLite runs inside the services) and the load generator itself."""
    groups: dict[str, list[int]] = {svc: [pid] for svc, pid in running.service_pids().items()}
    groups["broker"], groups["database server"] = [], []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            argv = (entry / "cmdline").read_bytes()
            if b"tansu" in argv and str(running.ports["broker"]).encode() in argv:
                groups["broker"].append(int(entry.name))
            elif argv.startswith(b"postgres"):
                groups["database server"].append(int(entry.name))
    groups["load generator"] = [os.getpid()]
    return groups


def cpu_snapshot(groups: dict[str, list[int]]) -> dict[str, float]:
    return {name: sum(cpu_seconds(pid) for pid in pids) for name, pids in groups.items()}


def database_counts(running: Stack) -> dict[str, tuple[float, float]]:
    """Each service's statements and commits so far, from its own /metrics (`doudi_db_statements_total`,
    `doudi_db_commits_total`)."""
    counts = {}
    for svc in SERVICES:
        exposition = httpx.get(f"{running.url(svc)}/metrics/", timeout=10).text
        found = {
            sample.name: sample.value
            for family in text_string_to_metric_families(exposition)
            for sample in family.samples
            if sample.labels.get("service") == svc
        }
        counts[svc] = (found.get("doudi_db_statements_total", 0.0), found.get("doudi_db_commits_total", 0.0))
    return counts


def profile_start(running: Stack, seconds: int) -> dict[str, tuple[subprocess.Popen[bytes], Path]]:
    """py-spy on each service process for `seconds` (nothing if py-spy is missing or not permitted)."""
    spy = BIN / "py-spy"
    if not spy.exists():
        return {}
    started = {}
    for svc, pid in running.service_pids().items():
        out = running.data_dir / f"profile-{svc}.txt"
        command = [str(spy), "record", "--nonblocking", "-p", str(pid), "-d", str(seconds), "-r", "50", "-f", "raw"]
        command += ["-o", str(out)]
        started[svc] = (
            subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
            out,
        )
    return started


def profile_summary(started: dict[str, tuple[subprocess.Popen[bytes], Path]], top: int = 6) -> dict[str, str]:
    """Per service: the share of samples spent in each of the heaviest places (module:function, own time
    rolled up to the innermost frame of our code or of the library it is in)."""
    summaries = {}
    for svc, (process, out) in started.items():
        try:
            process.wait(120)
        except subprocess.TimeoutExpired:
            process.kill()
        if not out.exists():
            summaries[svc] = "(no profile: py-spy could not attach)"
            continue
        where: Counter[str] = Counter()
        total = 0
        for line in out.read_text(errors="replace").splitlines():
            stack_text, _, count = line.rpartition(" ")
            if not count.isdigit():
                continue
            frames = stack_text.split(";")
            total += int(count)
            where[_place(frames)] += int(count)
        summaries[svc] = ", ".join(f"{name} {100 * n / total:.0f}%" for name, n in where.most_common(top)) or "—"
    return summaries


def _aiosqlite_line(number: int) -> str:
    import linecache

    import aiosqlite.core

    return linecache.getline(aiosqlite.core.__file__, number)


def _place(frames: list[str]) -> str:
    """The innermost frame, named by its package (`sqlalchemy`, `aiokafka`, `json` …) or, for our code,
    its module and function; the idle event loop is `idle`."""
    leaf = frames[-1] if frames else "?"
    if "select" in leaf and ("selectors" in leaf or "epoll" in leaf):
        return "idle (event loop waiting)"
    name, _, location = leaf.partition(" (")
    path = location.rstrip(")").split(":")[0]  # py-spy names files relative to sys.path: aiosqlite/core.py
    top = path.split("/")[0].removesuffix(".py")
    if not top:
        return "native code (no Python frame)"
    if top in OURS:
        return f"{path.removesuffix('.py').replace('/', '.')}.{name.strip()}"
    if top == "aiosqlite":
        line = location.rstrip(")").rpartition(":")[2]
        if line.isdigit() and "tx.get(" in _aiosqlite_line(int(line)):
            return "idle (aiosqlite's thread waiting for a statement)"
        return "sqlite (aiosqlite's thread: running a statement, or waiting for the lock)"
    return top


# --- raw ceilings --------------------------------------------------------------------------------------


async def broker_ceiling(bootstrap: str, records: int = 50_000) -> dict[str, float]:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    topic = f"bench.raw.{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=4, replication_factor=1)])
    finally:
        await admin.close()
    payload = b"x" * 1024
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=256 * 1024)
    await producer.start()
    try:
        started = time.perf_counter()
        batch = []
        for i in range(records):
            batch.append(await producer.send(topic, payload, key=str(i % 1000).encode()))
            if len(batch) >= 5000:
                await asyncio.gather(*batch)
                batch.clear()
        await asyncio.gather(*batch)
        produced = records / (time.perf_counter() - started)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=f"bench-{uuid.uuid4().hex[:6]}"
    )
    await consumer.start()
    try:
        read, started = 0, time.perf_counter()
        while read < records:
            batches = await consumer.getmany(timeout_ms=1000, max_records=5000)
            read += sum(len(b) for b in batches.values())
        consumed = records / (time.perf_counter() - started)
    finally:
        await consumer.stop()
    return {"produce_per_s": produced, "consume_per_s": consumed}


async def database_ceiling(url: str, single: int = 2_000, batched: int = 50_000) -> dict[str, float]:
    engine = create_async_engine(url)
    table = f"bench_{uuid.uuid4().hex[:8]}"
    try:
        async with engine.begin() as conn:
            await conn.execute(text(f"CREATE TABLE {table} (id VARCHAR(36) PRIMARY KEY, payload TEXT NOT NULL)"))
        statement = text(f"INSERT INTO {table} (id, payload) VALUES (:id, :payload)")
        row = "y" * 500
        started = time.perf_counter()
        for _ in range(single):
            async with engine.begin() as conn:
                await conn.execute(statement, {"id": str(uuid.uuid4()), "payload": row})
        one = single / (time.perf_counter() - started)
        started = time.perf_counter()
        for _ in range(batched // 500):
            async with engine.begin() as conn:
                await conn.execute(statement, [{"id": str(uuid.uuid4()), "payload": row} for _ in range(500)])
        many = batched / (time.perf_counter() - started)
        async with engine.begin() as conn:
            await conn.execute(text(f"DROP TABLE {table}"))
    finally:
        await engine.dispose()
    return {"one_per_txn": one, "batched": many}


# --- the run -------------------------------------------------------------------------------------------


def run_backend(args: argparse.Namespace, admin_url: str | None) -> dict[str, Any]:
    label = "PostgreSQL" if admin_url else "SQLite"
    people = People()
    results: dict[str, Any] = {"label": label}
    say(f"[{label}] one application in intake's API, in process, one at a time")
    results["request_cpu"] = request_cost(admin_url, 300, args.repeats)
    with stack(admin_url) as running:
        say(f"[{label}] stack up; warming up with 200 cases")
        asyncio.run(one_round(running, people, 200, args.concurrency))
        saturation, profiled = [], {}
        cpu: list[dict[str, float]] = []
        sent: list[dict[str, tuple[float, ...]]] = []  # per round: service → (statements, commits) per case
        for repeat in range(args.repeats):
            spies = profile_start(running, 8) if repeat == 0 and args.profile else {}
            groups = cpu_pids(running)
            before, sent_before = cpu_snapshot(groups), database_counts(running)
            result = asyncio.run(one_round(running, people, args.cases, args.concurrency))
            after, sent_after = cpu_snapshot(groups), database_counts(running)
            sent.append(
                {
                    svc: tuple(
                        (a - b) / len(result.determined) for a, b in zip(sent_after[svc], sent_before[svc], strict=True)
                    )
                    for svc in SERVICES
                }
            )
            if spies:
                profiled = profile_summary(spies)
            else:  # py-spy's own samples would be counted against the load generator's neighbours
                cpu.append({name: (after[name] - before[name]) * 1000 / len(result.determined) for name in groups})
            saturation.append(result)
            say(
                f"[{label}] saturation {repeat + 1}/{args.repeats}: {result.throughput:,.0f} cases/s, "
                f"{len(result.determined)}/{len(result.sent)} determined, errors {dict(result.errors) or 'none'}"
            )
        # At half the goal, and at half of what this stack sustains (its latency when not overloaded).
        half = statistics.median(r.throughput for r in saturation) / 2
        paced: dict[float, list[Round]] = {}
        for rate in sorted({args.rate, round(half, 1)}, reverse=True):
            paced[rate] = []
            for repeat in range(args.repeats):
                count = max(20, int(rate * args.paced_seconds))
                result = asyncio.run(one_round(running, people, count, max(args.concurrency, 64), rate=rate))
                paced[rate].append(result)
                latencies = result.latencies_ms()
                say(
                    f"[{label}] paced at {rate:.0f}/s {repeat + 1}/{args.repeats}: p50 "
                    f"{percentile(latencies, 50):,.0f} ms, p99 {percentile(latencies, 99):,.0f} ms, "
                    f"{len(result.determined)}/{len(result.sent)} determined, errors {dict(result.errors) or 'none'}"
                )
        say(f"[{label}] raw ceilings: broker and database")
        broker = asyncio.run(broker_ceiling(f"127.0.0.1:{running.ports['broker']}"))
        database = asyncio.run(database_ceiling(running.database_url("referral")))
        scaled = []
        if args.replicas > 1:
            running.add_worker_replicas()
            for repeat in range(args.repeats):
                result = asyncio.run(one_round(running, people, args.cases, args.concurrency))
                scaled.append(result)
                say(
                    f"[{label}] two workers per service {repeat + 1}/{args.repeats}: {result.throughput:,.0f} cases/s, "
                    f"errors {dict(result.errors) or 'none'}"
                )
    results.update(
        saturation=saturation,
        paced=paced,
        scaled=scaled,
        profile=profiled,
        broker=broker,
        database=database,
        cpu=cpu,
        sent=sent,
    )
    return results


def section(args: argparse.Namespace, runs: list[dict[str, Any]], command: str) -> str:
    rows = []
    for run in runs:
        label = run["label"]
        every = run["saturation"] + [r for rounds in run["paced"].values() for r in rounds] + run["scaled"]
        kinds: Counter[str] = sum((r.errors for r in every), Counter())
        errors = sum(kinds.values())
        named = ", ".join(f"{kind} ×{n}" for kind, n in kinds.most_common())  # a status code, or the exception
        errors_text = f"{errors} ({named})" if kinds else "0"
        lost = sum(len(r.sent) - len(r.determined) for r in every)
        rows.append(
            (
                f"{label}: saturation, {args.cases:,} cases, {args.concurrency} clients",
                "cases/s",
                spread([r.throughput for r in run["saturation"]]),
                f"≥ {GOAL_RATE:.0f}",
            )
        )
        for rate, rounds in run["paced"].items():
            goal = "< 1,000" if rate == args.rate else "—"
            rows += [
                (
                    f"{label}: paced at {rate:.0f}/s for {args.paced_seconds} s, submission → determination p50",
                    "ms",
                    spread([percentile(r.latencies_ms(), 50) for r in rounds]),
                    "—",
                ),
                (
                    f"{label}: paced at {rate:.0f}/s, p99",
                    "ms",
                    spread([percentile(r.latencies_ms(), 99) for r in rounds]),
                    goal,
                ),
            ]
        if run["scaled"]:
            rows.append(
                (
                    f"{label}: saturation with a second worker process per service",
                    "cases/s",
                    spread([r.throughput for r in run["scaled"]]),
                    "—",
                )
            )
        rows += [
            (
                f"{label}: cases not determined within 180 s / requests refused or failed",
                "count",
                f"{lost} / {errors_text}",
                "0 / 0",
            ),
            (f"{label} raw: broker produce, 1 KiB records", "records/s", f"{run['broker']['produce_per_s']:,.0f}", "—"),
            (f"{label} raw: broker consume", "records/s", f"{run['broker']['consume_per_s']:,.0f}", "—"),
            (
                f"{label} raw: database insert, one row per transaction",
                "rows/s",
                f"{run['database']['one_per_txn']:,.0f}",
                "—",
            ),
            (
                f"{label} raw: database insert, 500 rows per transaction",
                "rows/s",
                f"{run['database']['batched']:,.0f}",
                "—",
            ),
        ]
        for svc in SERVICES:
            rows.append(
                (
                    f"{label}: database statements / commits per case, {svc}",
                    "count",
                    f"{statistics.median(r[svc][0] for r in run['sent']):.1f} / "
                    f"{statistics.median(r[svc][1] for r in run['sent']):.2f}",
                    "—",
                )
            )
        per_request = run["request_cpu"]
        rows += [
            (
                f"{label}: one application in intake's API alone (in process, one at a time), CPU",
                "ms",
                spread(per_request, "{:.2f}"),
                "—",
            ),
            (
                f"{label}: the most one intake API process can take at that cost (1000 / median)",
                "applications/s",
                f"{1000 / statistics.median(per_request):,.0f}",
                "—",
            ),
        ]
        if run["cpu"]:
            names = list(run["cpu"][0])
            total = [sum(r.values()) for r in run["cpu"]]
            rows += [
                (f"{label}: CPU per case, {name}", "ms", spread([r[name] for r in run["cpu"]], "{:.2f}"), "—")
                for name in names
            ]
            rows.append((f"{label}: CPU per case, everything", "ms", spread(total, "{:.2f}"), "≤ 4 (2 cores / 500)"))
    table = ["| measure | unit | median (min–max) | goal |", "|---|---|---|---|"]
    table += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    profiles = []
    for run in runs:
        for svc, summary in sorted(run["profile"].items()):
            profiles.append(f"- {run['label']}, {svc}: {summary}")
    return (
        f"Command: `make bench` (`{command}`)  \nMachine: {machine()}  \n"
        f"Run: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {args.repeats} repeats of each round on one stack "
        "(after 200 warm-up cases). The load generator shares the machine's 2 cores with the four services, "
        "the broker and the sandbox bank.\n\n"
        + "\n".join(table)
        + "\n\n**Where the time goes** (py-spy, 50 samples/s for 8 s of the first saturation round; the share "
        "of samples by innermost frame, grouped by library, ours by module.function):\n\n"
        + ("\n".join(profiles) or "- (py-spy not available)")
        + "\n"
    )


def postgres_url(choice: str) -> str | None:
    if choice == "none":
        return None
    url = choice
    if choice == "auto":
        url = os.environ.get("DOUDI_TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres")
    try:
        asyncio.run(pg_admin(url, "SELECT 1"))
    except Exception:  # nothing answers: the SQLite figures stand alone
        return None
    return url


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rate", type=float, default=GOAL_RATE / 2)
    parser.add_argument("--paced-seconds", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--replicas", type=int, choices=(1, 2), default=2)
    parser.add_argument(
        "--postgres",
        default="auto",
        help="admin URL of a PostgreSQL server to run on as well; `auto`: DOUDI_TEST_DATABASE_URL or the local "
        "server, if one answers; `none`: SQLite only",
    )
    parser.add_argument("--no-profile", dest="profile", action="store_false")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args()
    command = "python -m bench.stack " + " ".join(sys.argv[1:])
    runs = [run_backend(args, None)]
    postgres = postgres_url(args.postgres)
    if postgres:
        runs.append(run_backend(args, postgres))
    else:
        say("PostgreSQL: not reachable, SQLite only")
    text_ = section(args, runs, command.strip())
    say(text_)
    write_section("End to end", text_, args.output)
    say(f"written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
