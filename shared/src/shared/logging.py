"""Structured logs (structlog, JSON by default) with the trace context of the work in progress on every line."""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

from shared.messaging.context import current_trace
from shared.pii import redact_event


def _add_trace(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    context = current_trace.get()
    if context is not None:
        event_dict.setdefault("correlation_id", context.correlation_id)
        event_dict.setdefault("traceparent", context.traceparent)
        event_dict.setdefault("trace_id", context.traceparent[3:35])
    return event_dict


def configure_logging(service: str, level: str = "INFO", json: bool = True) -> None:
    renderer: Any = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _add_trace,
            structlog.processors.format_exc_info,
            redact_event,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    structlog.contextvars.bind_contextvars(service=service)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s %(message)s")


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
