"""`make chaos`: a bounded run of faults under steady load, then the invariants, checked and printed.

It runs twice: on SQLite (the embedded stack, as `doudi up` runs it), then on PostgreSQL (a private,
throwaway cluster made for the run with `initdb` and `pg_ctl`; skipped, and said so, where those are not
installed). In each mode every service runs as three processes (api, worker, relay), so each can be killed
alone. While applications (a share of them emergencies, approved and paid at once), an officer's approvals,
the public notice running out and a payment run go on:

- every few seconds one process (a service's api, worker or relay: each of the twelve once in a random
  order, then again) is killed with SIGKILL at a random moment and started again a moment later;
- malformed records (not CloudEvents, a known type with a payload that breaks its contract, an oversized
  value) and duplicates of real records are written straight to the topics;
- once, the broker itself is killed (below);
- on PostgreSQL, once, the database is stopped (`pg_ctl stop -m fast`), left down for 30 seconds and started
  again (`pg_ctl start`) while the load goes on; meanwhile one api, one worker and one relay are restarted, so
  that some processes start while the database is away. The APIs answer 503 with Retry-After meanwhile: the
  clients wait as told and send the same request again (with the same Idempotency-Key where the API takes
  one). Every process's /readyz (the workers' and relays' on their metrics ports) is polled until it says
  ready again: how long each took is reported, and a process not ready again by itself within
  `--recovery-seconds` is a failed check.

Then the load stops, the stack is given time to settle, and the invariants are checked against the
databases, the broker and the sandbox bank:

1. every accepted application reached a decision or is visibly in progress (eligibility applied it; the
   case view moved past `submitted`);
2. no payment was made twice (one instruction per entitlement and period; at most one settlement per
   payment at the bank);
3. the ledger balances (debits equal credits in every transaction);
4. no event was lost: every outbox row was published, and every published event a service consumes is in
   its inbox or in the dead-letter topic with its reason;
5. no 500 (nor any 5xx but 503) for a well-formed request, and none given up on: a 503 (the database away or
   busy) means "try again later" and is counted apart, as is a refused connection while an API is down.

The broker's loss: the embedded broker keeps its log in memory, so every record in flight and every committed
offset is lost. It is started again on the same port with its topics; `doudi outbox republish --since <a
minute before the loss, or before the database's stop if that was earlier>` makes every service's relay send
again what it published since, in order and with the original event ids, and `doudi redrive --stuck
--quiet-minutes 0` re-drives every case intake's read model shows without progress (all the events of each,
from every outbox); consumers' inboxes drop what they had already applied. The workers are stopped while the
broker is down and started after the re-send: their consumers' positions point into the lost log, and a
consumer that kept them could skip the start of the new one (an earlier version of this run, which left the
workers running, ended with 151 events one service never applied; this is the likely cause).

The machine's shared PostgreSQL server is never touched: the PostgreSQL mode makes its own cluster in a
temporary folder, on a free port, and stops and deletes it afterwards, even when the run fails.
The summary goes to docs/reliability.md, one section per mode.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import pwd
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import create_async_engine

from bench.report import ROOT, machine, write_section
from bench.stack import People, application
from shared.auth import ensure_dev_keypair, mint_dev_token
from shared.messaging.embedded_broker import EmbeddedBroker, free_port
from shared.messaging.kafka import create_topics
from shared.messaging.topics import DLQ_SUFFIX, TOPICS

BIN = Path(sys.executable).parent
SERVICES = ("intake", "eligibility", "disbursement", "referral")
ROLES = ("api", "worker", "relay")
SERVICE_PROCESSES = {f"{svc} {role}" for svc in SERVICES for role in ROLES}
OUTPUT = ROOT / "docs" / "reliability.md"
# Log events worth quoting a line of as evidence when they appear.
NOTABLE = ("background_task_crashed", "unhandled_error", "event_dead_lettered", "consumer_stalled")


def say(message: str) -> None:
    print(f"[{datetime.now(UTC):%H:%M:%S}] {message}", flush=True)  # noqa: T201


# --- a private PostgreSQL cluster ----------------------------------------------------------------------


def find_postgres() -> tuple[Path | None, str]:
    """The folder holding initdb and pg_ctl, or None and why not."""
    candidates: list[Path] = []
    if found := shutil.which("pg_ctl"):
        candidates.append(Path(found).resolve().parent)
    versions = Path("/usr/lib/postgresql").glob("*/bin")
    candidates += sorted(versions, key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0, reverse=True)
    for folder in candidates:
        if (folder / "initdb").is_file() and (folder / "pg_ctl").is_file():
            if os.geteuid() == 0 and not shutil.which("runuser"):
                return None, "running as root, and initdb refuses root; `runuser` (to run it as `postgres`) is missing"
            if os.geteuid() == 0:
                try:
                    pwd.getpwnam("postgres")
                except KeyError:
                    return None, "running as root, and initdb refuses root; there is no `postgres` user to run it as"
            return folder, ""
    return None, "initdb and pg_ctl were not found (neither on PATH nor under /usr/lib/postgresql/*/bin)"


class PrivatePostgres:
    """A throwaway PostgreSQL cluster for one run: initdb into a temporary folder, its unix socket there too,
    listening on 127.0.0.1 on a free port; stopped and deleted by `destroy` (the machine's own server, which
    others use, is never touched). As root it runs as the `postgres` user, since initdb refuses root."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin = bin_dir
        self.port = free_port()
        self.owner = "postgres" if os.geteuid() == 0 else None
        self.root = Path(tempfile.mkdtemp(prefix="doudi-chaos-pg-"))
        if self.owner:
            shutil.chown(self.root, user=self.owner)
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"

    def _run(self, tool: str, *args: str, timeout: float = 120) -> None:
        argv = [str(self.bin / tool), *args]
        if self.owner:
            argv = ["runuser", "-u", self.owner, "--", *argv]
        # pg_ctl's output goes to a file: the server it starts must not inherit a pipe of ours.
        with (self.root / "pg_ctl.out").open("ab") as out:
            done = subprocess.run(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, timeout=timeout, start_new_session=True
            )
        if done.returncode != 0:
            tail = (self.root / "pg_ctl.out").read_text(errors="replace")[-800:]
            raise RuntimeError(f"{tool} {' '.join(args[:2])} failed ({done.returncode}): {tail}")

    def create(self, databases: list[str]) -> None:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-locale")
        self.start()
        asyncio.run(self._create_databases(databases))

    async def _create_databases(self, databases: list[str]) -> None:
        import asyncpg

        conn = await asyncpg.connect(host="127.0.0.1", port=self.port, user="postgres", database="postgres")
        try:
            for name in databases:
                await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c max_connections=400"
        self._run("pg_ctl", "start", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "-o", options)

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "stop", "-D", str(self.data), "-m", mode, "-w", "-t", "60")

    def url(self, service: str) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/doudi_{service}"

    def destroy(self) -> None:
        pid_file = self.data / "postmaster.pid"
        if pid_file.exists():
            try:
                self.stop("immediate")
            except Exception as exc:  # pg_ctl failed: end the server we started, by its pid
                say(f"pg_ctl stop failed ({exc}); killing the private server by its pid")
                with contextlib.suppress(OSError, ValueError, IndexError):
                    os.kill(int(pid_file.read_text().split()[0]), signal.SIGKILL)
        shutil.rmtree(self.root, ignore_errors=True)


