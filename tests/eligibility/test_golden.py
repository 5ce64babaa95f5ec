"""Golden cases: household in, results out, with the article each rests on. Each file in golden/ was worked out
by hand from RULES.md and the parameter files, never by running the engine; `expect` lists only what the case
is about (reason_codes must all appear among the result's reasons)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ServiceFactory, api_client

GOLDEN = Path(__file__).parent / "golden"
CASES = {path.stem: json.loads(path.read_text()) for path in sorted(GOLDEN.glob("*.json"))}


def test_there_are_enough_golden_cases_and_each_names_its_article() -> None:
    assert len(CASES) >= 60
    for name, case in CASES.items():
        assert case["description"], name
        assert case["article"], name


@pytest.mark.parametrize("name", list(CASES))
async def test_golden_case(services: ServiceFactory, name: str) -> None:
    case = CASES[name]
    expect: dict[str, Any] = case["expect"]
    async with api_client(services, "eligibility", role="officer", region="000000") as client:
        response = await client.post("/v1/evaluations", json=case["request"])
    assert response.status_code == expect["status"], response.text
    body = response.json()
    if expect["status"] != 200:
        fields = [e.get("field", "") for e in body.get("errors", [])]
        assert expect["error_field"] in body["detail"] or any(expect["error_field"] in f for f in fields), body
        return
    for key, value in expect.get("household", {}).items():
        assert body["household"][key] == value, (key, body["household"])
    results = {r["programme"]: r for r in body["results"]}
    for result in results.values():
        assert all(reason["source"] for reason in result["reasons"]), result["programme"]
    for programme, fields in expect.get("results", {}).items():
        result = results[programme]
        for key, value in fields.items():
            if key == "reason_codes":
                codes = [r["code"] for r in result["reasons"]]
                assert set(value) <= set(codes), (programme, codes)
            else:
                assert result[key] == value, (programme, key, result[key])
