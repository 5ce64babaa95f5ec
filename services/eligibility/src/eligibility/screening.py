"""`doudi screen --input FILE --output FILE [--trace]`: bulk screening of JSON Lines evaluation requests.

Each output line answers the input line of the same number: every programme's `eligible`, `monthly_amount`
(or `max_amount` for temporary aid) and reason codes, the same as `/v1/evaluations` gives; `--trace` adds the
full explanation. A bad line gets an error line; it never stops the run. Progress goes to stderr.
"""

from __future__ import annotations

import contextlib
import gc
import multiprocessing
import os
import sys
import tempfile
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import IO, Any

import orjson
from pydantic import ValidationError

from eligibility.evaluation import screen

CHUNK = 20_000


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


def screen_chunk(lines: list[bytes], first_line: int, with_trace: bool = False) -> tuple[bytes, int, int]:
    """Screen one chunk of input lines; returns the output lines (in input order), households and errors."""
    answers = dict(screen(_read(lines, first_line), with_trace=with_trace, normalise=normalise))
    out, errors = [], 0
    for number in range(first_line, first_line + len(lines)):
        answer = answers[number]
        errors += "error" in answer
        out.append(orjson.dumps(answer))
    out.append(b"")
    return b"\n".join(out), len(lines) - errors, errors


def _worker_init() -> None:
    gc.disable()


def run(
    source: IO[bytes],
    sink: IO[bytes],
    *,
    with_trace: bool = False,
    progress: IO[str] | None = None,
    chunk: int = CHUNK,
) -> dict[str, int]:
    """Screen every line of `source` into `sink` in input order, one chunk at a time (bounded memory)."""
    report = _Report(sink, progress)
    with _no_cyclic_gc():
        for first, lines in _chunks(source, chunk):
            report.add(screen_chunk(lines, first, with_trace), first + len(lines) - 1)
    return report.counts


def run_file(
    path: Path, sink: IO[bytes], *, with_trace: bool = False, progress: IO[str] | None = None, workers: int = 2
) -> dict[str, int]:
    """Screen a file with `workers` processes. The parent only finds line-aligned byte ranges and counts their
    lines; each worker reads and screens its own range, so no input crosses a pipe. At most two ranges per
    worker are in flight: memory stays bounded however large the file."""
    if workers <= 1:
        with path.open("rb") as source:
            return run(source, sink, with_trace=with_trace, progress=progress)
    report = _Report(sink, progress)
    context = multiprocessing.get_context("fork")
    with (
        tempfile.TemporaryDirectory(prefix="doudi-screen-") as scratch,
        _no_cyclic_gc(),
        ProcessPoolExecutor(workers, mp_context=context, initializer=_worker_init) as pool,
    ):
        pending: deque[tuple[int, Future[tuple[str, int, int]]]] = deque()

        def collect() -> None:
            last, future = pending.popleft()
            part, households, errors = future.result()
            report.splice(Path(part), households, errors, last)

        for start, end, first, count in _ranges(path):
            part = f"{scratch}/{start:016d}"
            pending.append((first + count - 1, pool.submit(screen_range, path, start, end, first, with_trace, part)))
            if len(pending) >= 2 * workers:
                collect()
        while pending:
            collect()
    return report.counts


def screen_range(
    path: Path, start: int, end: int, first_line: int, with_trace: bool, part: str
) -> tuple[str, int, int]:
    """A worker's share: read its byte range, screen it, write the answers to `part` (no pipe carries them)."""
    with path.open("rb") as source:
        source.seek(start)
        data = source.read(end - start)
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    out, households, errors = screen_chunk(lines, first_line, with_trace)
    Path(part).write_bytes(out)
    return part, households, errors


RANGE_BYTES = 8 * 1024 * 1024


def _ranges(path: Path) -> Iterator[tuple[int, int, int, int]]:
    """(start, end, first line number, line count) of line-aligned ranges of about RANGE_BYTES."""
    line, start = 1, 0
    with path.open("rb") as source:
        while True:
            block = source.read(RANGE_BYTES)
            if not block:
                return
            block += source.readline()  # finish the line the block cut
            count = block.count(b"\n") + (0 if block.endswith(b"\n") else 1)
            yield start, start + len(block), line, count
            start += len(block)
            line += count


class _Report:
    def __init__(self, sink: IO[bytes], progress: IO[str] | None) -> None:
        self.sink = sink
        self.progress = progress
        self.counts = {"households": 0, "errors": 0}
        self.started = time.perf_counter()

    def add(self, result: tuple[bytes, int, int], done: int) -> None:
        out, households, errors = result
        self.sink.write(out)
        self._count(households, errors, done)

    def splice(self, part: Path, households: int, errors: int, done: int) -> None:
        """Append a worker's part file to the output in the kernel (sendfile), then drop it."""
        self.sink.flush()
        with part.open("rb") as source:
            size, offset = os.fstat(source.fileno()).st_size, 0
            while offset < size:
                offset += os.sendfile(self.sink.fileno(), source.fileno(), offset, size - offset)
        part.unlink()
        self._count(households, errors, done)

    def _count(self, households: int, errors: int, done: int) -> None:
        self.counts["households"] += households
        self.counts["errors"] += errors
        if self.progress is not None:
            elapsed = time.perf_counter() - self.started
            rate = done / elapsed if elapsed else 0
            print(f"screened {done:,} lines in {elapsed:.1f}s ({rate:,.0f}/s)", file=self.progress, flush=True)


@contextlib.contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    """Millions of small dicts and lists: the cyclic collector would cost more than the screening itself.
    Nothing built here forms a cycle, so reference counting frees it all."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _chunks(source: IO[bytes], size: int) -> Iterator[tuple[int, list[bytes]]]:
    line = 1
    while True:
        lines = [raw for raw in (source.readline() for _ in range(size)) if raw]
        if not lines:
            return
        yield line, lines
        line += len(lines)


def main(input_path: Path, output_path: Path, with_trace: bool = False, workers: int | None = None) -> int:
    workers = workers or os.cpu_count() or 1
    with output_path.open("wb") as sink:
        counts = run_file(input_path, sink, with_trace=with_trace, progress=sys.stderr, workers=workers)
    print(f"done: {counts['households']:,} households screened, {counts['errors']:,} lines refused", file=sys.stderr)  # noqa: T201
    return 0