# --- the stack, process by process ---------------------------------------------------------------------


@dataclass
class Supervised:
    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    ready_url: str = ""
    process: subprocess.Popen[bytes] | None = None
    kills: int = 0

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        if self.running:  # two faults raced to restart it: one process is enough
            return
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                self.argv, env=self.env, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True
            )

    def kill(self) -> bool:
        if self.running:
            assert self.process is not None
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()
            self.kills += 1
            return True
        return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()


class ChaosStack:
    def __init__(self, data_dir: Path, postgres: PrivatePostgres | None = None) -> None:
        self.data_dir = data_dir
        self.postgres = postgres
        self.logs = data_dir / "logs"
        self.logs.mkdir(parents=True)
        self.ports = {name: free_port() for name in ("broker", "sandbox_bank", *SERVICES)}
        self.broker = EmbeddedBroker(self.ports["broker"], self.logs / "broker.log")
        self.bootstrap = self.broker.bootstrap_servers
        self.maintenance = False
        self.env = {
            **os.environ,
            "DOUDI_DATA_DIR": str(data_dir),
            "DOUDI_KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "DOUDI_LOG_LEVEL": "WARNING",
            "DOUDI_RATE_LIMIT_PER_MINUTE": "100000000",
            "DOUDI_RATE_LIMIT_BURST": "1000000",
            "DOUDI_CONSUMER_STALL_SECONDS": "20",
            "SANDBOX_BANK_PORT": str(self.ports["sandbox_bank"]),
            "SANDBOX_BANK_STATEMENT_DIR": str(data_dir / "bank"),
            "DISBURSEMENT_BANK_URL": f"http://127.0.0.1:{self.ports['sandbox_bank']}",
            "ELIGIBILITY_NOTICE_CHECK_SECONDS": "1",
            **{f"{svc.upper()}_PORT": str(self.ports[svc]) for svc in SERVICES},
            **{f"{svc.upper()}_DATABASE_URL": self.database_url(svc) for svc in SERVICES},
        }
        self.bank = Supervised(
            "sandbox_bank", [sys.executable, "-m", "sandbox_bank"], self.env, self.logs / "sandbox_bank.log"
        )
        self.processes: dict[tuple[str, str], Supervised] = {}
        for svc in SERVICES:
            for role in ROLES:
                env, ready = self.env, self.url(svc) + "/readyz"
                if role != "api":  # a worker or relay serves /readyz on a metrics port of its own
                    port = free_port()
                    env, ready = {**self.env, "DOUDI_METRICS_PORT": str(port)}, f"http://127.0.0.1:{port}/readyz"
                self.processes[(svc, role)] = Supervised(
                    f"{svc} {role}", [sys.executable, "-m", svc, role], env, self.logs / f"{svc}-{role}.log", ready
                )

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    def database_url(self, service: str) -> str:
        if self.postgres is not None:
            return self.postgres.url(service)
        return f"sqlite+aiosqlite:///{self.data_dir / service}.db"

    def start(self) -> None:
        self.broker.start()
        asyncio.run(create_topics(self.bootstrap))
        subprocess.run([str(BIN / "doudi"), "migrate"], env=self.env, check=True, stdout=subprocess.DEVNULL)
        ensure_dev_keypair(self.data_dir)
        self.bank.start()
        for process in self.processes.values():
            process.start()
        deadline = time.monotonic() + 90
        with httpx.Client(timeout=2) as client:
            for svc in SERVICES:
                while True:
                    with contextlib.suppress(httpx.HTTPError):
                        if client.get(self.url(svc) + "/readyz").status_code == 200:
                            break
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"{svc} not ready; see {self.logs}")
                    time.sleep(0.3)

    def stop(self) -> None:
        for process in self.processes.values():
            process.stop()
        self.bank.stop()
        self.broker.stop()


# --- load ----------------------------------------------------------------------------------------------


@dataclass
class Load:
    accepted: list[str] = field(default_factory=list)
    accepted_at: list[float] = field(default_factory=list)  # monotonic
    statuses: Counter[str] = field(default_factory=Counter)
    refused_connections: int = 0
    unavailable: Counter[str] = field(default_factory=Counter)  # 503s, each waited out and sent again
    unavailable_at: list[float] = field(default_factory=list)  # monotonic
    server_errors: list[str] = field(default_factory=list)  # a 500, or any 5xx but 503
    gave_up: list[str] = field(default_factory=list)
    approvals: int = 0
    payment_runs: list[str] = field(default_factory=list)

    def record(self, what: str, response: httpx.Response) -> None:
        self.statuses[f"{what} {response.status_code}"] += 1
        if response.status_code >= 500:
            self.server_errors.append(f"{what}: {response.status_code} {response.text[:200]}")


def token(stack: ChaosStack, role: str, subject: str) -> dict[str, str]:
    minted = mint_dev_token(
        stack.data_dir, role=role, region="310115", subject=subject, issuer="doudi-dev", audience="doudi"
    )
    return {"Authorization": f"Bearer {minted}"}


async def with_retries(load: Load, what: str, call: Any, patience: float = 180.0) -> httpx.Response | None:
    """A client as the window system is one: a refused connection (the API is down) is tried again shortly;
    a 503 (the database away, or every connection busy) after the Retry-After it names. The same request is
    sent again, so a call with an Idempotency-Key keeps its key. None: given up after `patience` seconds."""
    deadline = time.monotonic() + patience
    while time.monotonic() < deadline:
        try:
            response = await call()
        except httpx.TransportError:
            load.refused_connections += 1
            await asyncio.sleep(0.25)
            continue
        if response.status_code != 503:
            return response
        load.unavailable[what] += 1
        load.unavailable_at.append(time.monotonic())
        try:
            wait = float(response.headers.get("Retry-After", "1"))
        except ValueError:
            wait = 1.0
        await asyncio.sleep(min(max(wait, 0.1), 10.0))
    load.gave_up.append(what)
    return None


