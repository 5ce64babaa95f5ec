"""What every benchmark shares: the machine's description, median-and-spread figures, and writing its
section of docs/benchmarks.md without touching the others."""

from __future__ import annotations

import math
import os
import platform
import statistics
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "docs" / "benchmarks.md"
HEADER = "# Benchmarks\n\nEvery figure here was produced by the command given with it, on the machine named.\n\n"


def spread(values: list[float], fmt: str = "{:,.0f}") -> str:
    if not values:
        return "—"
    return f"{fmt.format(statistics.median(values))} ({fmt.format(min(values))}–{fmt.format(max(values))})"


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))]


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, {platform.system()}"


def write_section(title: str, section: str, output: Path = OUTPUT) -> None:
    """Replace the `## <title>` section of the report (or append it), leaving every other section as it is."""
    heading = f"## {title}"
    body = section if section.startswith(heading) else f"{heading}\n\n{section}"
    output.parent.mkdir(parents=True, exist_ok=True)
    existing = output.read_text() if output.exists() else HEADER
    if heading + "\n" in existing:
        before, _, rest = existing.partition(heading + "\n")
        after = rest[rest.find("\n## ") + 1 :] if "\n## " in rest else ""
        existing = before + body.rstrip() + "\n" + ("\n" + after if after else "")
    else:
        existing = existing.rstrip() + "\n\n" + body.rstrip() + "\n"
    output.write_text(existing)
