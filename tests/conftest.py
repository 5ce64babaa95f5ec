"""Fixtures: a real Tansu broker per test session (free port, killed by PID), real databases built from the
migrations (SQLite files by default; PostgreSQL databases when DOUDI_TEST_DATABASE_URL points at a server),
and helpers to run a service's parts against them."""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete
from sqlalchemy.engine import make_url

from doudi.stack import load_spec
from shared.db.migrate import upgrade
from shared.messaging.embedded_broker import EmbeddedBroker, free_port
from shared.messaging.kafka import create_topics
from shared.service import Runtime, ServiceSpec
from shared.settings import ServiceSettings

SERVICES = ("intake", "eligibility", "disbursement", "referral")
PG_ADMIN_URL = os.environ.get("DOUDI_TEST_DATABASE_URL", "")


def pytest_report_header(config: pytest.Config) -> str:
    return f"doudi databases: {'PostgreSQL ' + make_url(PG_ADMIN_URL).render_as_string() if PG_ADMIN_URL else 'SQLite'}"


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    instance = EmbeddedBroker(free_port(), tmp_path_factory.mktemp("broker") / "tansu.log")
    instance.start()
    asyncio.run(create_topics(instance.bootstrap_servers))
    yield instance
    instance.stop()


async def _pg_admin(statement: str) -> None:
    import asyncpg

    url = make_url(PG_ADMIN_URL)
    conn = await asyncpg.connect(
        host=url.host or "127.0.0.1",
        port=url.port or 5432,
        user=url.username or "postgres",
        password=url.password,
        database=url.database or "postgres",
    )
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@contextlib.contextmanager
def fresh_database(service: str, directory: Path) -> Iterator[str]:
    """A new, migrated database for `service`; dropped afterwards when on PostgreSQL."""
    if PG_ADMIN_URL:
        name = f"doudi_test_{uuid.uuid4().hex[:10]}_{service}"
        asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
        url = make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    else:
        name = ""
        url = f"sqlite+aiosqlite:///{directory / (service + '.db')}"
    upgrade(load_spec(service).migrations, url)
    try:
        yield url
    finally:
        if name:
            asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def database_urls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    directory = tmp_path_factory.mktemp("db")
    with contextlib.ExitStack() as stack:
        yield {service: stack.enter_context(fresh_database(service, directory)) for service in SERVICES}


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tests' data folder: it holds the development signing key the services trust."""
    return tmp_path_factory.mktemp("data")


def token(data_dir: Path, role: str = "admin", region: str = "000000", subject: str = "tester") -> str:
    from shared.auth import mint_dev_token

    return mint_dev_token(data_dir, role=role, region=region, subject=subject, issuer="doudi-dev", audience="doudi")


def make_settings(
    spec: ServiceSpec, database_url: str, bootstrap: str, data_dir: Path, **overrides: Any
) -> ServiceSettings:
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "database_url": database_url,
        "kafka_bootstrap_servers": bootstrap,
        "env": "test",
        "consumer_backoff_seconds": 0.01,
        "consumer_max_attempts": 3,
        "relay_idle_seconds": 0.05,
        **overrides,
    }
    return spec.settings_cls(**values)


@contextlib.asynccontextmanager
async def running(spec: ServiceSpec, settings: ServiceSettings, roles: set[str]) -> AsyncIterator[Runtime]:
    """A service's runtime with its tables emptied first; `roles` as for `python -m <service> ROLE`."""
    runtime = Runtime(spec, settings)
    async with runtime.engine.begin() as conn:
        for table in reversed(spec.metadata.sorted_tables):
            await conn.execute(delete(table))
    await runtime.start(roles)
    try:
        yield runtime
    finally:
        await runtime.stop()