async def submitter(stack: ChaosStack, load: Load, stop: asyncio.Event, rate: float, rng: random.Random) -> None:
    people = People()
    what = "POST /v1/applications"
    async with httpx.AsyncClient(
        base_url=stack.url("intake"), headers=token(stack, "window", "window-1"), timeout=15
    ) as client:
        n = 0
        while not stop.is_set():
            body = application(people)
            if rng.random() < 0.4:  # an emergency: aid first, approved and paid at once
                body["emergency"] = {"kind": "fire", "occurred_on": date.today().isoformat(), "region": "310115"}
                body["programmes"] = ["temporary_aid", "subsistence_allowance"]
            key = f"chaos-{n}"
            response = await with_retries(
                load,
                what,
                lambda b=body, k=key: client.post("/v1/applications", json=b, headers={"Idempotency-Key": k}),
            )
            n += 1
            if response is not None:
                load.record(what, response)
                if response.status_code in (200, 201):
                    load.accepted.append(response.json()["case_id"])
                    load.accepted_at.append(time.monotonic())
            await asyncio.sleep(1 / rate)


async def officer(stack: ChaosStack, load: Load, stop: asyncio.Event) -> None:
    async with httpx.AsyncClient(
        base_url=stack.url("eligibility"), headers=token(stack, "officer", "officer-1"), timeout=15
    ) as client:
        while not stop.is_set():
            response = await with_retries(
                load,
                "GET /v1/determinations",
                lambda: client.get("/v1/determinations", params={"status": "proposed", "limit": 50}),
            )
            if response is not None and response.status_code == 200:
                for item in response.json()["items"]:
                    what = "POST /v1/determinations/{id}/approve"
                    approved = await with_retries(
                        load, what, lambda i=item: client.post(f"/v1/determinations/{i['determination_id']}/approve")
                    )
                    if approved is not None:
                        load.record(what, approved)
                        load.approvals += approved.status_code == 200
            elif response is not None:
                load.record("GET /v1/determinations", response)
            await asyncio.sleep(1.0)


async def payment_run(stack: ChaosStack, load: Load, period: str) -> None:
    what = "POST /v1/payment-runs"
    async with httpx.AsyncClient(
        base_url=stack.url("disbursement"), headers=token(stack, "reconciler", "reconciler-1"), timeout=60
    ) as client:
        response = await with_retries(load, what, lambda: client.post("/v1/payment-runs", json={"period": period}))
        if response is not None:
            load.record(what, response)
            load.payment_runs.append(f"{period}: {response.status_code}")


def advance_clock(stack: ChaosStack, by: str) -> None:
    subprocess.run(
        [str(BIN / "doudi"), "clock", "advance", "--by", by], env=stack.env, check=True, stdout=subprocess.DEVNULL
    )


# --- faults --------------------------------------------------------------------------------------------


@dataclass
class Outage:
    """The database stopped and started again, and how the stack came back."""

    planned: float
    at: float = 0.0  # seconds into the load
    stop_took: float = 0.0
    down_for: float = 0.0
    start_took: float = 0.0
    down_at: float = 0.0  # monotonic
    up_at: float = 0.0
    started_while_down: list[str] = field(default_factory=list)
    ready_after: dict[str, float] = field(default_factory=dict)  # process → s after the database was back
    not_ready: dict[str, str] = field(default_factory=dict)  # process → its last readiness answer
    measured: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class Faults:
    kills: list[str] = field(default_factory=list)
    kill_times: list[tuple[float, str]] = field(default_factory=list)  # monotonic, process
    injected: Counter[str] = field(default_factory=Counter)
    replayed: list[str] = field(default_factory=list)
    redriven: dict[str, Any] = field(default_factory=dict)
    republish_since: datetime | None = None
    broker_lost_at: datetime | None = None
    outage: Outage | None = None

    def killed(self, name: str) -> None:
        self.kills.append(name)
        self.kill_times.append((time.monotonic(), name))


async def killer(stack: ChaosStack, faults: Faults, stop: asyncio.Event, rng: random.Random, every: float) -> None:
    targets: list[tuple[str, str]] = []
    while not stop.is_set():
        await asyncio.sleep(rng.uniform(every * 0.5, every * 1.5))
        if stop.is_set():
            break
        if stack.maintenance:
            continue
        if not targets:  # every process once, in a random order, then again
            targets = sorted(stack.processes)
            rng.shuffle(targets)
        target = targets.pop()
        process = stack.processes[target]
        if process.kill():
            faults.killed(process.name)
            say(f"killed {process.name} (SIGKILL)")
        await asyncio.sleep(rng.uniform(0.5, 3.0))
        process.start()


