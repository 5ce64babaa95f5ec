"""doudi: `doudi up`, `doudi serve`, `doudi migrate`, `doudi topics`, `doudi demo` and the operators' jobs."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx

from doudi import redrive
from doudi.stack import SERVICES, Stack, StackError, StackSettings, load_spec, migrate_all, service_settings
from shared.auth import ROLES, mint_dev_token
from shared.messaging.kafka import create_topics
from shared.settings import SettingsError, load_settings


def _up(_args: argparse.Namespace) -> int:
    settings = load_settings(StackSettings)
    try:
        return Stack(settings).run()
    except StackError as exc:
        print(f"doudi: {exc}", file=sys.stderr)  # noqa: T201
        return 1


def _migrate(_args: argparse.Namespace) -> int:
    stack = load_settings(StackSettings)
    migrate_all(service_settings(stack, f"127.0.0.1:{stack.kafka_port}"))
    return 0


def _topics(args: argparse.Namespace) -> int:
    created = asyncio.run(create_topics(args.bootstrap_servers, args.replication_factor))
    print(f"created {len(created)} topics: {', '.join(created) or '(all existed)'}")  # noqa: T201
    return 0


DEMO_APPLICATION = {
    "region": "310115",
    "channel": "window",
    "household": {
        "members": [
            {
                "ref": "m1",
                "name": "张三",
                "id_number": "310115198005010013",
                "relationship": "applicant",
                "birth_date": "1980-05-01",
                "hukou_region": "310115",
                "incomes": [{"kind": "wage", "monthly": "800.00"}],
            },
            {
                "ref": "m2",
                "name": "李四",
                "id_number": "310115198207120026",
                "relationship": "spouse",
                "birth_date": "1982-07-12",
                "hukou_region": "310115",
            },
        ],
        "assets": {"monetary": "3000.00"},
    },
    "consent": {"economic_verification": True},
    "payee_account": "6222021001112223",
}


def _dev_token(role: str, region: str, subject: str, ttl: int = 8 * 3600) -> str:
    stack = load_settings(StackSettings)
    if stack.env == "production":
        raise SettingsError(
            "doudi token mints development tokens only; production tokens come from the identity provider"
        )
    return mint_dev_token(
        stack.data_dir,
        role=role,
        region=region,
        subject=subject,
        issuer=stack.auth_issuer,
        audience=stack.auth_audience,
        ttl_seconds=ttl,
    )


def _audit_verify(args: argparse.Namespace) -> int:
    """Check each service's audit chain; exit 1 and name the first broken link if any chain is broken."""
    from shared.audit import verify
    from shared.db.engine import make_engine

    stack = load_settings(StackSettings)
    settings = service_settings(stack, f"127.0.0.1:{stack.kafka_port}")
    names = [args.service] if args.service else list(settings)

    async def check(name: str) -> bool:
        engine = make_engine(settings[name].database_url)
        try:
            async with engine.connect() as conn:
                verdict = await verify(conn, load_spec(name).tables.audit)
        finally:
            await engine.dispose()
        if verdict.intact:
            print(f"{name}: {verdict.entries:,} entries, chain intact")  # noqa: T201
        else:
            print(  # noqa: T201
                f"{name}: BROKEN at entry {verdict.broken_at}: {verdict.reason} "
                f"({verdict.entries:,} entries before it hold)"
            )
        return verdict.intact

    results = [asyncio.run(check(name)) for name in names]
    return 0 if all(results) else 1