class ServiceFactory:
    def __init__(self, urls: dict[str, str], broker: EmbeddedBroker, data_dir: Path) -> None:
        self.urls = urls
        self.broker = broker
        self.data_dir = data_dir

    def spec(self, name: str) -> ServiceSpec:
        return load_spec(name)

    def settings(self, name: str, **overrides: Any) -> ServiceSettings:
        return make_settings(
            self.spec(name), self.urls[name], self.broker.bootstrap_servers, self.data_dir, **overrides
        )

    def run(self, name: str, roles: set[str] | None = None, **overrides: Any) -> Any:
        return running(self.spec(name), self.settings(name, **overrides), roles or set())


@pytest.fixture
def services(database_urls: dict[str, str], broker: EmbeddedBroker, data_dir: Path) -> ServiceFactory:
    return ServiceFactory(database_urls, broker, data_dir)


async def eventually(check: Any, timeout: float = 15.0, interval: float = 0.05) -> Any:
    """Poll `check` (sync or async) until it returns a truthy value, or fail after `timeout` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


async def empty_tables(runtime: Runtime) -> None:
    async with runtime.engine.begin() as conn:
        for table in reversed(runtime.spec.metadata.sorted_tables):
            await conn.execute(delete(table))


@contextlib.asynccontextmanager
async def api_client(
    services: ServiceFactory, name: str, *, role: str = "admin", region: str = "000000", **overrides: Any
) -> AsyncIterator[Any]:
    """An httpx client on the service's ASGI app (API role only), its lifespan run, its tables emptied,
    authenticated as `role` in `region` (a national admin unless told otherwise)."""
    import httpx

    from shared.service import create_app

    app = create_app(services.spec(name), services.settings(name, **overrides), {"api"})
    async with app.router.lifespan_context(app):
        await empty_tables(app.state.runtime)
        transport = httpx.ASGITransport(app=app)
        headers = {"Authorization": f"Bearer {token(services.data_dir, role, region)}"}
        async with httpx.AsyncClient(transport=transport, base_url="http://test", headers=headers) as client:
            client.runtime = app.state.runtime  # type: ignore[attr-defined]
            client.app = app  # type: ignore[attr-defined]
            yield client


@contextlib.asynccontextmanager
async def manual(services: ServiceFactory, name: str) -> AsyncIterator[Runtime]:
    """A service's database and a producer, but none of its loops: the test drives relay and runner by hand
    (a running worker would consume the test's records first)."""
    from shared.messaging.kafka import make_producer

    async with services.run(name, roles=set()) as runtime:
        runtime.producer = make_producer(runtime.settings.kafka_bootstrap_servers)
        await runtime.producer.start()
        yield runtime


async def deliver_twice(runtime: Runtime, event: Any, *, key: str) -> None:
    """Publish one envelope twice to the real broker and feed both copies through the service's own handlers
    and the consumer runner, as a redelivery would."""
    from shared.messaging.consumer import ConsumerRunner
    from shared.messaging.topics import topic_for
    from tests.kafka_helpers import NoCommitConsumer, envelope_for, fetch_records, publish

    envelope = envelope_for(event, key=key)
    bootstrap = runtime.settings.kafka_bootstrap_servers
    await publish(bootstrap, envelope, envelope)
    batches = await fetch_records(bootstrap, topic_for(event.event_type), keys={key}, expect=2)
    assert sum(len(records) for records in batches.values()) == 2
    assert runtime.producer is not None
    runner = ConsumerRunner(
        service=runtime.spec.name,
        bootstrap_servers=bootstrap,
        handlers=runtime.spec.handlers(runtime.settings),
        uow_factory=runtime.uow,
        inbox_table=runtime.spec.tables.inbox,
        dlq_producer=runtime.producer,
        max_attempts=1,
    )
    # Once as a batch, then again as a redelivery of the same records.
    await runner.process(NoCommitConsumer(), batches)
    await runner.process(NoCommitConsumer(), batches)


async def count(runtime: Runtime, table: Any, *where: Any) -> int:
    from sqlalchemy import func, select

    async with runtime.engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(table).where(*where))).scalar_one())