async def lose_the_broker(stack: ChaosStack, faults: Faults, margin: float) -> None:
    """SIGKILL the embedded broker (its log is in memory: everything in flight is gone, committed offsets
    too), start it again on the same port with its topics, and re-drive every case from the outboxes:
    `doudi outbox republish` sends again what each service published in the last `margin` seconds, and
    `doudi redrive --stuck --quiet-minutes 0` every event of each case the read model shows without progress."""
    assert stack.broker.process is not None
    stack.maintenance = True  # no other kill meanwhile
    lost_at = datetime.now(UTC)
    faults.broker_lost_at = lost_at
    stack.broker.process.send_signal(signal.SIGKILL)
    stack.broker.process.wait()
    stack.broker.process = None
    faults.killed("broker")
    say("killed the broker (SIGKILL): its log and the consumers' offsets are gone")
    # The workers' consumers hold positions in the lost log; once the new log grows past them they would
    # skip what lies below. So, as the operations guide says: stop the workers before the broker returns,
    # start them after the outboxes have re-sent (their groups then begin at the new log's start).
    workers = [p for (svc, role), p in stack.processes.items() if role == "worker"]
    await asyncio.gather(*(asyncio.to_thread(p.stop) for p in workers))
    await asyncio.sleep(1)
    for _ in range(50):  # the port is free again once the kernel lets go of it
        try:
            stack.broker.start()
            break
        except Exception:
            await asyncio.sleep(0.2)
    await create_topics(stack.bootstrap)
    since = lost_at.timestamp() - margin
    if faults.outage is not None and faults.outage.down_at:
        # The operations guide's rule: before the loss, less the longest consumer lag. After the database's
        # stop the consumers were backing off and then catching up, so their lag may reach back to its start.
        since = min(since, time.time() - (time.monotonic() - faults.outage.down_at) - 10)
    faults.republish_since = datetime.fromtimestamp(since, UTC)
    republished = await asyncio.to_thread(
        subprocess.run,
        [str(BIN / "doudi"), "outbox", "republish", "--since", faults.republish_since.isoformat()],
        env=stack.env,
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    # "intake: 164 events published since … will be sent again" → "intake 164"
    faults.replayed = [
        f"{line.split(':')[0]} {line.split(':')[1].split()[0]}" for line in republished.stdout.strip().splitlines()
    ]
    # The stuck-case sweep, with no quiet time: every case not yet past verification or a determination, and
    # every determination overdue, is sent again whole from every outbox.
    redriven = await asyncio.to_thread(
        subprocess.run,
        [str(BIN / "doudi"), "redrive", "--stuck", "--quiet-minutes", "0"],
        env=stack.env,
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    answer = json.loads(redriven.stdout.strip().splitlines()[-1])
    faults.redriven = {
        "cases": answer["cases"],
        "why": Counter(case.get("why", "?") for case in answer["stuck"]),
        "sent": answer["events_sent_again"],
    }
    for process in workers:
        process.start()
    stack.maintenance = False
    say(
        "broker back; republished: "
        + "; ".join(faults.replayed)
        + f"; redrive --stuck: {answer['cases']} cases, events sent again {answer['events_sent_again']}"
    )


async def stop_the_database(
    stack: ChaosStack,
    faults: Faults,
    rng: random.Random,
    outage: Outage,
    back: asyncio.Event,
    recovery: float,
    restart: bool = True,
) -> None:
    """`pg_ctl stop -m fast` (every session ended, in-flight transactions rolled back), `outage.planned`
    seconds down, `pg_ctl start`; meanwhile one api, one worker and one relay are restarted, so that they
    start while the database is away (with `restart` false: no process is killed or started meanwhile, the
    outage alone). Then every process's /readyz is polled until it is ready again."""
    pg = stack.postgres
    assert pg is not None
    say(f"stopping PostgreSQL (pg_ctl stop -m fast) for {outage.planned:g} s")
    began = time.monotonic()
    await asyncio.to_thread(pg.stop, "fast")
    outage.down_at = time.monotonic()
    outage.stop_took = outage.down_at - began
    faults.killed("postgresql (pg_ctl stop -m fast)")
    stack.maintenance = not restart
    await asyncio.sleep(outage.planned / 3)
    for role in ROLES if restart else ():
        process = stack.processes[(rng.choice(SERVICES), role)]
        if process.kill():
            faults.killed(process.name)
        process.start()
        say(f"restarted {process.name} while the database is away")
    await asyncio.sleep(max(0.0, outage.planned - (time.monotonic() - outage.down_at)))
    began = time.monotonic()
    await asyncio.to_thread(pg.start)
    outage.up_at = time.monotonic()
    outage.start_took = outage.up_at - began
    outage.down_for = outage.up_at - outage.down_at
    outage.started_while_down = sorted(
        {name for at, name in faults.kill_times if outage.down_at <= at <= outage.up_at and " " in name}
        - {"postgresql (pg_ctl stop -m fast)"}
    )
    back.set()
    # No kill while the recovery is measured: a process killed now would be counted as slow to recover.
    stack.maintenance = True
    say(f"PostgreSQL started again after {outage.down_for:.1f} s; waiting for every process to say ready")
    last: dict[str, str] = {}
    async with httpx.AsyncClient(timeout=3) as client:
        while time.monotonic() - outage.up_at < recovery:
            for process in stack.processes.values():
                if process.name in outage.ready_after:
                    continue
                try:
                    answer = await client.get(process.ready_url)
                except httpx.HTTPError as exc:
                    last[process.name] = f"no answer ({type(exc).__name__})"
                    continue
                if answer.status_code == 200:
                    outage.ready_after[process.name] = time.monotonic() - outage.up_at
                else:
                    last[process.name] = f"{answer.status_code} {answer.text[:300]}"
            if len(outage.ready_after) == len(stack.processes):
                break
            await asyncio.sleep(0.5)
    outage.not_ready = {name: why for name, why in last.items() if name not in outage.ready_after}
    stack.maintenance = False
    say(
        f"ready again: {len(outage.ready_after)} of {len(stack.processes)} processes, the last after "
        f"{max(outage.ready_after.values(), default=0):.1f} s"
        + (f"; NOT ready after {recovery:g} s: {outage.not_ready}" if outage.not_ready else "")
    )
    outage.measured.set()


async def inject(stack: ChaosStack, faults: Faults) -> None:
    """Records no producer of ours would write, and copies of real ones, straight onto the topics."""
    producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap, max_request_size=2_000_000)
    await producer.start()
    try:
        for topic in ("intake.application", "eligibility.determination", "disbursement.payment"):
            await producer.send_and_wait(topic, b"{not json", key=b"chaos")
            faults.injected["not a CloudEvent"] += 1
            headers = [
                ("ce_specversion", b"1.0"),
                ("ce_id", f"chaos-{topic}".encode()),
                ("ce_source", b"/chaos"),
                ("ce_type", b"intake.application.submitted" if topic == "intake.application" else b"x.y.z"),
                ("content-type", b"application/json"),
            ]
            await producer.send_and_wait(topic, b'{"case_id": 42}', key=b"chaos", headers=headers)
            faults.injected["breaks its contract or unknown type"] += 1
        await producer.send_and_wait("intake.application", b"x" * 900_000, key=b"chaos")
        faults.injected["oversized (900 kB)"] += 1
        copies = await copy_records(stack, "intake.application", 20)
        for key, value, headers in copies:
            await producer.send_and_wait("intake.application", value, key=key, headers=headers)
        faults.injected["duplicate of a real record"] += len(copies)
    finally:
        await producer.stop()


async def copy_records(stack: ChaosStack, topic: str, limit: int) -> list[tuple[Any, Any, Any]]:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=stack.bootstrap, auto_offset_reset="earliest", group_id=f"chaos-copy-{time.time_ns()}"
    )
    await consumer.start()
    copies: list[tuple[Any, Any, Any]] = []
    try:
        deadline = time.monotonic() + 10
        while len(copies) < limit and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    if record.headers and any(k == "ce_type" for k, _ in record.headers):
                        copies.append((record.key, record.value, list(record.headers)))
    finally:
        await consumer.stop()
    return copies[:limit]


# --- invariants ----------------------------------------------------------------------------------------


@dataclass
class Check:
    name: str
    holds: bool
    detail: str


async def scalar(url: str, statement: Any) -> Any:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return (await conn.execute(statement)).all()
    finally:
        await engine.dispose()


