"""A worker run alone (`python -m <service> worker`, as a production Deployment runs it) serves its own
liveness, readiness and metrics, so its consumer lag can be scraped and a stuck pod restarted."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from shared.messaging.embedded_broker import EmbeddedBroker, free_port


def test_a_worker_process_serves_health_readiness_and_its_consumer_lag(
    broker: EmbeddedBroker, database_urls: dict[str, str], tmp_path: Path
) -> None:
    port = free_port()
    env = {
        **os.environ,
        "DOUDI_DATA_DIR": str(tmp_path),
        "DOUDI_ENV": "test",
        "DOUDI_KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
        "DOUDI_METRICS_PORT": str(port),
        "REFERRAL_DATABASE_URL": database_urls["referral"],
    }
    process = subprocess.Popen([sys.executable, "-m", "referral", "worker"], env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        metrics = ""
        lag = 'doudi_consumer_lag{partition="0",service="referral"'
        while time.monotonic() < deadline and lag not in metrics:
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            try:
                assert httpx.get(f"http://127.0.0.1:{port}/healthz").json()["service"] == "referral"
                metrics = httpx.get(f"http://127.0.0.1:{port}/metrics/").text
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        assert lag in metrics, metrics
        ready = httpx.get(f"http://127.0.0.1:{port}/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"] == {"database": "ok", "broker": "ok", "consumer": "ok"}
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
    assert port_free(port)


def port_free(port: int) -> bool:
    from shared.messaging.embedded_broker import port_in_use

    return not port_in_use(port)
