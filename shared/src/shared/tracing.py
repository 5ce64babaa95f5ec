"""OpenTelemetry traces that follow a case from the HTTP request across Kafka into every service.

The W3C `traceparent` is already carried everywhere (request header → outbox row → Kafka header → the
consumer's context → the events it writes), so the case can be followed in the logs with tracing off.
With an exporter set (`DOUDI_OTEL_EXPORTER=otlp|console`), each request and each applied event is also a
span: the request's span is a child of the caller's traceparent, the span of an applied event is a child of
the span that wrote the event, and the traceparent passed on is the new span's own.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

from opentelemetry import trace
from opentelemetry.trace import SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from shared.messaging.envelope import new_traceparent

_PROPAGATOR = TraceContextTextMapPropagator()
_tracer: trace.Tracer = trace.NoOpTracer()
_provider: Any = None  # the SDK's TracerProvider, when an exporter is set


def configure_tracing(service: str, exporter: Literal["none", "otlp", "console"], endpoint: str = "") -> None:
    """Install a tracer provider for this process. `none` leaves tracing a no-op (nothing is imported)."""
    global _tracer, _provider
    if exporter == "none":
        _tracer = trace.NoOpTracer()
        return
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

    span_exporter: SpanExporter
    if exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        span_exporter = OTLPSpanExporter(endpoint=endpoint)
    else:
        span_exporter = ConsoleSpanExporter()
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: service}))
    # A batch processor: exporting never sits on the request's or the consumer's path.
    provider.add_span_processor(BatchSpanProcessor(span_exporter, schedule_delay_millis=500))
    _provider = provider
    _tracer = provider.get_tracer("doudi")


def shutdown_tracing() -> None:
    """Flush what is buffered (on a clean stop)."""
    global _tracer, _provider
    if _provider is not None:
        _provider.force_flush(2000)
        _provider.shutdown()
    _tracer, _provider = trace.NoOpTracer(), None


@contextmanager
def span(name: str, parent_traceparent: str, kind: Literal["server", "consumer"], **attributes: Any) -> Iterator[str]:
    """A span, child of `parent_traceparent` (if any); yields the traceparent to pass on.

    With tracing off (or a malformed parent) it yields the parent unchanged, or a fresh one if there is none,
    so the ids in logs and events are the same whether or not spans are exported.
    """
    carrier = {"traceparent": parent_traceparent} if parent_traceparent else {}
    parent = _PROPAGATOR.extract(carrier)
    span_kind = SpanKind.SERVER if kind == "server" else SpanKind.CONSUMER
    with _tracer.start_as_current_span(name, context=parent, kind=span_kind, attributes=attributes) as current:
        context = current.get_span_context()
        if current.is_recording() and context.is_valid:
            yield f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"
        else:
            yield parent_traceparent or new_traceparent()