async def settled(stack: ChaosStack, timeout: float) -> bool:
    """Wait until every outbox row is published and every published event is in each consumer's inbox or in
    a dead-letter topic (a consumer whose group is still rebalancing after a kill catches up meanwhile)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        unpublished, missing, _published, _letters = await event_gaps(stack)
        if unpublished == 0 and not missing:
            return True
        say(f"settling: {unpublished} outbox rows unpublished, {len(missing)} events not yet consumed")
        await asyncio.sleep(5)
    return False


async def dead_letters(stack: ChaosStack) -> list[dict[str, str]]:
    topics = [t.name + DLQ_SUFFIX for t in TOPICS]
    consumer = AIOKafkaConsumer(
        *topics, bootstrap_servers=stack.bootstrap, auto_offset_reset="earliest", group_id=f"chaos-dlq-{time.time_ns()}"
    )
    await consumer.start()
    found: list[dict[str, str]] = []
    try:
        idle = 0
        while idle < 3:
            batch = await consumer.getmany(timeout_ms=1000)
            idle = 0 if batch else idle + 1
            for records in batch.values():
                for record in records:
                    headers = {k: v.decode(errors="replace") for k, v in (record.headers or [])}
                    found.append(
                        {
                            "topic": record.topic,
                            "event_id": headers.get("ce_id", ""),
                            "consumer": headers.get("x-consumer", ""),
                            "error": headers.get("x-exception-class", "")
                            + ": "
                            + headers.get("x-exception-message", "")[:120],
                        }
                    )
    finally:
        await consumer.stop()
    return found


async def check(stack: ChaosStack, load: Load) -> tuple[list[Check], list[dict[str, str]]]:
    from disbursement.models import LedgerEntry, Payment
    from eligibility.models import Determination, PendingVerification
    from intake.models import Case

    checks: list[Check] = []
    accepted = set(load.accepted)
    decided = {
        row[0] for row in await scalar(stack.database_url("eligibility"), select(Determination.case_id).distinct())
    }
    waiting = {row[0] for row in await scalar(stack.database_url("eligibility"), select(PendingVerification.case_id))}
    cases = dict(await scalar(stack.database_url("intake"), select(Case.case_id, Case.status)))
    unapplied = sorted(accepted - decided - waiting)
    unseen = sorted(c for c in accepted if cases.get(c, "submitted") == "submitted")
    by_status = Counter(cases.get(c, "missing") for c in accepted)
    checks.append(
        Check(
            "every accepted application reached a decision or is visibly in progress",
            not unapplied and not unseen,
            f"{len(accepted)} accepted; case statuses {dict(by_status)}; not applied by eligibility: "
            f"{len(unapplied)}; case view still `submitted`: {len(unseen)}",
        )
    )

    twice = await scalar(
        stack.database_url("disbursement"),
        select(Payment.entitlement_id, Payment.period, func.count())
        .group_by(Payment.entitlement_id, Payment.period)
        .having(func.count() > 1),
    )
    settlements: Counter[str] = Counter()
    for path in sorted((stack.data_dir / "bank").glob("statement-*.csv")):
        for line in path.read_text(encoding="utf-8").splitlines()[1:]:
            parts = line.split(",")
            if len(parts) >= 4 and parts[3] == "settled":
                settlements[parts[1]] += 1
    paid_twice = {p: n for p, n in settlements.items() if n > 1}
    payments = await scalar(
        stack.database_url("disbursement"), select(Payment.status, func.count()).group_by(Payment.status)
    )
    checks.append(
        Check(
            "no payment made twice",
            not twice and not paid_twice,
            f"payments by status {dict(payments)}; {sum(settlements.values())} settlements at the bank; "
            f"instructions doubled: {len(twice)}; payments the bank settled twice: {len(paid_twice)}",
        )
    )

    unbalanced = await scalar(
        stack.database_url("disbursement"),
        select(LedgerEntry.txn_id, LedgerEntry.side, func.count()).group_by(LedgerEntry.txn_id, LedgerEntry.side),
    )
    sums: dict[str, dict[str, Any]] = {}
    for txn_id, side, amount in await scalar(
        stack.database_url("disbursement"), select(LedgerEntry.txn_id, LedgerEntry.side, LedgerEntry.amount)
    ):
        sums.setdefault(txn_id, {"debit": 0, "credit": 0})[side] += amount
    off = [t for t, s in sums.items() if s["debit"] != s["credit"]]
    checks.append(
        Check(
            "the ledger balances",
            not off,
            f"{len(sums)} transactions, {len(unbalanced)} (transaction, side) groups; unbalanced: {len(off)}",
        )
    )

    unpublished, missing, published, letters = await event_gaps(stack)
    checks.append(
        Check(
            "no event lost",
            unpublished == 0 and not missing,
            f"{published} events published, {unpublished} outbox rows unpublished; consumed-or-dead-lettered "
            f"gaps: {len(missing)}{' e.g. ' + '; '.join(missing[:3]) if missing else ''}; "
            f"{len(letters)} records in DLQs",
        )
    )
    unavailable = sum(load.unavailable.values())
    checks.append(
        Check(
            "no 500 for a well-formed request (503: try again later, counted apart)",
            not load.server_errors and not load.gave_up,
            f"{sum(load.statuses.values())} answers {dict(sorted(load.statuses.items()))}; 500 or another 5xx "
            f"but 503: {len(load.server_errors)}{' e.g. ' + load.server_errors[0] if load.server_errors else ''}; "
            f"requests given up on: {len(load.gave_up)}; 503 (Retry-After), waited out and sent again: "
            f"{unavailable}; connections refused while an API was down (retried): {load.refused_connections}",
        )
    )
    return checks, letters


async def event_gaps(stack: ChaosStack) -> tuple[int, list[str], int, list[dict[str, str]]]:
    """Outbox rows not published; published events a consumer neither applied nor dead-lettered."""
    from doudi.stack import load_spec

    letters = await dead_letters(stack)
    lettered = {(d["consumer"], d["event_id"]) for d in letters}
    unpublished, missing, published = 0, [], 0
    consumers = {svc: set(load_spec(svc).handlers(_settings(stack, svc))) for svc in SERVICES}
    inboxes = {}
    for svc in SERVICES:
        tables = load_spec(svc).tables
        inboxes[svc] = {row[0] for row in await scalar(stack.database_url(svc), select(tables.inbox.c.event_id))}
    for svc in SERVICES:
        tables = load_spec(svc).tables
        rows = await scalar(
            stack.database_url(svc),
            select(tables.outbox.c.event_id, tables.outbox.c.event_type, tables.outbox.c.published_at),
        )
        for event_id, event_type, published_at in rows:
            if published_at is None:
                unpublished += 1
                continue
            published += 1
            for consumer, types in consumers.items():
                if event_type in types and event_id not in inboxes[consumer] and (consumer, event_id) not in lettered:
                    missing.append(
                        f"{consumer} never applied {event_type} {event_id} (published {published_at:%H:%M:%S})"
                    )
    return unpublished, missing, published, letters


def _settings(stack: ChaosStack, svc: str) -> Any:
    from doudi.stack import load_spec

    return load_spec(svc).settings_cls(data_dir=stack.data_dir, env="test")


# --- logs ----------------------------------------------------------------------------------------------


def cause(entry: dict[str, Any]) -> str:
    """The line of a logged traceback that says what was raised (not SQLAlchemy's SQL, parameters or link)."""
    lines = str(entry.get("exception", "")).strip().splitlines()
    for line in reversed(lines):
        if line and not line[0].isspace() and not line.startswith(("(Background", "[SQL", "[parameters")):
            return line[:300]
    return str(entry.get("error", ""))[:300]


@dataclass
class LogSummary:
    counts: dict[str, Counter[str]] = field(default_factory=dict)  # process → warning/error event → count
    first: dict[str, str] = field(default_factory=dict)  # notable event → its first line
    unhandled: Counter[str] = field(default_factory=Counter)  # the causes of 500s, by process and path
    lettered: Counter[str] = field(default_factory=Counter)  # what the workers dead-lettered, and why


def log_events(stack: ChaosStack) -> LogSummary:
    """Warnings and errors in each process's log, counted by event; the first line of each notable event;
    the causes of the API's 500s (`unhandled_error`); what each worker dead-lettered and why (the broker's
    loss erases the dead-letter records written before it, the logs keep them)."""
    summary = LogSummary()
    counts, first, unhandled = summary.counts, summary.first, summary.unhandled
    for path in sorted(stack.logs.glob("*-*.log")):
        name = path.stem.replace("-", " ")
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if not isinstance(entry, dict) or entry.get("level") not in ("warning", "error", "critical"):
                continue
            event = str(entry.get("event", "?"))
            counts.setdefault(name, Counter())[event] += 1
            if event == "unhandled_error":
                unhandled[f"{name} {entry.get('path', '')}: {cause(entry)}"] += 1
            if event == "event_dead_lettered":
                reason = str(entry.get("error", "")).strip().splitlines()[0][:160] if entry.get("error") else "?"
                summary.lettered[f"{name}, from {entry.get('topic')}: {reason}"] += 1
            if event in NOTABLE and event not in first:
                keep = ("timestamp", "task", "path", "topic", "error", "event_id")
                shown = {k: str(entry[k])[:200] for k in keep if k in entry}
                if "exception" in entry:
                    shown["raised"] = cause(entry)
                first[event] = f"{name}: {event} " + json.dumps(shown, ensure_ascii=False)
    return summary


def crashed_tasks(stack: ChaosStack) -> list[str]:
    """Background tasks (a relay, a consumer, a worker's loop) that died while their process ran on: the
    process stays up and may still say ready, but that part of it does nothing until it is restarted."""
    found = []
    for path in sorted(stack.logs.glob("*-*.log")):
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            if "background_task_crashed" not in line:
                continue
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                found.append(
                    f"{path.stem.replace('-', ' ')}: task {entry.get('task')} at {entry.get('timestamp')}: "
                    + cause(entry)
                )
    return found


# --- the run -------------------------------------------------------------------------------------------


async def run(stack: ChaosStack, args: argparse.Namespace, seconds: int) -> tuple[Load, Faults]:
    rng = random.Random(args.seed)
    load, faults, stop = Load(), Faults(), asyncio.Event()
    tasks = [
        asyncio.create_task(submitter(stack, load, stop, args.rate, rng)),
        asyncio.create_task(officer(stack, load, stop)),
        asyncio.create_task(killer(stack, faults, stop, rng, args.kill_every)),
    ]
    back = asyncio.Event()  # the database is up (always, but during the outage)
    back.set()
    if stack.postgres is not None:
        faults.outage = Outage(planned=args.outage_seconds)
    started = time.monotonic()
    phase = 0
    while time.monotonic() - started < seconds:
        await asyncio.sleep(1)
        elapsed = time.monotonic() - started
        if faults.outage is not None and not faults.outage.at and elapsed > seconds * 0.1:
            faults.outage.at = elapsed
            back.clear()
            tasks.append(
                asyncio.create_task(
                    stop_the_database(
                        stack, faults, rng, faults.outage, back, args.recovery_seconds, args.restart_while_down
                    )
                )
            )
        # The other faults come after the database is back (each its own event), and the broker's loss after
        # every process said ready again (or the wait for it ended): its own kills would blur the measure.
        if phase == 0 and elapsed > seconds * 0.3 and back.is_set():
            phase = 1
            say("the development clock moves 8 days: public notices end, approvals follow")
            advance_clock(stack, "8d")
        if phase == 1 and elapsed > seconds * 0.45 and (faults.outage is None or faults.outage.measured.is_set()):
            phase = 2
            if args.broker:
                await lose_the_broker(stack, faults, margin=60)
        if phase == 2 and elapsed > seconds * 0.6:
            phase = 3
            say("injecting malformed, oversized and duplicate records")
            await inject(stack, faults)
        if phase == 3 and elapsed > seconds * 0.75:
            phase = 4
            period = _next_month(date.today())
            say(f"payment run for {period}")
            await payment_run(stack, load, period)
        if int(elapsed) % 15 == 0:
            say(
                f"{len(load.accepted)} accepted, {load.approvals} approvals, {len(faults.kills)} kills, "
                f"{sum(load.unavailable.values())} answers 503"
            )
    if phase < 4:
        say(f"NOTE: the load ended before every fault was applied (phase {phase} of 4)")
    stop.set()
    for task in tasks:
        task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.gather(*tasks, return_exceptions=True)
    if stack.postgres is not None and not back.is_set():  # the run was cut short while the database was down
        await asyncio.to_thread(stack.postgres.start)
    for process in stack.processes.values():  # whatever the last kill left down comes back
        if not process.running:
            process.start()
    return load, faults


def _next_month(day: date) -> str:
    return f"{day.year + day.month // 12}-{day.month % 12 + 1:02d}"


@dataclass
class ModeResult:
    title: str
    text: str
    ok: bool


def outage_check(outage: Outage, recovery: float, crashed: list[str], lettered: Counter[str]) -> Check:
    # The consumer's contract: a database error is never the record's fault, so never dead-letters it.
    wrongly = {what: n for what, n in lettered.items() if "sqlalchemy" in what or "asyncpg" in what}
    return Check(
        f"the stack recovered by itself: every process ready again after the database returned (within "
        f"{recovery:g} s), no background task died, no event dead-lettered for a database error",
        not outage.not_ready and bool(outage.ready_after) and not crashed and not wrongly,
        f"{len(outage.ready_after)} of 12 ready; the last after {max(outage.ready_after.values(), default=0):.1f} s"
        + ("; not ready: " + "; ".join(f"{n}: {w}" for n, w in outage.not_ready.items()) if outage.not_ready else "")
        + f"; background tasks that died while their process ran on: {len(crashed)}"
        + (" (" + "; ".join(crashed) + ")" if crashed else "")
        + f"; events dead-lettered for a database error: {sum(wrongly.values())}"
        + (" (" + "; ".join(f"{n} × {what}" for what, n in wrongly.items()) + ")" if wrongly else ""),
    )


def _since(times: list[float], moment: float) -> list[float]:
    return [t - moment for t in times if t >= moment]


def report(
    mode: str,
    args: argparse.Namespace,
    seconds: int,
    took: float,
    load: Load,
    faults: Faults,
    checks: list[Check],
    letters: list[dict[str, str]],
    quiet: bool,
    logs: LogSummary,
) -> str:
    postgres = mode == "postgres"
    title = (
        f"PostgreSQL 15 (a private cluster), stopped for {args.outage_seconds:g} s"
        if postgres
        else "SQLite (the embedded stack)"
    )
    database = "PostgreSQL (a private, throwaway cluster on 127.0.0.1)" if postgres else "SQLite"
    lines = [
        f"## {title}",
        "",
        f"Command: `python -m bench.chaos --mode {mode} --{'pg-' if postgres else ''}seconds {seconds} --rate "
        f"{args.rate:g} --kill-every {args.kill_every:g} --seed {args.seed}"
        + (
            f" --outage-seconds {args.outage_seconds:g} --recovery-seconds {args.recovery_seconds:g}"
            + ("" if args.restart_while_down else " --no-restart-while-down")
            + "`"
            if postgres
            else "`"
        )
        + "  ",
        f"Machine: {machine()}  ",
        f"Run: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {took:.0f} s in all; {seconds} s of load at {args.rate:g} "
        "applications/s (40% emergencies), an officer approving every proposal, the clock moved past the public "
        f"notice, one payment run; {database} and the embedded broker.",
        "",
        "### Faults",
        "",
        f"- {len(faults.kills)} faults: "
        + ", ".join(f"{name} ×{n}" for name, n in sorted(Counter(faults.kills).items()))
        + f" ({len(set(faults.kills) & SERVICE_PROCESSES)} of the 12 service processes killed at least once)",
        "- records written straight to the topics: "
        + (", ".join(f"{what} ×{n}" for what, n in faults.injected.items()) or "none (the load ended first)"),
    ]
    if faults.replayed:
        why = ", ".join(f"{n} {reason}" for reason, n in faults.redriven.get("why", Counter()).most_common())
        sent = ", ".join(f"{svc} {n}" for svc, n in faults.redriven.get("sent", {}).items())
        lines += [
            "- the broker killed with SIGKILL and restarted empty, the workers stopped until the outboxes had sent "
            f"again; `doudi outbox republish --since {faults.republish_since:%H:%M:%S}` (the broker lost at "
            f"{faults.broker_lost_at:%H:%M:%S} UTC; 60 s before, or 10 s before the database's stop if earlier) "
            "marked for sending again: " + ", ".join(faults.replayed),
            f"- then `doudi redrive --stuck --quiet-minutes 0` re-drove {faults.redriven.get('cases', 0)} cases "
            f"({why or 'none'}); events marked for sending again: {sent or 'none'}",
        ]
    else:
        lines.append("- the broker was not killed (`--no-broker`, or the load ended first)")
    outage = faults.outage
    if outage is not None and outage.down_at:
        after = _since(load.unavailable_at, outage.up_at)
        during = [t for t in load.unavailable_at if outage.down_at <= t < outage.up_at]
        first_accept = _since(load.accepted_at, outage.up_at)
        ready = sorted(outage.ready_after.items(), key=lambda kv: kv[1])
        lines += [
            f"- the database stopped with `pg_ctl stop -m fast` ({outage.stop_took:.1f} s) at "
            f"{outage.at:.0f} s into the load, down {outage.down_for:.1f} s, started with `pg_ctl start` "
            f"({outage.start_took:.1f} s); started (or restarted) while it was away: "
            + (", ".join(outage.started_while_down) or "none"),
            "",
            "### The database outage",
            "",
            f"- 503 answers (Retry-After; each request sent again after it): {sum(load.unavailable.values())} in "
            f"the run, {len(during)} while the database was down, {len(after)} after it was back"
            + (f" (the last {max(after):.1f} s after)" if after else "")
            + "; by request: "
            + (", ".join(f"{what} ×{n}" for what, n in load.unavailable.items()) or "none"),
            "- the first application accepted after the database was back: "
            + (f"{min(first_accept):.1f} s after" if first_accept else "none"),
            "- each process's /readyz ready again, seconds after the database was back: "
            + (", ".join(f"{name} {s:.1f}" for name, s in ready) or "none"),
            f"- not ready {args.recovery_seconds:g} s after: "
            + ("; ".join(f"**{n}**: {w}" for n, w in outage.not_ready.items()) or "none"),
        ]
    elif postgres:
        lines.append("- the database was not stopped (the load ended first)")
    lines += [
        "",
        "### Invariants",
        "",
        "Settled after the load (every outbox row published, every event consumed or dead-lettered): "
        + ("yes." if quiet else f"**NO** (not within {args.settle_seconds:g} s)."),
        "",
        "| invariant | holds | detail |",
        "|---|---|---|",
    ]
    lines += [f"| {c.name} | {'yes' if c.holds else '**NO**'} | {c.detail} |" for c in checks]
    reasons = Counter(f"{d['topic']} ({d['consumer']}): {d['error']}" for d in letters)
    lines += ["", "### Dead letters, with their reasons", ""]
    lines += [f"- {n} × {reason}" for reason, n in reasons.most_common()] or ["- none"]
    counts, first, unhandled = logs.counts, logs.first, logs.unhandled
    lines += ["", "### Dead-lettered, from the workers' logs (kept there even when the broker's loss erased them)", ""]
    lines += [f"- {n} × {what}" for what, n in logs.lettered.most_common()] or ["- none"]
    lines += ["", "### What the 500s were, from the services' logs", ""]
    lines += [f"- {n} × {what}" for what, n in unhandled.most_common()] or ["- none"]
    lines += ["", "### Warnings and errors in the services' logs, by process", ""]
    lines += [
        f"- {name}: " + ", ".join(f"{event} ×{n}" for event, n in events.most_common())
        for name, events in sorted(counts.items())
    ] or ["- none"]
    if first:
        lines += ["", "The first line of each notable one:", ""]
        lines += [f"- `{text}`" for _event, text in sorted(first.items())]
    return "\n".join(lines) + "\n"


def run_mode(mode: str, args: argparse.Namespace, bin_dir: Path | None) -> ModeResult:
    seconds = args.pg_seconds if mode == "postgres" else args.seconds
    began = time.monotonic()
    scratch = tempfile.mkdtemp(prefix=f"doudi-chaos-{mode}-")
    postgres: PrivatePostgres | None = None
    try:
        if mode == "postgres":
            assert bin_dir is not None
            postgres = PrivatePostgres(bin_dir)
            say(f"making a private PostgreSQL cluster in {postgres.root} on port {postgres.port}")
            postgres.create([f"doudi_{svc}" for svc in SERVICES])
        stack = ChaosStack(Path(scratch), postgres)
        say(f"[{mode}] starting the stack in {scratch} (each service as api, worker and relay)")
        stack.start()
        try:
            load, faults = asyncio.run(run(stack, args, seconds))
            say("load stopped; waiting for the stack to settle")
            quiet = asyncio.run(settled(stack, args.settle_seconds))
            checks, letters = asyncio.run(check(stack, load))
            if faults.outage is not None:  # read before the stack stops: a crash while stopping is not counted
                lettered = log_events(stack).lettered
                checks.append(outage_check(faults.outage, args.recovery_seconds, crashed_tasks(stack), lettered))
        finally:
            stack.stop()
        logs = log_events(stack)
    finally:
        if postgres is not None:
            if args.keep:
                with contextlib.suppress(Exception):
                    shutil.copy(postgres.log, Path(scratch) / "postgres.log")
            postgres.destroy()
            say("the private PostgreSQL cluster is stopped and deleted")
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
        else:
            say(f"kept {scratch}")
    text = report(mode, args, seconds, time.monotonic() - began, load, faults, checks, letters, quiet, logs)
    return ModeResult(mode, text, quiet and all(c.holds for c in checks))


def document(args: argparse.Namespace, sections: list[str], took: float) -> str:
    head = [
        "# Reliability",
        "",
        f"Command: `make chaos` (`python -m bench.chaos --mode {args.mode}`), {took / 60:.1f} minutes in all on "
        "this machine. Each mode runs the same steady load and the same faults (every process killed with "
        "SIGKILL and restarted, the broker lost and re-driven, bad records on the topics); the PostgreSQL mode "
        "also stops the database under load. Each section below names its own command.",
        "",
    ]
    return "\n".join(head) + "\n" + "\n".join(sections) + READING


READING = """
## Reading it

The run kills the twelve processes (four services × api, worker, relay) one after another, in a random order,
while the load goes on (none while the broker is re-driven or while the recovery from the database's stop is
measured; the Faults lines say which were killed and how often). What the invariants show: a relay killed
mid-batch re-publishes what it had not marked published, and the consumers' inboxes drop the copies; a worker
killed mid-batch leaves its offsets uncommitted, its partitions move to the restarted worker after the group's
session times out, and the redelivered records have no second effect (no payment doubled, every ledger
transaction balanced); an API killed mid-request loses nothing committed, and the client's retry with the same
`Idempotency-Key` gets the same answer. Records no producer of ours would write go to `<topic>.dlq` with the
reason, once per consuming group (again if the group was killed before committing past it), and the partition
moves on. When the load stops, the consumers catch up within seconds (the \"settling\" lines of the run's
output).

The broker's loss is re-driven from the outboxes twice over: `doudi outbox republish` sends again what was
published in the minute before the loss, and `doudi redrive --stuck --quiet-minutes 0` sends again every
event of each case intake's read model shows not yet past verification or a determination (with no quiet
time, every case in flight). Both only mark outbox rows unpublished; the relays send them, and the inboxes
drop what was applied already, so the second is a belt to the first's braces and costs only time. A consumer
group starts again from the beginning of the new, empty topics.

The database's stop (PostgreSQL mode): `pg_ctl stop -m fast` ends every session at once, so statements in
flight fail and every pooled connection is dead, and for a few seconds while it shuts down (and starts) new
connections are refused with "the database system is shutting down" (or "starting up"). What is meant to
happen: the APIs answer 503 with Retry-After while it is away (the clients wait and send the same request
again; a 500 fails the fifth invariant); the consumers fail their batch, commit nothing, and start again from
the last committed offset after a backoff, never dead-lettering a good event; the relays and the workers'
loops log the failure and try again; every process says ready again by itself once the database is back. What
did happen is in the PostgreSQL section above: the 503s, how long each process took to say ready again, any
that did not, any background task that died, and the causes of any 500, from the services' own logs.
"""


def _interrupted(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=("both", "sqlite", "postgres"), default="both")
    parser.add_argument("--seconds", type=int, default=100, help="seconds of load on SQLite")
    parser.add_argument("--pg-seconds", type=int, default=180, help="seconds of load on PostgreSQL")
    parser.add_argument("--rate", type=float, default=5.0, help="applications per second")
    parser.add_argument("--kill-every", type=float, default=5.0, help="seconds between kills, on average")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--no-broker", dest="broker", action="store_false", help="do not kill the broker")
    parser.add_argument("--outage-seconds", type=float, default=30.0, help="how long PostgreSQL stays down")
    parser.add_argument(
        "--recovery-seconds", type=float, default=75.0, help="how long every process may take to be ready again"
    )
    parser.add_argument(
        "--no-restart-while-down",
        dest="restart_while_down",
        action="store_false",
        help="the outage alone: no process killed or restarted while the database is away",
    )
    parser.add_argument("--settle-seconds", type=float, default=120.0)
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument("--keep", action="store_true", help="keep the data folders (databases, logs) afterwards")
    args = parser.parse_args()
    # A SIGTERM ends the run as Ctrl-C does: through the `finally`s, so the private cluster is stopped and deleted.
    signal.signal(signal.SIGTERM, _interrupted)
    began = time.monotonic()
    modes = ["sqlite", "postgres"] if args.mode == "both" else [args.mode]
    sections: list[str] = []
    ok = True
    for mode in modes:
        bin_dir = None
        if mode == "postgres":
            bin_dir, why = find_postgres()
            if bin_dir is None:
                say(f"SKIPPED the PostgreSQL mode: {why}")
                sections.append(f"## PostgreSQL\n\n**Skipped**: {why}. The database outage was not exercised.\n")
                continue
        try:
            result = run_mode(mode, args, bin_dir)
        except Exception as exc:
            say(f"[{mode}] the run failed: {type(exc).__name__}: {exc}")
            sections.append(
                f"## {mode}\n\n**The run failed** before its invariants could be checked: "
                f"`{type(exc).__name__}: {str(exc)[:500]}`\n"
            )
            ok = False
            continue
        print(result.text)  # noqa: T201
        sections.append(result.text)
        ok = ok and result.ok
    if args.mode != "both" and args.output.exists():
        # One mode run alone replaces its own section and leaves the other mode's as it was.
        for section in sections:
            title = section.split("\n", 1)[0].removeprefix("## ").strip()
            write_section(title, section, args.output)
    else:
        args.output.write_text(document(args, sections, time.monotonic() - began))
    say(f"written to {args.output}; {'every invariant held' if ok else 'NOT every invariant held'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
