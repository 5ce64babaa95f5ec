"""`make chaos`: a bounded run of faults under steady load, then the invariants, checked and printed.

The stack runs as `doudi up` runs it, except that each service runs as three processes (api, worker,
relay), so each can be killed alone. While applications (a share of them emergencies, approved and paid at
once), an officer's approvals, the public notice running out and a payment run go on:

- every few seconds one process (a service's api, worker or relay: each of the twelve once in a random
  order, then again) is killed with SIGKILL at a random moment and started again a moment later;
- malformed records (not CloudEvents, a known type with a payload that breaks its contract, an oversized
  value) and duplicates of real records are written straight to the topics.

Then the load stops, the stack is given time to settle, and the invariants are checked against the
databases, the broker and the sandbox bank:

1. every accepted application reached a decision or is visibly in progress (eligibility applied it; the
   case view moved past `submitted`);
2. no payment was made twice (one instruction per entitlement and period; at most one settlement per
   payment at the bank);
3. the ledger balances (debits equal credits in every transaction);
4. no event was lost: every outbox row was published, and every published event a service consumes is in
   its inbox or in the dead-letter topic with its reason;
5. no well-formed request was answered with a 5xx (a refused connection while an API is down is counted
   apart: the client retries it).

Once, in the middle, the broker itself is killed: the embedded broker keeps its log in memory, so every record
in flight and every committed offset is lost. It is started again on the same port with its topics, and `doudi
outbox republish --since <a minute before the loss>` makes every service's relay send again what it published
in that minute, in order and with the original event ids; consumers' inboxes drop what they had already
applied. The workers are stopped while the broker is down and started after the re-send: their consumers'
positions point into the lost log, and a consumer that kept them could skip the start of the new one (an
earlier version of this run, which left the workers running, ended with 151 events one service never applied;
this is the likely cause). Not exercised (said plainly): stopping PostgreSQL (the run is on SQLite; stopping
the machine's shared PostgreSQL server would take down everything else using it).
The summary goes to docs/reliability.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
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

from bench.report import ROOT, machine
from bench.stack import People, application
from shared.auth import ensure_dev_keypair, mint_dev_token
from shared.messaging.embedded_broker import EmbeddedBroker, free_port
from shared.messaging.kafka import create_topics
from shared.messaging.topics import DLQ_SUFFIX, TOPICS

BIN = Path(sys.executable).parent
SERVICES = ("intake", "eligibility", "disbursement", "referral")
ROLES = ("api", "worker", "relay")
OUTPUT = ROOT / "docs" / "reliability.md"
READING = """
## Reading it

