"""Eligibility benchmarks: `make bench` runs this and writes docs/benchmarks.md.

1. Engine throughput on one core: the five programmes evaluated on column batches (and, separately, the cost
   of turning parsed households into columns).
2. `doudi screen` end to end on 1,000,000 households: wall time and peak memory, as a user runs it.
3. `POST /v1/evaluations` latency over HTTP against the eligibility API run as `python -m eligibility api`.

Every figure is repeated and reported as median and spread (min–max). Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path

import httpx
import orjson

from bench.report import OUTPUT, machine, spread, write_section
from eligibility.columns import ColumnBuilder
from eligibility.engine import Scalars, evaluate
from eligibility.params import catalogue
from shared.auth import mint_dev_token
from shared.messaging.embedded_broker import free_port
from tests.eligibility.households import generate

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def engine_throughput(n: int, repeats: int) -> dict[str, list[float]]:
    requests = [r for r in generate(n, seed=99) if r["region"] == "310115"]
    as_of = date(2024, 3, 1)
    scalars = Scalars.from_resolved(catalogue().resolve("310115", as_of))
    build_rates, eval_rates = [], []
    for _ in range(repeats):
        builder = ColumnBuilder("310115", as_of)
        started = time.perf_counter()
        for request in requests:
            builder.add(request["household"])
        columns = builder.build()
        built = time.perf_counter()
        evaluate(columns, scalars)
        done = time.perf_counter()
        build_rates.append(len(requests) / (built - started))
        eval_rates.append(len(requests) / (done - built))
    return {"households": [len(requests)], "columns_per_s": build_rates, "evaluate_per_s": eval_rates}


def ensure_file(path: Path, n: int) -> None:
    if path.exists() and sum(1 for _ in path.open("rb")) == n:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    print(f"generating {n:,} households into {path} (once)", flush=True)  # noqa: T201
    with path.open("wb") as out:
        for start in range(0, n, 100_000):
            for request in generate(min(100_000, n - start), seed=start + 1):
                out.write(orjson.dumps(request) + b"\n")


def screen_end_to_end(path: Path, repeats: int) -> dict[str, list[float]]:
    times, peaks = [], []
    with tempfile.TemporaryDirectory() as scratch:
        for _ in range(repeats):
            before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            started = time.perf_counter()
            subprocess.run(
                [str(BIN / "doudi"), "screen", "--input", str(path), "--output", f"{scratch}/out.jsonl"],
                check=True,
                stderr=subprocess.DEVNULL,
            )
            times.append(time.perf_counter() - started)
            peaks.append(max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024)
    return {"seconds": times, "peak_rss_mib_per_process": peaks}


def evaluation_latency(requests: int, repeats: int) -> dict[str, list[float]]:
    port = free_port()
    scratch = tempfile.mkdtemp()
    env = {
        **os.environ,
        "ELIGIBILITY_PORT": str(port),
        "DOUDI_DATA_DIR": scratch,
        "DOUDI_LOG_LEVEL": "WARNING",
        # One client sends every request here: the per-client limit would measure itself, not the engine.
        "DOUDI_RATE_LIMIT_PER_MINUTE": "100000000",
        "DOUDI_RATE_LIMIT_BURST": "1000000",
    }
    subprocess.run([str(BIN / "doudi"), "migrate"], env=env, check=True, stdout=subprocess.DEVNULL)
    server = subprocess.Popen([sys.executable, "-m", "eligibility", "api"], env=env, stderr=subprocess.DEVNULL)
    bodies = generate(requests, seed=5)
    p50s, p99s = [], []
    try:
        bearer = mint_dev_token(
            Path(scratch), role="officer", region="310115", subject="bench", issuer="doudi-dev", audience="doudi"
        )
        with httpx.Client(
            base_url=f"http://127.0.0.1:{port}", timeout=10, headers={"Authorization": f"Bearer {bearer}"}
        ) as client:
            deadline = time.monotonic() + 30
            while True:
                try:
                    client.get("/healthz")
                    break
                except httpx.HTTPError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
            for body in bodies[:200]:  # warm up
                client.post("/v1/evaluations", json=body)
            for _ in range(repeats):
                latencies = []
                for body in bodies:
                    started = time.perf_counter()
                    response = client.post("/v1/evaluations", json=body)
                    latencies.append((time.perf_counter() - started) * 1000)
                    response.raise_for_status()
                latencies.sort()
                p50s.append(latencies[len(latencies) // 2])
                p99s.append(latencies[int(len(latencies) * 0.99) - 1])
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(10)
    return {"p50_ms": p50s, "p99_ms": p99s}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--households", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args()

    print("engine throughput (one core)...", flush=True)  # noqa: T201
    engine = engine_throughput(200_000, max(5, args.repeats))
    print("POST /v1/evaluations latency...", flush=True)  # noqa: T201
    latency = evaluation_latency(2_000, args.repeats)
    data = ROOT / "data" / "bench" / f"households-{args.households}.jsonl"
    ensure_file(data, args.households)
    print(f"doudi screen on {args.households:,} households...", flush=True)  # noqa: T201
    screen = screen_end_to_end(data, args.repeats)

    rows = [
        ("Engine: five programmes evaluated, one core", "households/s", spread(engine["evaluate_per_s"]), "≥ 200,000"),
        (
            "Engine: parsed households turned into columns, one core",
            "households/s",
            spread(engine["columns_per_s"]),
            "—",
        ),
        (
            f"`doudi screen`, {args.households:,} households end to end (2 workers)",
            "s",
            spread(screen["seconds"], "{:.1f}"),
            "< 15",
        ),
        (
            "`doudi screen`: peak resident memory of the largest process",
            "MiB",
            spread(screen["peak_rss_mib_per_process"], "{:.0f}"),
            "< 2,048 (all processes)",
        ),
        (
            "`POST /v1/evaluations` p50, one household, sequential over HTTP",
            "ms",
            spread(latency["p50_ms"], "{:.2f}"),
            "—",
        ),
        ("`POST /v1/evaluations` p99", "ms", spread(latency["p99_ms"], "{:.2f}"), "< 20"),
    ]
    table = ["| measure | unit | median (min–max) | goal |", "|---|---|---|---|"]
    table += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    text = "\n".join(table)
    print(text)  # noqa: T201
    section = (
        "## Eligibility\n\n"
        f"Command: `make bench` (`python -m bench.eligibility --households {args.households} --repeats "
        f"{args.repeats}`)  \nMachine: {machine()}  \nRun: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, "
        f"{args.repeats} repeats (engine: {max(5, args.repeats)}), {engine['households'][0]:,} households in the "
        "engine batch, 2,000 requests per latency round.\n\n"
        f"{text}\n\n"
        "The memory figure is the largest single process (the parent or one of the two workers); three "
        "processes run, so the total is at most three times it.\n"
    )
    write_section("Eligibility", section, args.output)
    print(f"written to {args.output}")  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main())
