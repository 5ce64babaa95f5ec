"""`doudi up`: the embedded broker, migrated databases, the sandbox bank and the four services, as child
processes, stopped cleanly on Ctrl-C (SIGTERM, a grace period, then SIGKILL; children also die with us)."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import make_url

from shared.auth import ensure_dev_keypair
from shared.db.migrate import upgrade
from shared.messaging.embedded_broker import EmbeddedBroker, port_in_use
from shared.messaging.kafka import create_topics
from shared.process import die_with_parent
from shared.service import ServiceSpec
from shared.settings import ServiceSettings, SettingsError, load_settings

SERVICES = ("intake", "eligibility", "disbursement", "referral")


class StackSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DOUDI_", env_file=".env", extra="ignore")

    env: str = "development"
    data_dir: Path = Path("data")
    auth_issuer: str = "doudi-dev"
    auth_audience: str = "doudi"
    kafka_port: int = Field(default=9092, ge=1, le=65535)
    ready_timeout_seconds: float = Field(default=60.0, gt=0)


class BankPort(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SANDBOX_BANK_", env_file=".env", extra="ignore")
    port: int = Field(default=8005, ge=1, le=65535)


class StackError(Exception):
    pass


def load_spec(name: str) -> ServiceSpec:
    spec: ServiceSpec = importlib.import_module(f"{name}.spec").SPEC
    return spec


def service_settings(stack: StackSettings, bootstrap: str) -> dict[str, ServiceSettings]:
    """Validate every service's settings before anything starts."""
    os.environ["DOUDI_DATA_DIR"] = str(stack.data_dir)
    os.environ["DOUDI_KAFKA_BOOTSTRAP_SERVERS"] = bootstrap
    # The sandbox bank's address follows its port unless a real gateway is configured.
    os.environ.setdefault("DISBURSEMENT_BANK_URL", f"http://127.0.0.1:{load_settings(BankPort).port}")
    # On a laptop, look for ended public notices every 2 s (production: every 30 s) so `doudi clock` is quick.
    os.environ.setdefault("ELIGIBILITY_NOTICE_CHECK_SECONDS", "2")
    return {name: load_settings(load_spec(name).settings_cls) for name in SERVICES}


def migrate_all(settings: dict[str, ServiceSettings], out: IO[str] = sys.stdout) -> None:
    for name, svc in settings.items():
        upgrade(load_spec(name).migrations, svc.database_url)
        shown = make_url(svc.database_url).render_as_string(hide_password=True)
        print(f"  migrated {name:<13} {shown}", file=out)


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    url: str


class Stack:
    def __init__(self, stack: StackSettings) -> None:
        self.settings = stack
        self.logs = stack.data_dir / "logs"
        self.broker = EmbeddedBroker(stack.kafka_port, self.logs / "broker.log")
        self.children: list[Child] = []
        self._stopping = False

    def run(self) -> int:
        bootstrap = self.broker.bootstrap_servers
        try:
            services = service_settings(self.settings, bootstrap)
            bank_port = load_settings(BankPort).port
        except SettingsError as exc:
            raise StackError(str(exc)) from None
        ports = {"broker": self.settings.kafka_port, "sandbox_bank": bank_port}
        ports.update({name: svc.port for name, svc in services.items()})
        for owner, port in ports.items():
            if port_in_use(port):
                raise StackError(f"port {port} ({owner}) is already in use; stop what holds it or change the port")
        self.logs.mkdir(parents=True, exist_ok=True)
        if not any(svc.auth_jwks_url for svc in services.values()):
            ensure_dev_keypair(self.settings.data_dir)  # one development key, trusted by every service
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            print(f"doudi: starting the embedded broker (Tansu) on {bootstrap}")  # noqa: T201
            self.broker.start()
            created = asyncio.run(create_topics(bootstrap))
            print(f"  created {len(created)} topics with their partition counts")  # noqa: T201
            print("doudi: migrating databases")  # noqa: T201
            migrate_all(services)
            env = {
                **os.environ,
                "DOUDI_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
                "DOUDI_DATA_DIR": str(self.settings.data_dir),
            }
            env.setdefault("SANDBOX_BANK_STATEMENT_DIR", str(self.settings.data_dir / "bank"))
            self._spawn("sandbox_bank", [sys.executable, "-m", "sandbox_bank"], env, f"http://127.0.0.1:{bank_port}")
            for name, svc in services.items():
                self._spawn(name, [sys.executable, "-m", name, "all"], env, f"http://{svc.host}:{svc.port}")
            self._wait_ready()
            self._print_summary(bootstrap)
            while not self._stopping:
                for child in self.children:
                    if child.process.poll() is not None:
                        print(  # noqa: T201
                            f"doudi: {child.name} exited with code {child.process.returncode}; "
                            f"see {child.log_path}. Stopping everything.",
                            file=sys.stderr,
                        )
                        self._stopping = True
                        return 1
                time.sleep(0.2)
            return 0
        finally:
            self.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _on_signal(self, _signum: int, _frame: object) -> None:
        self._stopping = True

    def _spawn(self, name: str, argv: list[str], env: dict[str, str], url: str) -> None:
        log_path = self.logs / f"{name}.log"
        log = log_path.open("ab")
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env=env,
            start_new_session=True,  # Ctrl-C reaches us alone; we stop the children in order.
            preexec_fn=die_with_parent,
        )
        log.close()
        self.children.append(Child(name, process, log_path, url))

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.settings.ready_timeout_seconds
        pending = {c.name: c for c in self.children}
        with httpx.Client(timeout=2.0) as client:
            while pending:
                if self._stopping:
                    raise StackError("interrupted while starting")
                for name, child in list(pending.items()):
                    if child.process.poll() is not None:
                        tail = child.log_path.read_text(errors="replace").splitlines()[-15:]
                        raise StackError(f"{name} exited during start-up:\n" + "\n".join(tail))
                    path = "/healthz" if name == "sandbox_bank" else "/readyz"
                    with contextlib.suppress(httpx.HTTPError):
                        if client.get(child.url + path).status_code == 200:
                            del pending[name]
                if time.monotonic() > deadline:
                    raise StackError(
                        f"not ready after {self.settings.ready_timeout_seconds:.0f}s: {', '.join(pending)}"
                    )
                time.sleep(0.2)

    def _print_summary(self, bootstrap: str) -> None:
        lines = ["", "doudi is up:", f"  {'broker':<13} {bootstrap}  (Tansu, in memory)"]
        for child in self.children:
            docs = "" if child.name == "sandbox_bank" else f"  docs {child.url}/docs"
            lines.append(f"  {child.name:<13} {child.url}{docs}")
        lines += [
            f"  {'data':<13} {self.settings.data_dir.resolve()}",
            f"  {'logs':<13} {self.logs.resolve()}",
            "",
            "Try it: .venv/bin/doudi demo    A token: .venv/bin/doudi token --role window --region 310115",
            "Stop: Ctrl-C",
        ]
        print("\n".join(lines), flush=True)  # noqa: T201

    def stop(self) -> None:
        """Services first (they drain their consumers and relays), then the bank, then the broker."""
        if not self.children and self.broker.process is None:
            return
        print("\ndoudi: stopping", flush=True)  # noqa: T201
        services = [c for c in self.children if c.name != "sandbox_bank"]
        others = [c for c in self.children if c.name == "sandbox_bank"]
        for group in (services, others):
            for child in group:
                if child.process.poll() is None:
                    child.process.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 20
            for child in group:
                try:
                    child.process.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    child.process.kill()
                    child.process.wait()
        self.children.clear()
        self.broker.stop()
        print("doudi: stopped", flush=True)  # noqa: T201
