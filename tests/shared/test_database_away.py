"""The database going away is not a fault of a request or an event: recognised as such; and the relay and
the background loops come back by themselves."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy import text

from referral.models import messaging
from shared.contracts.referral import NeedPublished
from shared.db.unavailable import database_unavailable
from shared.messaging.envelope import Envelope
from tests.conftest import PG_ADMIN_URL, ServiceFactory, eventually, manual
from tests.kafka_helpers import read_topic


class _Orig(Exception):
    def __init__(self, message: str, sqlstate: str) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


@pytest.mark.parametrize(
    ("error", "away"),
    [
        (sa_exc.DBAPIError("SELECT 1", {}, _Orig("the database system is shutting down", "57P03")), True),
        (
            sa_exc.DBAPIError("SELECT 1", {}, _Orig("terminating connection due to administrator command", "57P01")),
            True,
        ),
        (sa_exc.DBAPIError("SELECT 1", {}, _Orig("connection failure", "08006")), True),
        (sa_exc.OperationalError("SELECT 1", {}, ConnectionRefusedError()), True),
        (ConnectionRefusedError(), True),
        (sa_exc.ProgrammingError("SELEC 1", {}, _Orig("syntax error", "42601")), False),
        (sa_exc.IntegrityError("INSERT", {}, _Orig("duplicate key", "23505")), False),
        (ValueError("bad data"), False),
    ],
)
def test_what_counts_as_the_database_being_away(error: BaseException, away: bool) -> None:
    assert database_unavailable(error) is away


async def test_a_background_loop_that_crashes_is_started_again(services: ServiceFactory) -> None:
    async with manual(services, "referral") as runtime:
        runs: list[int] = []

        async def flaky() -> None:
            runs.append(1)
            if len(runs) < 3:
                raise RuntimeError("the database was away")
            await runtime._stop.wait()

        runtime._spawn(flaky, "flaky")
        await eventually(lambda: len(runs) == 3, timeout=10)
        assert runtime.crashes["flaky"] == 2


@pytest.mark.skipif(not PG_ADMIN_URL, reason="the relay's lock is PostgreSQL's")
async def test_a_relay_whose_locked_session_is_killed_takes_the_lock_again_and_goes_on(
    services: ServiceFactory,
) -> None:
    """As after a database restart: the session holding the relay's advisory lock is terminated; the relay
    notices, takes the lock again on a new session and publishes what was written meanwhile."""
    from shared.messaging.relay import OutboxRelay

    async with manual(services, "referral") as runtime:
        relay = OutboxRelay(
            engine=runtime.engine,
            table=messaging.outbox,
            producer=runtime.producer,
            service="referral",
            source="/tests",
            idle_seconds=0.05,
        )
        stop = asyncio.Event()
        task = asyncio.create_task(relay.run(stop))
        holder_sql = text(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND database = "
            "(SELECT oid FROM pg_database WHERE datname = current_database())"
        )

        async def holders() -> list[int]:
            async with runtime.engine.connect() as conn:
                return list((await conn.execute(holder_sql)).scalars())

        try:
            first = await eventually(holders, timeout=10)
            async with runtime.engine.connect() as conn:
                await conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": first[0]})
            key = str(uuid.uuid4())
            async with runtime.uow() as uow:
                await uow.outbox.add(NeedPublished(case_id=key, need_id="n1", category="food", area="310115"), key=key)
                await uow.commit()
            records = await read_topic(runtime.settings.kafka_bootstrap_servers, "referral.need", keys={key}, expect=1)
            assert [Envelope.from_kafka(r.key, r.value, r.headers).data["need_id"] for r in records] == ["n1"]
            again = await eventually(holders, timeout=20)
            assert again
            assert again[0] != first[0]  # a new session holds the lock
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)
