"""Properties of the rules, and agreement of bulk screening with `/v1/evaluations`."""

from __future__ import annotations

import copy
import io
from datetime import date
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eligibility.evaluation import evaluate_request
from eligibility.screening import run
from tests.conftest import ServiceFactory, api_client
from tests.eligibility.households import requests

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def result(answer: dict[str, Any], programme: str) -> dict[str, Any]:
    return next(r for r in answer["results"] if r["programme"] == programme)


@FAST
@given(requests())
def test_more_income_never_raises_the_allowance(request: dict[str, Any]) -> None:
    before = result(evaluate_request(request, with_trace=False), "subsistence_allowance")
    richer = copy.deepcopy(request)
    richer["household"]["members"][0].setdefault("incomes", []).append({"kind": "wage", "monthly": "100.00"})
    after = result(evaluate_request(richer, with_trace=False), "subsistence_allowance")
    assert Decimal(after["monthly_amount"]) <= Decimal(before["monthly_amount"])


@FAST
@given(requests())
def test_the_allowance_never_exceeds_the_standard_times_counted_members(request: dict[str, Any]) -> None:
    answer = evaluate_request(request, with_trace=False)
    allowance = result(answer, "subsistence_allowance")
    cap = Decimal(allowance["standard"]) * answer["household"]["counted_members"]
    assert Decimal(allowance["monthly_amount"]) <= cap
    assert Decimal(result(answer, "expenditure_hardship")["monthly_amount"]) <= cap


@FAST
@given(requests())
def test_below_the_standard_is_never_denied_for_income(request: dict[str, Any]) -> None:
    answer = evaluate_request(request, with_trace=False)
    allowance = result(answer, "subsistence_allowance")
    codes = [r["code"] for r in allowance["reasons"]]
    if Decimal(answer["household"]["per_capita_monthly_income"]) < Decimal(allowance["standard"]):
        assert "income_not_below_standard" not in codes
        if answer["household"]["counted_members"] and codes == ["income_below_standard"]:
            assert allowance["eligible"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(requests())
def test_screen_and_evaluations_agree(request: dict[str, Any]) -> None:
    single = evaluate_request(request, with_trace=False)
    sink = io.BytesIO()
    run(io.BytesIO(orjson.dumps(request) + b"\n"), sink)
    (line,) = [orjson.loads(raw) for raw in sink.getvalue().splitlines()]
    for programme, bulk in line["results"].items():
        answer = result(single, programme)
        assert bulk["eligible"] == answer["eligible"], programme
        amount = "max_amount" if programme == "temporary_aid" else "monthly_amount"
        assert bulk[amount] == answer[amount], programme
        assert bulk["reasons"] == [r["code"] for r in answer["reasons"]], programme


def test_a_batch_of_many_households_matches_one_by_one() -> None:
    from tests.eligibility.households import generate

    batch = generate(300, seed=11)
    sink = io.BytesIO()
    source = b"".join(orjson.dumps(r) + b"\n" for r in batch) + b"not json\n"
    counts = run(io.BytesIO(source), sink)
    lines = [orjson.loads(raw) for raw in sink.getvalue().splitlines()]
    assert counts == {"households": 300, "errors": 1}
    assert lines[-1]["line"] == 301
    assert "error" in lines[-1]
    for request, line in zip(batch, lines, strict=False):
        single = evaluate_request(request, with_trace=False)
        for programme, bulk in line["results"].items():
            assert bulk["eligible"] == result(single, programme)["eligible"]


class TestEvaluationsApi:
    async def test_parameter_overrides_move_every_derived_figure(self, services: ServiceFactory) -> None:
        from tests.eligibility.households import generate

        body = generate(1, seed=3)[0]
        body["region"], body["as_of"] = "310115", "2021-08-15"
        body["household"] = {
            "members": [
                {
                    "ref": "m1",
                    "relationship": "applicant",
                    "birth_date": "1980-01-01",
                    "hukou_region": "310115",
                    "incomes": [{"kind": "wage", "monthly": "1400.00"}],
                }
            ],
            "emergency": {"kind": "fire", "occurred_on": "2021-08-10", "region": "310115"},
        }
        async with api_client(services, "eligibility") as client:
            plain = (await client.post("/v1/evaluations", json=body)).json()
            body["parameter_overrides"] = {"subsistence_allowance.standard": "1500.00"}
            what_if = (await client.post("/v1/evaluations", json=body)).json()
        assert not result(plain, "subsistence_allowance")["eligible"]
        assert result(what_if, "subsistence_allowance")["monthly_amount"] == "100.00"
        assert result(what_if, "low_income_margin")["line"] == "2250.00"
        assert result(what_if, "temporary_aid")["max_amount"] == "4500.00"
        assert any(t["overridden"] for t in result(what_if, "subsistence_allowance")["trace"])

    @pytest.mark.parametrize(
        ("change", "field"),
        [
            ({"household": {"members": []}}, "household.members"),
            ({"region": "999999"}, "region"),
            ({"as_of": "2010-01-01"}, "as_of"),
            ({"parameter_overrides": {"no.such": "1"}}, "parameter_overrides.no.such"),
            ({"parameter_overrides": {"subsistence_allowance.standard": "-5"}}, "parameter_overrides"),
        ],
    )
    async def test_bad_requests_are_422_naming_the_field(
        self, services: ServiceFactory, change: dict[str, Any], field: str
    ) -> None:
        body = {
            "region": "310115",
            "as_of": "2024-03-01",
            "household": {
                "members": [
                    {"ref": "m1", "relationship": "applicant", "birth_date": "1980-01-01", "hukou_region": "310115"}
                ]
            },
        }
        body.update(change)
        async with api_client(services, "eligibility") as client:
            response = await client.post("/v1/evaluations", json=body)
        assert response.status_code == 422, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert field in response.json()["detail"]

    async def test_parameters_in_force_are_listed_with_references(self, services: ServiceFactory) -> None:
        async with api_client(services, "eligibility") as client:
            listing = (await client.get("/v1/parameters", params={"region": "310115", "as_of": "2021-07-01"})).json()
            refused = await client.get("/v1/parameters", params={"region": "999999", "as_of": "2021-07-01"})
        by_name = {p["name"]: p for p in listing["parameters"]}
        standard = by_name["subsistence_allowance.standard"]
        assert standard["value"] == "1330.00"
        assert standard["effective"] == "2021-07-01"
        assert standard["verified"] is True
        assert standard["region"] == "310000"
        assert all(p["reference"] for p in listing["parameters"])
        assert refused.status_code == 422


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(requests(), st.dates(min_value=date(2000, 1, 1), max_value=date(2035, 12, 31)))
def test_any_date_gives_an_answer_or_a_clear_refusal(request: dict[str, Any], as_of: date) -> None:
    from eligibility.evaluation import EvaluationRefused

    request["as_of"] = as_of.isoformat()
    refusal = ""
    try:
        answer = evaluate_request(request, with_trace=True)
    except EvaluationRefused as refused:
        refusal = refused.detail
    if refusal:
        assert refusal.startswith("as_of:")
        return
    assert {r["programme"] for r in answer["results"]} == {
        "subsistence_allowance",
        "low_income_margin",
        "expenditure_hardship",
        "temporary_aid",
        "extreme_poverty",
    }
