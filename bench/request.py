"""What one application costs intake's API on its own: `POST /v1/applications` sent to the intake app in
this process (httpx's ASGI transport: no network, no broker, no other service), one request at a time, with
the CPU time of this process per request. Authentication, validation, the idempotency and audit rows, the
case, its members, the open memberships, the outbox row and the commit are all in it; the client's own
share (building the request in httpx) is too, and is small.

Its inverse is the most applications one intake API process can take per second on one core, whatever the
rest of the stack does: the end-to-end figure can go no higher than that per intake process.
`bench.stack` runs it for each database and reports it beside the end-to-end figures.

    python -m bench.request [--requests 300] [--repeats 3] [--postgres URL]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from doudi.stack import load_spec
from shared.auth import mint_dev_token
from shared.db.migrate import upgrade
from shared.logging import configure_logging
from shared.service import create_app


async def _measure(database_url: str, data_dir: Path, requests: int, repeats: int) -> list[float]:
    from bench.stack import People, application  # the same applications as the end-to-end load

    spec = load_spec("intake")
    configure_logging(spec.name, "WARNING", json=True)  # as the stack runs it (`bench.stack`)
    settings = spec.settings_cls(
        data_dir=data_dir,
        database_url=database_url,
        kafka_bootstrap_servers="127.0.0.1:9",  # the API role sends nothing to the broker itself
        rate_limit_per_minute=100_000_000,
        rate_limit_burst=1_000_000,
    )
    app = create_app(spec, settings, {"api"})
    token = mint_dev_token(
        data_dir,
        role="window",
        region="310115",
        subject="bench",
        issuer=settings.auth_issuer,
        audience=settings.auth_audience,
    )
    people = People()
    cpu_ms: list[float] = []
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(transport=transport, base_url="http://intake", headers=headers) as client:

            async def send(count: int) -> None:
                for body in [application(people) for _ in range(count)]:
                    response = await client.post("/v1/applications", json=body)
                    if response.status_code != 201:
                        raise RuntimeError(f"intake answered {response.status_code}: {response.text[:300]}")

            await send(100)  # warm: caches, prepared statements, the pool
            for _ in range(repeats):
                started = time.process_time()
                await send(requests)
                cpu_ms.append((time.process_time() - started) * 1000 / requests)
    return cpu_ms


def request_cost(admin_url: str | None, requests: int = 300, repeats: int = 3) -> list[float]:
    """CPU milliseconds per application request, one figure per repeat, on a fresh intake database
    (SQLite in a temporary directory, or a new database on the PostgreSQL server at `admin_url`)."""
    from bench.stack import databases

    with (
        tempfile.TemporaryDirectory(prefix="doudi-request-") as scratch,
        databases(admin_url, Path(scratch), ["intake"]) as urls,
    ):
        url = urls.get("INTAKE_DATABASE_URL") or f"sqlite+aiosqlite:///{Path(scratch) / 'intake.db'}"
        upgrade(load_spec("intake").migrations, url)
        return asyncio.run(_measure(url, Path(scratch), requests, repeats))


def main() -> int:
    from bench.stack import say

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--postgres", default=None, help="admin URL of a PostgreSQL server (default: SQLite)")
    args = parser.parse_args()
    figures = request_cost(args.postgres, args.requests, args.repeats)
    median = statistics.median(figures)
    say(
        f"{'PostgreSQL' if args.postgres else 'SQLite'}: {median:.2f} ms of CPU per application request "
        f"({min(figures):.2f}–{max(figures):.2f}, {args.repeats} × {args.requests}); "
        f"one intake API process: at most {1000 / median:.0f} applications/s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
