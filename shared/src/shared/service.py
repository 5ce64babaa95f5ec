"""What every service is made of: a FastAPI app, a Kafka worker and an outbox relay around one database.

A service describes itself with a `ServiceSpec`; `create_app` and `main` build and run it. Roles:
`all` (API, worker and relay in one process: what `doudi up` runs), or `api`, `worker`, `relay` alone (what
a production deployment scales separately).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import uvicorn
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from prometheus_client import make_asgi_app
from sqlalchemy import MetaData, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from shared import tracing
from shared.auth import Authenticator, ensure_dev_keypair
from shared.clock import Clock
from shared.db.engine import count_statements, make_engine, make_sessionmaker
from shared.db.uow import UnitOfWork
from shared.errors import PROBLEM_RESPONSES, install_problem_handlers, problem
from shared.limits import BodySizeLimit, DatabaseBuckets, RateLimit
from shared.logging import configure_logging, get_logger
from shared.messaging.consumer import ConsumerRunner, Handler
from shared.messaging.kafka import broker_reachable, make_producer
from shared.messaging.outbox import Outbox
from shared.messaging.relay import OutboxRelay
from shared.messaging.tables import MessagingTables
from shared.middleware import Authenticate, TraceContextMiddleware
from shared.settings import ServiceSettings, SettingsError, load_settings

log = get_logger(__name__)
ROLES = ("all", "api", "worker", "relay")

Background = Callable[["Runtime", asyncio.Event], Awaitable[None]]


@dataclass
class ServiceSpec:
    name: str
    settings_cls: type[ServiceSettings]
    metadata: MetaData
    tables: MessagingTables
    migrations: Path
    routers: Sequence[APIRouter] = ()
    # Kafka handlers by event type, built from the loaded settings.
    handlers: Callable[[Any], dict[str, Handler]] = lambda _settings: {}
    # Extra loops a worker runs beside the consumer (the payment submitter, say).
    background: Sequence[Background] = ()
    description: str = ""


class Runtime:
    """The live parts of one service process."""

    def __init__(self, spec: ServiceSpec, settings: ServiceSettings) -> None:
        self.spec = spec
        self.settings = settings
        self.engine: AsyncEngine = make_engine(settings.database_url)
        count_statements(self.engine, spec.name)
        self.sessionmaker: async_sessionmaker[AsyncSession] = make_sessionmaker(self.engine)
        self.producer: AIOKafkaProducer | None = None
        self.relay: OutboxRelay | None = None
        self.runner: ConsumerRunner | None = None
        self.wakers: list[Callable[[], None]] = []
        # The time decisions are made at (a test offset outside production: shared.clock).
        self.clock = Clock.for_data_dir(settings.data_dir, production=settings.env == "production")
        self._tasks: list[asyncio.Task[None]] = []
        self.crashes: dict[str, int] = {}  # background loop → how many times it crashed and was restarted
        self._stop = asyncio.Event()

    def uow(self) -> UnitOfWork:
        table = self.spec.tables.outbox
        return UnitOfWork(self.sessionmaker, lambda session: Outbox(session, table), self.wakers)

    async def start(self, roles: set[str]) -> None:
        if roles & {"worker", "relay"}:
            self.producer = make_producer(self.settings.kafka_bootstrap_servers)
            await _start_with_retry(self.producer, self._stop)
        if "relay" in roles:
            assert self.producer is not None
            self.relay = OutboxRelay(
                engine=self.engine,
                table=self.spec.tables.outbox,
                producer=self.producer,
                service=self.spec.name,
                source=self.settings.source,
                batch_size=self.settings.relay_batch_size,
                idle_seconds=self.settings.relay_idle_seconds,
                prune_after_days=self.settings.relay_prune_after_days,
            )
            self.wakers.append(self.relay.wake)
            relay = self.relay
            self._spawn(lambda: relay.run(self._stop), "relay")
        if "worker" in roles:
            assert self.producer is not None
            handlers = self.spec.handlers(self.settings)
            if handlers:
                self.runner = ConsumerRunner(
                    service=self.spec.name,
                    bootstrap_servers=self.settings.kafka_bootstrap_servers,
                    handlers=handlers,
                    uow_factory=self.uow,
                    inbox_table=self.spec.tables.inbox,
                    audit_table=self.spec.tables.audit,
                    dlq_producer=self.producer,
                    batch_size=self.settings.consumer_batch_size,
                    max_attempts=self.settings.consumer_max_attempts,
                    backoff_seconds=self.settings.consumer_backoff_seconds,
                    stall_seconds=self.settings.consumer_stall_seconds,
                )
                runner = self.runner
                self._spawn(lambda: runner.run(self._stop), "consumer")
            for loop in self.spec.background:
                self._spawn(functools.partial(loop, self, self._stop), getattr(loop, "__name__", "background"))

    def _spawn(self, start: Callable[[], Awaitable[None]], name: str) -> None:
        """Run a background loop until stop; one that crashes is logged and started again after a backoff
        (a loop that dies leaves a process that looks alive and does nothing)."""

        async def guarded() -> None:
            crashes = 0
            while not self._stop.is_set():
                try:
                    await start()
                    return
                except asyncio.CancelledError:
                    raise
                except Exception:
                    crashes += 1
                    self.crashes[name] = crashes
                    log.exception("background_task_crashed", task=name, crashes=crashes)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stop.wait(), min(30.0, 0.5 * 2**crashes))

        self._tasks.append(asyncio.create_task(guarded(), name=f"{self.spec.name}-{name}"))

    async def stop(self) -> None:
        self._stop.set()
        if self._tasks:
            _done, pending = await asyncio.wait(self._tasks, timeout=15)
            for task in pending:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.producer is not None:
            with contextlib.suppress(TimeoutError, KafkaError):
                await asyncio.wait_for(self.producer.stop(), 10)
        await self.engine.dispose()

    async def wait(self) -> None:
        await self._stop.wait()

    def request_stop(self) -> None:
        self._stop.set()

    async def readiness(self) -> dict[str, str]:
        checks: dict[str, str] = {}
        try:
            async with self.engine.connect() as conn:
                await conn.execution_options(read_only=True)  # on SQLite: not a writer, so not queued as one
                await conn.execute(text("SELECT 1"))
            checks["database"] = "ok"
        except Exception as exc:
            checks["database"] = f"unreachable: {type(exc).__name__}"
        checks["broker"] = "ok" if await broker_reachable(self.settings.kafka_bootstrap_servers) else "unreachable"
        if self.runner is not None:
            checks["consumer"] = "stalled" if self.runner.stalled else "ok"
        if self.relay is not None and self.relay.last_error:
            checks["relay"] = f"failing: {self.relay.last_error[:200]}"
        return checks


async def _start_with_retry(producer: AIOKafkaProducer, stop: asyncio.Event, attempts: int = 30) -> None:
    for attempt in range(1, attempts + 1):
        try:
            await producer.start()
            return
        except KafkaError as exc:
            if attempt == attempts or stop.is_set():
                raise
            log.warning("broker_unreachable_retrying", attempt=attempt, error=str(exc))
            await asyncio.sleep(min(5.0, 0.2 * attempt))


async def get_runtime(request: Request) -> Runtime:  # async: FastAPI runs a plain function in a thread
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def create_app(spec: ServiceSpec, settings: ServiceSettings, roles: set[str] | None = None) -> FastAPI:
    roles = roles if roles is not None else {"api", "worker", "relay"}

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = Runtime(spec, settings)
        app.state.runtime = runtime
        await runtime.start(roles)
        log.info("service_started", roles=sorted(roles), port=settings.port)
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(
        title=f"doudi {spec.name}",
        description=spec.description,
        version="0.1.0",
        lifespan=lifespan,
        responses=PROBLEM_RESPONSES,
    )
    app.state.service_name = spec.name
    install_problem_handlers(app)
    authenticator = make_authenticator(settings)
    development = settings.env != "production"
    # Starlette wraps each middleware around those added before it: the rate limit, added first, runs inside
    # authentication and so counts per token subject (per address for unauthenticated calls).
    app.add_middleware(
        RateLimit,
        per_minute=settings.rate_limit_per_minute,
        burst=settings.rate_limit_burst,
        exempt=frozenset({"/healthz", "/readyz"}),
        store=DatabaseBuckets(
            lambda: app.state.runtime.engine,
            spec.tables.rate_limits,
            settings.rate_limit_per_minute,
            settings.rate_limit_burst,
        )
        if settings.rate_limit_store == "database"
        else None,
    )

    app.add_middleware(Authenticate, authenticator=authenticator, development=development)
    app.add_middleware(TraceContextMiddleware, service=spec.name)

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": spec.name}

    @app.get("/readyz", tags=["health"])
    async def readyz(runtime: RuntimeDep) -> JSONResponse:
        checks = await runtime.readiness()
        if all(value == "ok" for value in checks.values()):
            return JSONResponse({"status": "ready", "checks": checks})
        return problem(503, "Not ready", "A dependency is not available.", checks=checks)

    # Outermost of all: nothing reads a body over the limit.
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.mount("/metrics", make_asgi_app())
    for router in spec.routers:
        app.include_router(router)
    return app


def make_authenticator(settings: ServiceSettings) -> Authenticator:
    dev_key = None
    if not settings.auth_jwks_url and settings.env != "production":
        _private, public = ensure_dev_keypair(settings.data_dir)
        dev_key = public.read_bytes()
    return Authenticator(
        jwks_url=settings.auth_jwks_url,
        issuer=settings.auth_issuer,
        audience=settings.auth_audience,
        dev_public_key=dev_key,
    )


async def _run_headless(spec: ServiceSpec, settings: ServiceSettings, roles: set[str]) -> None:
    runtime = Runtime(spec, settings)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, runtime.request_stop)
    await runtime.start(roles)
    log.info("service_started", roles=sorted(roles), metrics_port=settings.metrics_port or None)
    server = None
    if settings.metrics_port:
        config = uvicorn.Config(
            _health_app(runtime), host=settings.host, port=settings.metrics_port, log_level="warning", access_log=False
        )
        server = uvicorn.Server(config)
        server.install_signal_handlers = lambda: None  # type: ignore[method-assign]  # the runtime owns the signals
        serving = asyncio.create_task(server.serve())
    try:
        await runtime.wait()
    finally:
        if server is not None:
            server.should_exit = True
            await serving
        await runtime.stop()


def _health_app(runtime: Runtime) -> FastAPI:
    """What a worker or relay process serves on `DOUDI_METRICS_PORT`: liveness, readiness and its metrics
    (consumer lag and outbox backlog live in these processes, not in the API's)."""
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": runtime.spec.name}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        checks = await runtime.readiness()
        if all(value == "ok" for value in checks.values()):
            return JSONResponse({"status": "ready", "checks": checks})
        return problem(503, "Not ready", "A dependency is not available.", checks=checks)

    app.mount("/metrics", make_asgi_app())
    return app


def main(spec: ServiceSpec, argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {spec.name}", description=spec.description)
    parser.add_argument("role", nargs="?", default="all", choices=ROLES)
    args = parser.parse_args(argv)
    try:
        settings = load_settings(spec.settings_cls)
    except SettingsError as exc:
        print(f"{spec.name}: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    configure_logging(spec.name, settings.log_level, settings.log_json)
    tracing.configure_tracing(spec.name, settings.otel_exporter, settings.otel_endpoint)
    try:
        _run(spec, settings, args.role)
    finally:
        tracing.shutdown_tracing()
    return 0


def _run(spec: ServiceSpec, settings: ServiceSettings, role: str) -> None:
    roles = {"api", "worker", "relay"} if role == "all" else {role}
    if "api" in roles:
        app = create_app(spec, settings, roles)
        config = uvicorn.Config(
            app,
            host=settings.host,
            port=settings.port,
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=10,
        )
        uvicorn.Server(config).run()
        return
    try:
        import uvloop  # the loop uvicorn takes for the API, for the worker and relay on their own too
    except ImportError:
        asyncio.run(_run_headless(spec, settings, roles))
    else:
        uvloop.run(_run_headless(spec, settings, roles))
