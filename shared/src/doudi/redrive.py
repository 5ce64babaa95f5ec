"""`doudi redrive`: re-drive cases from the services' outboxes.

Every service marks the case's published events unpublished again; its running relay sends them once more,
in their order and with their ids, and every consumer's inbox drops what it applied already. What was lost
or skipped on the way (a broker that lost its log, a consumer that skipped records) is applied; nothing is
applied twice. `--stuck` finds the cases to re-drive in intake's case read model (intake/stuck.py): run it
nightly after `doudi reconcile`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import timedelta
from typing import Any

from doudi.stack import SERVICES, StackSettings, load_spec, service_settings
from shared.settings import load_settings


async def _stuck(settings: Any, quiet_for: timedelta) -> list[dict[str, Any]]:
    from intake.stuck import stuck_cases
    from shared.db.base import utcnow
    from shared.service import Runtime

    runtime = Runtime(load_spec("intake"), settings)
    try:
        async with runtime.uow() as uow:
            return await stuck_cases(uow, now=utcnow(), today=runtime.clock.today(), quiet_for=quiet_for)
    finally:
        await runtime.engine.dispose()


async def _republish(settings: dict[str, Any], case_ids: list[str]) -> dict[str, int]:
    from shared.db.engine import make_engine
    from shared.messaging.relay import republish_keys

    sent: dict[str, int] = {}
    for name in SERVICES:
        engine = make_engine(settings[name].database_url)
        try:
            sent[name] = await republish_keys(engine, load_spec(name).tables.outbox, case_ids)
        finally:
            await engine.dispose()
    return sent


def command(args: argparse.Namespace) -> int:
    if not args.case and not args.stuck:
        print("doudi redrive: name a case with --case ID, or --stuck", file=sys.stderr)  # noqa: T201
        return 2
    stack = load_settings(StackSettings)
    settings = service_settings(stack, f"127.0.0.1:{stack.kafka_port}")
    stuck: list[dict[str, Any]] = []
    if args.stuck:
        stuck = asyncio.run(_stuck(settings["intake"], timedelta(minutes=args.quiet_minutes)))
        for case in stuck:
            print(f"stuck: {case['case_id']} ({case['status']} since {case['since']}): {case['why']}", file=sys.stderr)  # noqa: T201
    case_ids = sorted(set(args.case or []) | {case["case_id"] for case in stuck})
    sent = asyncio.run(_republish(settings, case_ids)) if case_ids else dict.fromkeys(SERVICES, 0)
    print(json.dumps({"cases": len(case_ids), "stuck": stuck, "events_sent_again": sent}, ensure_ascii=False))  # noqa: T201
    return 0


def add_parser(commands: Any) -> None:
    redrive = commands.add_parser(
        "redrive", help="send a case's events again from every service's outbox (a stuck case, or --stuck ones)"
    )
    redrive.add_argument("--case", action="append", help="a case id (repeatable)")
    redrive.add_argument("--stuck", action="store_true", help="every case the read model shows stuck")
    redrive.add_argument(
        "--quiet-minutes", type=int, default=60, help="with --stuck: how long without progress counts as stuck"
    )
    redrive.set_defaults(func=command)