def _outbox_republish(args: argparse.Namespace) -> int:
    """Send again every event each service published since a moment (after the broker lost what it held)."""
    from datetime import UTC, datetime

    from shared.db.engine import make_engine
    from shared.messaging.relay import republish_since

    try:
        since = datetime.fromisoformat(args.since)
    except ValueError:
        print(f"doudi: --since {args.since!r} is not an ISO 8601 date-time", file=sys.stderr)  # noqa: T201
        return 2
    since = since if since.tzinfo else since.replace(tzinfo=UTC)
    stack = load_settings(StackSettings)
    settings = service_settings(stack, f"127.0.0.1:{stack.kafka_port}")
    names = [args.service] if args.service else list(settings)

    async def republish(name: str) -> int:
        engine = make_engine(settings[name].database_url)
        try:
            return await republish_since(engine, load_spec(name).tables.outbox, since)
        finally:
            await engine.dispose()

    for name in names:
        count = asyncio.run(republish(name))
        print(f"{name}: {count:,} events published since {since.isoformat()} will be sent again")  # noqa: T201
    return 0


def _sweep(args: argparse.Namespace) -> int:
    """Re-screen households near the line in the eligibility database; the running service's relay
    publishes the leads. Safe to run again for the same date."""
    from datetime import date

    from eligibility.sweep import sweep
    from shared.service import Runtime

    try:
        as_of = date.fromisoformat(args.as_of) if args.as_of else None
    except ValueError:
        print("doudi: --as-of must be YYYY-MM-DD", file=sys.stderr)  # noqa: T201
        return 2
    stack = load_settings(StackSettings)
    settings = service_settings(stack, f"127.0.0.1:{stack.kafka_port}")["eligibility"]

    async def go() -> dict[str, object]:
        runtime = Runtime(load_spec("eligibility"), settings)
        try:
            async with runtime.uow() as uow:
                day = as_of or runtime.clock.today()
                return await sweep(uow, day, window_days=args.window_days, progress=True)
        finally:
            await runtime.engine.dispose()

    print(json.dumps(asyncio.run(go()), ensure_ascii=False))  # noqa: T201
    return 0


def _recompute(args: argparse.Namespace) -> int:
    """Re-compute approved monthly amounts with the rules in force from a date (a new standard) in the
    eligibility database; the running service's relay publishes the changes. Safe to run again."""
    from datetime import date

    from eligibility.recompute import recompute
    from shared.service import Runtime

    try:
        effective = date.fromisoformat(args.effective)
    except ValueError:
        print("doudi: --from must be YYYY-MM-DD", file=sys.stderr)  # noqa: T201
        return 2
    stack = load_settings(StackSettings)
    settings = service_settings(stack, f"127.0.0.1:{stack.kafka_port}")["eligibility"]

    async def go() -> dict[str, object]:
        runtime = Runtime(load_spec("eligibility"), settings)
        try:
            async with runtime.uow() as uow:
                return await recompute(uow, effective, progress=True)
        finally:
            await runtime.engine.dispose()

    print(json.dumps(asyncio.run(go()), ensure_ascii=False))  # noqa: T201
    return 0


def _pay_run(args: argparse.Namespace) -> int:
    """Instruct the month's payments straight in the disbursement database; the running service's relay and
    bank submitter take them from there. Safe to run again: a month is never paid twice."""
    import re

    from disbursement.payment_run import run_payments, run_report
    from shared.auth import Principal
    from shared.service import Runtime

    if not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", args.month):
        print("doudi: --month must be YYYY-MM", file=sys.stderr)  # noqa: T201
        return 2
    stack = load_settings(StackSettings)
    settings = service_settings(stack, f"127.0.0.1:{stack.kafka_port}")["disbursement"]
    principal = Principal(subject="doudi pay-run", role="reconciler", region=args.region)

    async def go() -> dict[str, object]:
        runtime = Runtime(load_spec("disbursement"), settings)
        try:
            async with runtime.uow() as uow:
                report = await run_payments(uow, args.month, principal)
            deadline = time.monotonic() + args.wait
            while time.monotonic() < deadline and set(report["by_status"]) & {"pending", "submitted"}:  # type: ignore[arg-type]
                await asyncio.sleep(0.5)
                async with runtime.uow() as uow:
                    report = await run_report(uow, args.month, principal)
            return report
        finally:
            await runtime.engine.dispose()

    print(json.dumps(asyncio.run(go()), indent=2))  # noqa: T201
    return 0


