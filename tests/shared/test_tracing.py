"""Tracing off (the default): the ids in logs and events are the caller's, or fresh ones, never lost."""

from __future__ import annotations

import re

from shared import tracing

TRACEPARENT = re.compile(r"^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")


def test_with_tracing_off_the_callers_traceparent_is_passed_on_unchanged() -> None:
    tracing.configure_tracing("test", "none")
    parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    with tracing.span("HTTP GET", parent, "server") as passed_on:
        assert passed_on == parent


def test_with_tracing_off_and_no_caller_a_fresh_traceparent_is_made() -> None:
    tracing.configure_tracing("test", "none")
    with tracing.span("apply x", "", "consumer") as first, tracing.span("apply x", "", "consumer") as second:
        assert TRACEPARENT.match(first)
        assert TRACEPARENT.match(second)
        assert first != second


def test_with_an_exporter_the_span_passed_on_is_a_child_in_the_callers_trace() -> None:
    tracing.configure_tracing("test", "console")
    try:
        parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        with tracing.span("HTTP GET", parent, "server") as passed_on:
            assert TRACEPARENT.match(passed_on)
            assert passed_on.split("-")[1] == "4bf92f3577b34da6a3ce929d0e0e4736"
            assert passed_on.split("-")[2] != "00f067aa0ba902b7"
    finally:
        tracing.shutdown_tracing()
        tracing.configure_tracing("test", "none")
