"""The trace and correlation ids of the work in progress, carried from a request or an event into every
event it causes."""

from __future__ import annotations

import uuid
from contextvars import ContextVar
from dataclasses import dataclass

from shared.messaging.envelope import new_traceparent


@dataclass(frozen=True)
class TraceContext:
    traceparent: str
    correlation_id: str

    @classmethod
    def new(cls) -> TraceContext:
        return cls(traceparent=new_traceparent(), correlation_id=str(uuid.uuid4()))


current_trace: ContextVar[TraceContext | None] = ContextVar("current_trace", default=None)


def trace() -> TraceContext:
    context = current_trace.get()
    if context is None:
        context = TraceContext.new()
        current_trace.set(context)
    return context