def _reconcile(args: argparse.Namespace) -> int:
    """Reconcile a day: ledger against the bank's statement, entitlements against payments. Exit 0 when clean,
    1 when it finds mismatches (each printed, stored, and published as an event). The statement is the bank's
    file for the day when --statement names one, else it is fetched from the bank's API."""
    from datetime import date as Date

    from disbursement.bank import BankClient
    from disbursement.reconciliation import StatementError, reconcile, report_of
    from shared.service import Runtime

    try:
        day = Date.fromisoformat(args.date)
    except ValueError:
        print("doudi: --date must be YYYY-MM-DD", file=sys.stderr)  # noqa: T201
        return 2
    if args.statement is not None and not args.statement.is_file():
        print(f"doudi: no such statement file: {args.statement}", file=sys.stderr)  # noqa: T201
        return 2
    stack = load_settings(StackSettings)
    settings = service_settings(stack, f"127.0.0.1:{stack.kafka_port}")["disbursement"]

    async def go() -> dict[str, object]:
        runtime = Runtime(load_spec("disbursement"), settings)
        bank = None if args.statement else BankClient(settings)  # type: ignore[arg-type]
        try:
            async with runtime.uow() as uow:
                found = await reconcile(uow, bank, day, statement=args.statement)
                await uow.commit()
                return report_of(found)
        finally:
            if bank is not None:
                await bank.close()
            await runtime.engine.dispose()

    try:
        report = asyncio.run(go())
    except httpx.HTTPError as exc:
        print(f"doudi: the bank's statement could not be fetched from {settings.bank_url}: {exc}", file=sys.stderr)  # type: ignore[attr-defined]  # noqa: T201
        return 2
    except (StatementError, UnicodeDecodeError) as exc:
        print(f"doudi: the statement file could not be read: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    print(json.dumps(report, indent=2, ensure_ascii=False))  # noqa: T201
    return 0 if report["clean"] else 1


def _export_payments(args: argparse.Namespace) -> int:
    """Write every payment of a month, end to end, as JSON Lines for the fund internal-control platform."""
    from disbursement.export import payment_lines
    from shared.service import Runtime

    stack = load_settings(StackSettings)
    settings = service_settings(stack, f"127.0.0.1:{stack.kafka_port}")["disbursement"]

    async def go() -> int:
        runtime = Runtime(load_spec("disbursement"), settings)
        written = 0
        try:
            with args.output.open("w", encoding="utf-8") as out:
                async with runtime.uow() as uow:
                    async for line in payment_lines(uow, args.period):
                        out.write(json.dumps(line, ensure_ascii=False) + "\n")
                        written += 1
        finally:
            await runtime.engine.dispose()
        return written

    print(f"wrote {asyncio.run(go()):,} payments of {args.period} to {args.output}", file=sys.stderr)  # noqa: T201
    return 0


def _asyncapi(args: argparse.Namespace) -> int:
    from doudi.asyncapi import build

    text = json.dumps(build(), indent=2, ensure_ascii=False, sort_keys=True) + "\n"
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.write_text(text, encoding="utf-8")
    return 0


def _token(args: argparse.Namespace) -> int:
    if args.role not in ROLES:
        print(f"doudi: unknown role {args.role!r}; one of {', '.join(ROLES)}", file=sys.stderr)  # noqa: T201
        return 2
    if not args.region.isdigit() or len(args.region) not in (6, 9, 12):
        print("doudi: --region must be a 6-, 9- or 12-digit code", file=sys.stderr)  # noqa: T201
        return 2
    print(_dev_token(args.role, args.region, args.sub or f"dev-{args.role}", args.ttl))  # noqa: T201
    return 0


def _clock(args: argparse.Namespace) -> int:
    """Show or move this stack's decision clock (public notices, deadlines); never in production."""
    import re
    from datetime import timedelta

    from shared.clock import Clock

    stack = load_settings(StackSettings)
    if stack.env == "production":
        print("doudi: production runs on the system clock; it cannot be moved", file=sys.stderr)  # noqa: T201
        return 2
    clock = Clock.for_data_dir(stack.data_dir, production=False)
    if args.clock_command == "advance":
        match = re.fullmatch(r"(\d+)([dh])", args.by)
        if match is None:
            print("doudi: --by is a number of days or hours, e.g. 8d or 12h", file=sys.stderr)  # noqa: T201
            return 2
        amount, unit = int(match[1]), match[2]
        clock.advance(timedelta(days=amount) if unit == "d" else timedelta(hours=amount))
    elif args.clock_command == "reset":
        clock.reset()
    print(f"decision clock: {clock.now().isoformat(timespec='seconds')} (today {clock.today()}; offset {clock.offset})")  # noqa: T201
    return 0


def _follow(
    client: httpx.Client, case_id: str, done: Callable[[dict[str, Any]], bool], timeout: float
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    case: dict[str, Any] = {}
    while time.monotonic() < deadline:
        case = client.get(f"/v1/cases/{case_id}").json()
        if done(case):
            break
        time.sleep(0.2)
    return case


def _demo(args: argparse.Namespace) -> int:
    """Submit a sample application, have an officer approve what is proposed, and follow the case; with
    --through-notice, move the development clock past the public notice and follow it to the payment."""
    window = _dev_token("window", "310115", "doudi-demo-window")
    officer = _dev_token("officer", "310115", "doudi-demo-officer")  # not who filed it: maker-checker
    with httpx.Client(base_url=args.intake_url, timeout=10, headers={"Authorization": f"Bearer {window}"}) as client:
        response = client.post("/v1/applications", json=DEMO_APPLICATION, headers={"Idempotency-Key": args.key})
        print(f"POST /v1/applications → {response.status_code}")  # noqa: T201
        if response.status_code == 409 and "case_id" in response.json():
            # The demo household already has an open case (from an earlier run): a person is on one at most.
            print(response.json()["detail"])  # noqa: T201
        elif response.status_code >= 300:
            print(response.text)  # noqa: T201
            return 1
        case_id = response.json()["case_id"]
        case = _follow(client, case_id, lambda c: bool(c.get("determinations")), args.timeout)
        eligibility_url = (
            args.intake_url.rsplit(":", 1)[0] + ":8002" if args.eligibility_url is None else args.eligibility_url
        )
        for determination in case.get("determinations", []):
            if determination["status"] in ("proposed", "review"):
                approved = httpx.post(
                    f"{eligibility_url}/v1/determinations/{determination['determination_id']}/approve",
                    headers={"Authorization": f"Bearer {officer}"},
                    timeout=10,
                )
                print(f"officer approves {determination['programme']} → {approved.status_code}")  # noqa: T201
        case = _follow(
            client, case_id, lambda c: c.get("status") not in ("submitted", "verified", "proposed"), args.timeout
        )
        if args.through_notice and case.get("status") == "notice":
            _clock(argparse.Namespace(clock_command="advance", by="8d"))
            case = _follow(
                client, case_id, lambda c: any(p["status"] != "pending" for p in c.get("payments") or []), args.timeout
            )
        print(json.dumps(case, ensure_ascii=False, indent=2))  # noqa: T201
        timeline = client.get(f"/v1/cases/{case_id}/timeline").json()
        for event in timeline["events"]:
            print(f"  {event['time']}  {event['type']}")  # noqa: T201
        if case.get("status") == "notice":
            print("Under public notice; `doudi clock advance 8d` (development only) ends it and the payment follows.")  # noqa: T201
    return 0


def _dlq_replay(args: argparse.Namespace) -> int:
    from shared.messaging.dlq import replay

    try:
        letters = asyncio.run(replay(args.bootstrap_servers, args.topic, dry_run=args.dry_run))
    except ValueError as exc:
        print(f"doudi: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    verb = "would replay" if args.dry_run else "replayed"
    for letter in letters:
        where = f"{letter.topic}@{letter.offset}"
        why = f"failed in {letter.consumer} after {letter.attempts} attempts: {letter.error}"
        print(f"  {verb} {where} ({why})")  # noqa: T201
    print(f"{verb} {len(letters)} record(s) from {args.topic}.dlq")  # noqa: T201
    return 0


def _manifests(args: argparse.Namespace) -> int:
    from doudi.manifests import write

    for path in write(args.output):
        print(f"  wrote {path}")  # noqa: T201
    return 0


def _serve(args: argparse.Namespace) -> int:
    """One service in one role, in place of this process (a container's PID 1 gets the signals itself)."""
    import os

    role = [] if args.service == "sandbox_bank" else [args.role]
    os.execv(sys.executable, [sys.executable, "-m", args.service, *role])
    return 0  # not reached


def _screen(args: argparse.Namespace) -> int:
    from eligibility.screening import main as screen_main

    if not args.input.is_file():
        print(f"doudi: no such input file: {args.input}", file=sys.stderr)  # noqa: T201
        return 2
    return screen_main(args.input, args.output, with_trace=args.trace, workers=args.workers)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="doudi", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("up", help="run the whole system locally (embedded broker, SQLite)").set_defaults(func=_up)
    serve = commands.add_parser("serve", help="run one service in one role (what a container runs)")
    serve.add_argument("service", choices=[*SERVICES, "sandbox_bank"])
    serve.add_argument("role", nargs="?", default="all", choices=["all", "api", "worker", "relay"])
    serve.set_defaults(func=_serve)
    commands.add_parser("migrate", help="migrate every service's database").set_defaults(func=_migrate)
    topics = commands.add_parser("topics", help="create every registered topic on a Kafka cluster")
    topics.add_argument("--bootstrap-servers", required=True)
    topics.add_argument("--replication-factor", type=int, default=1)
    topics.set_defaults(func=_topics)
    token = commands.add_parser("token", help="mint a development token (signed by the local development key)")
    token.add_argument("--role", required=True, help=", ".join(ROLES))
    token.add_argument("--region", required=True, help="a district, street or community code")
    token.add_argument("--sub", default=None, help="who the token names (default dev-ROLE)")
    token.add_argument("--ttl", type=int, default=8 * 3600, help="seconds the token is valid")
    token.set_defaults(func=_token)
    sweep_cmd = commands.add_parser(
        "sweep", help="re-screen households near the line; who now qualifies becomes a lead"
    )
    sweep_cmd.add_argument("--as-of", default=None, help="YYYY-MM-DD (default: today)")
    sweep_cmd.add_argument("--window-days", type=int, default=365, help="how recent a refusal, stop or signal counts")
    sweep_cmd.set_defaults(func=_sweep)
    recompute_cmd = commands.add_parser(
        "recompute", help="a new standard from a date: re-compute approved monthly amounts from its month"
    )
    recompute_cmd.add_argument("--from", dest="effective", required=True, help="YYYY-MM-DD the standard applies from")
    recompute_cmd.set_defaults(func=_recompute)
    pay_run = commands.add_parser("pay-run", help="instruct a month's payments (resumable, never pays twice)")
    pay_run.add_argument("--month", required=True, help="YYYY-MM")
    pay_run.add_argument("--region", default="000000", help="limit the run to a region (default: everywhere)")
    pay_run.add_argument("--wait", type=float, default=0.0, help="seconds to wait for the bank's answers")
    pay_run.set_defaults(func=_pay_run)
    reconcile = commands.add_parser("reconcile", help="reconcile a day with the bank; exit 1 on mismatches")
    reconcile.add_argument("--date", required=True, help="YYYY-MM-DD")
    reconcile.add_argument(
        "--statement",
        type=Path,
        default=None,
        help="the bank's statement file for the day (CSV with payment_id, status and amount columns); "
        "default: fetch the statement from the bank's API",
    )
    reconcile.set_defaults(func=_reconcile)
    export = commands.add_parser("export-payments", help="every payment of a month, end to end (JSON Lines)")
    export.add_argument("--period", required=True, help="YYYY-MM")
    export.add_argument("--output", type=Path, required=True)
    export.set_defaults(func=_export_payments)
    clock = commands.add_parser("clock", help="show or move the development decision clock (never production)")
    clock_commands = clock.add_subparsers(dest="clock_command", required=True)
    clock_commands.add_parser("show", help="the decision clock now").set_defaults(func=_clock)
    advance = clock_commands.add_parser("advance", help="move it forward, e.g. --by 8d (past a public notice)")
    advance.add_argument("--by", required=True, help="days or hours: 8d, 12h")
    advance.set_defaults(func=_clock)
    clock_commands.add_parser("reset", help="back to the system clock").set_defaults(func=_clock)
    dlq = commands.add_parser("dlq", help="dead-letter topics")
    dlq_commands = dlq.add_subparsers(dest="dlq_command", required=True)
    dlq_replay = dlq_commands.add_parser("replay", help="send a topic's dead letters back to it (safe to repeat)")
    dlq_replay.add_argument("--topic", required=True, help="the original topic, e.g. intake.application")
    dlq_replay.add_argument("--bootstrap-servers", default="127.0.0.1:9092")
    dlq_replay.add_argument("--dry-run", action="store_true", help="list the dead letters, send nothing")
    dlq_replay.set_defaults(func=_dlq_replay)
    outbox = commands.add_parser("outbox", help="the services' transactional outboxes")
    outbox_commands = outbox.add_subparsers(dest="outbox_command", required=True)
    republish = outbox_commands.add_parser(
        "republish", help="send again every event published since a moment (after the broker lost its log)"
    )
    republish.add_argument("--since", required=True, help="ISO 8601 date-time (UTC if no offset), before the loss")
    republish.add_argument("--service", choices=SERVICES, default=None)
    republish.set_defaults(func=_outbox_republish)
    redrive.add_parser(commands)
    manifests = commands.add_parser("manifests", help="write the Kubernetes manifests (kustomize) for deploy/k8s")
    manifests.add_argument("--output", type=Path, default=Path("deploy/k8s"))
    manifests.set_defaults(func=_manifests)
    asyncapi = commands.add_parser("asyncapi", help="the AsyncAPI 3 document of every topic and event")
    asyncapi.add_argument("--output", type=Path, default=None)
    asyncapi.set_defaults(func=_asyncapi)
    audit = commands.add_parser("audit", help="the services' audit logs")
    audit_commands = audit.add_subparsers(dest="audit_command", required=True)
    verify = audit_commands.add_parser("verify", help="check every hash chain; exit 1 at the first broken link")
    verify.add_argument("--service", choices=SERVICES, default=None)
    verify.set_defaults(func=_audit_verify)
    demo = commands.add_parser("demo", help="submit a sample application to a running stack and show the case")
    demo.add_argument("--intake-url", default="http://127.0.0.1:8001")
    demo.add_argument("--key", default=None, help="Idempotency-Key (default: a new one each run)")
    demo.add_argument("--eligibility-url", default=None, help="default: the intake host, port 8002")
    demo.add_argument("--through-notice", action="store_true", help="move the development clock past the notice")
    demo.add_argument("--timeout", type=float, default=20.0)
    demo.set_defaults(func=_demo)
    screen = commands.add_parser("screen", help="bulk-screen households (JSON Lines of evaluation requests)")
    screen.add_argument("--input", type=Path, required=True)
    screen.add_argument("--output", type=Path, required=True)
    screen.add_argument("--trace", action="store_true", help="add each household's full explanation")
    screen.add_argument("--workers", type=int, default=None, help="processes to use (default: one per core)")
    screen.set_defaults(func=_screen)
    args = parser.parse_args(argv)
    if getattr(args, "key", "") is None:
        import uuid

        args.key = str(uuid.uuid4())
    try:
        return int(args.func(args))
    except SettingsError as exc:
        print(f"doudi: {exc}", file=sys.stderr)  # noqa: T201
        return 2


if __name__ == "__main__":
    sys.exit(main())
