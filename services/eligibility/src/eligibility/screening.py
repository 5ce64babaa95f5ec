"""`doudi screen --input FILE --output FILE [--trace]`: bulk screening of JSON Lines evaluation requests.

Each output line answers the input line of the same number: every programme's `eligible`, `monthly_amount`
(or `max_amount` for temporary aid) and reason codes, the same as `/v1/evaluations` gives; `--trace` adds the
full explanation. A bad line gets an error line; it never stops the run. Progress goes to stderr.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import orjson
from pydantic import ValidationError

from eligibility.evaluation import screen

CHUNK = 50_000


def normalise(request: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    from eligibility.api.routes import EvaluationRequest

    try:
        return EvaluationRequest.model_validate(request).model_dump(mode="json"), None
    except ValidationError as exc:
        first = exc.errors()[0]
        return None, f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}"


def _read(lines: list[bytes], first_line: int) -> Iterator[tuple[int, dict[str, Any] | None, str | None]]:
    for offset, raw in enumerate(lines):
        number = first_line + offset
        try:
            request = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            yield number, None, f"not JSON: {exc}"
            continue
        if not isinstance(request, dict):
            yield number, None, "each line must be a JSON object"
            continue
        yield number, request, None


def run(
    source: IO[bytes], sink: IO[bytes], *, with_trace: bool = False, progress: IO[str] | None = None
) -> dict[str, int]:
    """Screen every line of `source` into `sink`, in input order, chunk by chunk (bounded memory)."""
    counts = {"households": 0, "errors": 0}
    started = time.perf_counter()
    line = 1
    while True:
        chunk = [raw for raw in (source.readline() for _ in range(CHUNK)) if raw]
        if not chunk:
            break
        answers = dict(screen(_read(chunk, line), with_trace=with_trace, normalise=normalise))
        for number in range(line, line + len(chunk)):
            answer = answers[number]
            counts["errors" if "error" in answer else "households"] += 1
            sink.write(orjson.dumps(answer) + b"\n")
        line += len(chunk)
        if progress is not None:
            elapsed = time.perf_counter() - started
            done = line - 1
            print(f"screened {done:,} lines in {elapsed:.1f}s ({done / elapsed:,.0f}/s)", file=progress, flush=True)
    return counts


def main(input_path: Path, output_path: Path, with_trace: bool = False) -> int:
    with input_path.open("rb") as source, output_path.open("wb") as sink:
        counts = run(source, sink, with_trace=with_trace, progress=sys.stderr)
    print(f"done: {counts['households']:,} households screened, {counts['errors']:,} lines refused", file=sys.stderr)  # noqa: T201
    return 0
