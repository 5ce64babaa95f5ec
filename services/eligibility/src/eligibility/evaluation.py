"""Evaluating households: one (`/v1/evaluations`) or in bulk (`doudi screen`), through the same engine."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from eligibility.columns import ColumnBuilder
from eligibility.engine import Scalars, evaluate
from eligibility.explain import explain, summaries
from eligibility.params import Catalogue, ParameterError, catalogue
from shared.errors import Unprocessable


class EvaluationRefused(Unprocessable):
    """A well-formed request the rules cannot answer (unknown region, a date before any standard...)."""

    def __init__(self, error: ParameterError) -> None:
        super().__init__(f"{error.field}: {error}", errors=[{"field": error.field, "message": str(error)}])


def evaluate_request(
    request: dict[str, Any], *, with_trace: bool = True, data: Catalogue | None = None
) -> dict[str, Any]:
    """One evaluation request (as JSON gives it, already validated by the schema) → the response body."""
    data = data or catalogue()
    region, as_of = request["region"], date.fromisoformat(str(request["as_of"]))
    try:
        resolved = data.resolve(region, as_of, request.get("parameter_overrides") or None)
        scalars = Scalars.from_resolved(resolved)
    except ParameterError as exc:
        raise EvaluationRefused(exc) from None
    builder = ColumnBuilder(region, as_of)
    household = request["household"]
    builder.add(household)
    outcome = evaluate(builder.build(), scalars)
    emergency = household.get("emergency")
    answer = explain(
        outcome,
        0,
        scalars,
        resolved,
        region,
        [m["ref"] for m in household["members"]],
        0,
        emergency["kind"] if emergency else None,
        with_trace=with_trace,
    )
    return {"region": region, "as_of": as_of.isoformat(), **answer}


@dataclass
class _Group:
    builder: ColumnBuilder
    overrides: dict[str, Any] | None
    lines: list[int] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)


Normalise = Callable[[dict[str, Any]], tuple[dict[str, Any] | None, str | None]]


def screen(
    requests: Iterable[tuple[int, dict[str, Any] | None, str | None]],
    *,
    with_trace: bool = False,
    data: Catalogue | None = None,
    normalise: Normalise | None = None,
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Evaluate many requests in bulk: households sharing a region, date and overrides are evaluated as one
    vectorised batch. Input items are (line number, request or None, error); yields (line number, output).

    The fast reader accepts only the canonical form (money as strings with at most two decimals...). A request
    it cannot read goes through `normalise` (the API's schema): a valid one comes back canonical and is
    evaluated, an invalid one is reported with the schema's message, so bulk and API agree."""
    data = data or catalogue()
    groups: dict[tuple[str, str, str], _Group] = {}
    for line, request, error in requests:
        if request is None:
            yield line, {"line": line, "error": error}
            continue
        try:
            region, day = request["region"], request["as_of"]
            overrides = request.get("parameter_overrides") or None
            key = (region, day, json.dumps(overrides, sort_keys=True) if overrides else "")
            group = groups.get(key)
            if group is None:
                as_of = date.fromisoformat(str(day))
                Scalars.from_resolved(data.resolve(region, as_of, overrides))  # refuse an unanswerable group early
                group = groups[key] = _Group(ColumnBuilder(region, as_of), overrides)
            try:
                group.builder.add(request["household"])
            except (KeyError, TypeError, ValueError, AttributeError):
                if normalise is None:
                    raise
                canonical, problem = normalise(request)
                if canonical is None:
                    yield line, {"line": line, "error": problem}
                    continue
                request = canonical
                group.builder.add(request["household"])
        except ParameterError as exc:
            yield line, {"line": line, "error": f"{exc.field}: {exc}"}
            continue
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            yield line, {"line": line, "error": f"invalid request: {exc}"}
            continue
        group.lines.append(line)
        if with_trace:
            group.requests.append(request)
    for group in groups.values():
        region, as_of = group.builder.region, group.builder.as_of
        resolved = data.resolve(region, as_of, group.overrides)
        scalars = Scalars.from_resolved(resolved)
        outcome = evaluate(group.builder.build(), scalars)
        results = summaries(outcome)
        day = as_of.isoformat()
        offset = 0
        for i, line in enumerate(group.lines):
            out: dict[str, Any] = {"line": line, "region": region, "as_of": day, "results": results[i]}
            if with_trace:
                household = group.requests[i]["household"]
                refs = [m["ref"] for m in household["members"]]
                emergency = household.get("emergency")
                out["explanation"] = explain(
                    outcome, i, scalars, resolved, region, refs, offset, emergency["kind"] if emergency else None
                )
                offset += len(refs)
            yield line, out