The run kills each of the twelve processes (four services × api, worker, relay) at least once while the
load goes on. What the invariants show: a relay killed mid-batch re-publishes what it had not marked
published, and the consumers' inboxes drop the copies; a worker killed mid-batch leaves its offsets
uncommitted, its partitions move to the restarted worker after the group's session times out, and the
redelivered records have no second effect (no payment doubled, every ledger transaction balanced); an API
killed mid-request loses nothing committed, and the client's retry with the same `Idempotency-Key` gets the
same answer. Records no producer of ours would write go to `<topic>.dlq` with the reason, once per consuming
group, and the partition moves on. When the load stops, the consumers catch up within seconds (the
\"settling\" lines of the run's output).

The broker's loss is re-driven from the outboxes (`doudi outbox republish`): the output above says how many
events each service sent again. A consumer group starts again from the beginning of the new, empty topics.
Not shown here: PostgreSQL stopped for 30 seconds (this run is on SQLite).
"""


def say(message: str) -> None:
    print(f"[{datetime.now(UTC):%H:%M:%S}] {message}", flush=True)  # noqa: T201


# --- the stack, process by process ---------------------------------------------------------------------


@dataclass
class Supervised:
    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    process: subprocess.Popen[bytes] | None = None
    kills: int = 0

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                self.argv, env=self.env, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True
            )

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()
            self.kills += 1

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()


class ChaosStack:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
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
        }
        self.bank = Supervised(
            "sandbox_bank", [sys.executable, "-m", "sandbox_bank"], self.env, self.logs / "sandbox_bank.log"
        )
        self.processes = {
            (svc, role): Supervised(
                f"{svc} {role}", [sys.executable, "-m", svc, role], self.env, self.logs / f"{svc}-{role}.log"
            )
            for svc in SERVICES
            for role in ROLES
        }

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    def database_url(self, service: str) -> str:
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
    statuses: Counter[str] = field(default_factory=Counter)
    refused_connections: int = 0
    server_errors: list[str] = field(default_factory=list)
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


async def with_retries(load: Load, call: Any) -> httpx.Response | None:
    """A client as the window system is one: a refused connection (the API is down) is tried again."""
    for _ in range(40):
        try:
            return await call()
        except httpx.TransportError:
            load.refused_connections += 1
            await asyncio.sleep(0.25)
    return None


async def submitter(stack: ChaosStack, load: Load, stop: asyncio.Event, rate: float, rng: random.Random) -> None:
    people = People()
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
                load, lambda b=body, k=key: client.post("/v1/applications", json=b, headers={"Idempotency-Key": k})
            )
            n += 1
            if response is not None:
                load.record("POST /v1/applications", response)
                if response.status_code in (200, 201):
                    load.accepted.append(response.json()["case_id"])
            await asyncio.sleep(1 / rate)


async def officer(stack: ChaosStack, load: Load, stop: asyncio.Event) -> None:
    async with httpx.AsyncClient(
        base_url=stack.url("eligibility"), headers=token(stack, "officer", "officer-1"), timeout=15
    ) as client:
        while not stop.is_set():
            response = await with_retries(
                load, lambda: client.get("/v1/determinations", params={"status": "proposed", "limit": 50})
            )
            if response is not None and response.status_code == 200:
                for item in response.json()["items"]:
                    approved = await with_retries(
                        load, lambda i=item: client.post(f"/v1/determinations/{i['determination_id']}/approve")
                    )
                    if approved is not None:
                        load.record("POST /v1/determinations/{id}/approve", approved)
                        load.approvals += approved.status_code == 200
            elif response is not None:
                load.record("GET /v1/determinations", response)
            await asyncio.sleep(1.0)


async def payment_run(stack: ChaosStack, load: Load, period: str) -> None:
    async with httpx.AsyncClient(
        base_url=stack.url("disbursement"), headers=token(stack, "reconciler", "reconciler-1"), timeout=60
    ) as client:
        response = await with_retries(load, lambda: client.post("/v1/payment-runs", json={"period": period}))
        if response is not None:
            load.record("POST /v1/payment-runs", response)
            load.payment_runs.append(f"{period}: {response.status_code}")


def advance_clock(stack: ChaosStack, by: str) -> None:
    subprocess.run(
        [str(BIN / "doudi"), "clock", "advance", "--by", by], env=stack.env, check=True, stdout=subprocess.DEVNULL
    )


# --- faults --------------------------------------------------------------------------------------------


@dataclass
class Faults:
    kills: list[str] = field(default_factory=list)
    injected: Counter[str] = field(default_factory=Counter)
    replayed: list[str] = field(default_factory=list)


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
        process.kill()
        faults.kills.append(process.name)
        say(f"killed {process.name} (SIGKILL)")
        await asyncio.sleep(rng.uniform(0.5, 3.0))
        process.start()


async def lose_the_broker(stack: ChaosStack, faults: Faults, margin: float) -> None:
    """SIGKILL the embedded broker (its log is in memory: everything in flight is gone, committed offsets
    too), start it again on the same port with its topics, and re-drive every case from the outboxes:
    `doudi outbox republish` sends again what each service published in the last `margin` seconds."""
    assert stack.broker.process is not None
    stack.maintenance = True  # no other kill meanwhile
    lost_at = datetime.now(UTC)
    stack.broker.process.send_signal(signal.SIGKILL)
    stack.broker.process.wait()
    stack.broker.process = None
    faults.kills.append("broker")
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
    republished = await asyncio.to_thread(
        subprocess.run,
        [str(BIN / "doudi"), "outbox", "republish", "--since", datetime.fromtimestamp(since, UTC).isoformat()],
        env=stack.env,
        capture_output=True,
        text=True,
        check=True,
    )
    # "intake: 164 events published since … will be sent again" → "intake 164"
    faults.replayed = [
        f"{line.split(':')[0]} {line.split(':')[1].split()[0]}" for line in republished.stdout.strip().splitlines()
    ]
    for process in workers:
        process.start()
    stack.maintenance = False
    say("broker back; " + "; ".join(faults.replayed))


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
            f"gaps: {len(missing)}{' e.g. ' + missing[0] if missing else ''}; {len(letters)} records in DLQs",
        )
    )
    checks.append(
        Check(
            "no 5xx for a well-formed request",
            not load.server_errors,
            f"{sum(load.statuses.values())} answers {dict(sorted(load.statuses.items()))}; 5xx: "
            f"{len(load.server_errors)}{' e.g. ' + load.server_errors[0] if load.server_errors else ''}; "
            f"connections refused while an API was down (retried): {load.refused_connections}",
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
                    missing.append(f"{consumer} never applied {event_type} {event_id}")
    return unpublished, missing, published, letters


def _settings(stack: ChaosStack, svc: str) -> Any:
    from doudi.stack import load_spec

    return load_spec(svc).settings_cls(data_dir=stack.data_dir, env="test")


# --- the run -------------------------------------------------------------------------------------------


async def run(stack: ChaosStack, args: argparse.Namespace) -> tuple[Load, Faults]:
    rng = random.Random(args.seed)
    load, faults, stop = Load(), Faults(), asyncio.Event()
    tasks = [
        asyncio.create_task(submitter(stack, load, stop, args.rate, rng)),
        asyncio.create_task(officer(stack, load, stop)),
        asyncio.create_task(killer(stack, faults, stop, rng, args.kill_every)),
    ]
    started = time.monotonic()
    phase = 0
    while time.monotonic() - started < args.seconds:
        await asyncio.sleep(1)
        elapsed = time.monotonic() - started
        if phase == 0 and elapsed > args.seconds * 0.3:
            phase = 1
            say("the development clock moves 8 days: public notices end, approvals follow")
            advance_clock(stack, "8d")
        if phase == 1 and elapsed > args.seconds * 0.45:
            phase = 2
            if args.broker:
                await lose_the_broker(stack, faults, margin=60)
        if phase == 2 and elapsed > args.seconds * 0.6:
            phase = 3
            say("injecting malformed, oversized and duplicate records")
            await inject(stack, faults)
        if phase == 3 and elapsed > args.seconds * 0.75:
            phase = 4
            period = _next_month(date.today())
            say(f"payment run for {period}")
            await payment_run(stack, load, period)
        if int(elapsed) % 15 == 0:
            say(f"{len(load.accepted)} accepted, {load.approvals} approvals, {len(faults.kills)} kills")
    stop.set()
    for task in tasks:
        task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.gather(*tasks, return_exceptions=True)
    for process in stack.processes.values():  # whatever the last kill left down comes back
        if process.process is None or process.process.poll() is not None:
            process.start()
    return load, faults


def _next_month(day: date) -> str:
    return f"{day.year + day.month // 12}-{day.month % 12 + 1:02d}"


def report(
    args: argparse.Namespace,
    load: Load,
    faults: Faults,
    checks: list[Check],
    letters: list[dict[str, str]],
    quiet: bool,
) -> str:
    lines = [
        "# Reliability",
        "",
        f"Command: `make chaos` (`python -m bench.chaos --seconds {args.seconds} --rate {args.rate:g} "
        f"--kill-every {args.kill_every:g} --seed {args.seed}`)  ",
        f"Machine: {machine()}  ",
        f"Run: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {args.seconds} s of load at {args.rate:g} applications/s "
        "(40% emergencies), an officer approving every proposal, the clock moved past the public notice, one "
        "payment run; SQLite and the embedded broker.",
        "",
        "## Faults",
        "",
        f"- {len(faults.kills)} processes killed with SIGKILL and restarted: "
        + ", ".join(f"{name} ×{n}" for name, n in sorted(Counter(faults.kills).items())),
        "- records written straight to the topics: " + ", ".join(f"{what} ×{n}" for what, n in faults.injected.items()),
        (
            "- the broker killed with SIGKILL and restarted empty; re-driven from the outboxes with "
            "`doudi outbox republish --since <60 s before the loss>`, events sent again: " + ", ".join(faults.replayed)
            if faults.replayed
            else "- the broker was not killed (`--no-broker`)"
        ),
        "- not exercised: stopping PostgreSQL (see `bench/chaos.py` for why).",
        "",
        "## Invariants",
        "",
        "Settled after the load (every outbox row published, every event consumed or dead-lettered): "
        + ("yes." if quiet else "NO."),
        "",
        "| invariant | holds | detail |",
        "|---|---|---|",
    ]
    lines += [f"| {c.name} | {'yes' if c.holds else '**NO**'} | {c.detail} |" for c in checks]
    reasons = Counter(f"{d['topic']} ({d['consumer']}): {d['error']}" for d in letters)
    lines += ["", "## Dead letters, with their reasons", ""]
    lines += [f"- {n} × {reason}" for reason, n in reasons.most_common()] or ["- none"]
    return "\n".join(lines) + "\n" + READING


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=100)
    parser.add_argument("--rate", type=float, default=5.0, help="applications per second")
    parser.add_argument("--kill-every", type=float, default=5.0, help="seconds between kills, on average")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--no-broker", dest="broker", action="store_false", help="do not kill the broker")
    parser.add_argument("--settle-seconds", type=float, default=120.0)
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument("--keep", action="store_true", help="keep the data folder (databases, logs) afterwards")
    args = parser.parse_args()
    scratch = tempfile.mkdtemp(prefix="doudi-chaos-")
    try:
        stack = ChaosStack(Path(scratch))
        say(f"starting the stack in {scratch} (each service as api, worker and relay)")
        stack.start()
        try:
            load, faults = asyncio.run(run(stack, args))
            say("load stopped; waiting for the stack to settle")
            quiet = asyncio.run(settled(stack, args.settle_seconds))
            checks, letters = asyncio.run(check(stack, load))
        finally:
            stack.stop()
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
        else:
            say(f"kept {scratch}")
    text = report(args, load, faults, checks, letters, quiet)
    print(text)  # noqa: T201
    args.output.write_text(text)
    say(f"written to {args.output}")
    return 0 if quiet and all(c.holds for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
