"""A worker's background loop: one step every few seconds until the process stops. A step that fails (the
database away for a moment) is logged and tried again next round; nothing it was to do is lost, because
every step works from what the database holds."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from shared.logging import get_logger

log = get_logger(__name__)


async def every(seconds: float, step: Callable[[], Awaitable[None]], stop: asyncio.Event, *, name: str) -> None:
    """Run `step` now and then every `seconds` until `stop` is set; a failure logs `<name>_failed`."""
    while not stop.is_set():
        try:
            await step()
        except Exception as exc:
            log.warning(f"{name}_failed", error=f"{type(exc).__name__}: {exc}")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), seconds)
