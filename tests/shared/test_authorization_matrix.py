"""The authorisation matrix as a table: every role × every endpoint of every service, over HTTP."""

from __future__ import annotations

import re
from typing import Any

import pytest

from shared.auth import ROLES
from shared.authz import MATRIX, SIGNED_PATHS
from tests.conftest import SERVICES, ServiceFactory, api_client, token

# The policy, written out independently of shared.authz.MATRIX: Y = allowed, . = refused (403).
EXPECTED = """
                                                          advisor window officer charity reconciler admin department
intake       POST /v1/applications                           Y      Y      .       .        .        Y        .
intake       GET  /v1/cases                                  Y      Y      Y       .        .        Y        .
intake       GET  /v1/cases/{case_id}                        Y      Y      Y       .        .        Y        .
intake       GET  /v1/cases/{case_id}/timeline               Y      Y      Y       .        .        Y        .
intake       POST /v1/cases/{case_id}/withdrawal             Y      Y      .       .        .        Y        .
intake       POST /v1/signals                                .      .      .       .        .        Y        Y
intake       POST /v1/cases/{case_id}/contact-consent/withdrawal Y  Y      .       .        .        Y        .
intake       GET  /v1/needs/{need_id}/contact                .      .      .       Y        .        .        .
intake       POST /v1/cases/{case_id}/reviews                Y      .      Y       .        .        .        .
eligibility  POST /v1/evaluations                            Y      Y      Y       .        .        Y        .
eligibility  GET  /v1/parameters                             Y      Y      Y       Y        Y        Y        .
eligibility  GET  /v1/determinations                         Y      .      Y       .        .        Y        .
eligibility  GET  /v1/determinations/{determination_id}      Y      .      Y       .        .        Y        .
eligibility  POST /v1/determinations/{determination_id}/approve  .  .      Y       .        .        .        .
eligibility  POST /v1/determinations/{determination_id}/reject   .  .      Y       .        .        .        .
eligibility  POST /v1/determinations/{determination_id}/objections Y Y     Y       .        .        .        .
disbursement GET  /v1/payments/{payment_id}                  .      .      Y       .        Y        Y        .
disbursement POST /v1/payment-runs                           .      .      .       .        Y        Y        .
disbursement GET  /v1/payment-runs/{period}                  .      .      Y       .        Y        Y        .
disbursement GET  /v1/ledger/balances                        .      .      Y       .        Y        Y        .
disbursement GET  /v1/reconciliations/{day}                  .      .      Y       .        Y        Y        .
disbursement GET  /v1/exports/payments                       .      .      Y       .        Y        Y        .
disbursement GET  /v1/advances                              .      .      Y       .        Y        Y        .
disbursement POST /v1/advances/{determination_id}/recovery   .      .      Y       .        .        .        .
referral     GET  /v1/outreach-tasks                         Y      .      Y       .        .        Y        .
referral     POST /v1/outreach-tasks/{task_id}/outcome       Y      .      .       .        .        .        .
referral     GET  /v1/discovery/summary                      Y      .      Y       .        .        Y        .
referral     POST /v1/needs/{need_id}/claim                  .      .      .       Y        .        .        .
referral     POST /v1/needs/{need_id}/delivery               .      .      .       Y        .        .        .
referral     GET  /v1/needs                                  Y      .      Y       Y        .        Y        .
referral     GET  /v1/offers                                 Y      .      Y       Y        .        Y        .
referral     POST /v1/offers                                 .      .      .       Y        .        .        .
referral     POST /v1/offers/{offer_id}/matches              Y      .      Y       .        .        .        .
referral     GET  /v1/service-referrals                      Y      .      Y       Y        .        Y        .
referral     POST /v1/service-referrals/{referral_id}/outcome .     .      .       Y        .        .        .
"""


def expected() -> dict[tuple[str, str, str], set[str]]:
    lines = [line.split() for line in EXPECTED.strip().splitlines()]
    roles = lines[0]
    assert tuple(roles) == ROLES
    return {
        (svc, method, path): {r for r, mark in zip(roles, marks, strict=True) if mark == "Y"}
        for svc, method, path, *marks in lines[1:]
    }


def test_the_matrix_is_the_written_policy() -> None:
    assert {key: set(roles) for key, roles in MATRIX.items()} == expected()


def protected_routes(app: Any) -> list[tuple[str, str]]:
    """Every endpoint the service publishes in its OpenAPI document, less the signature-verified callbacks."""
    return sorted(
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        if path.startswith("/v1") and path not in SIGNED_PATHS
        for method in operations
    )


@pytest.mark.parametrize("service", SERVICES)
async def test_every_role_gets_exactly_what_the_matrix_allows(services: ServiceFactory, service: str) -> None:
    async with api_client(services, service) as client:
        app = client.app  # the ASGI app behind the client
        routes = protected_routes(app)
        listed = sorted((m, p) for (s, m, p) in expected() if s == service)
        assert routes == listed, "every route is in the matrix, and the matrix names no route that is gone"
        table = []
        for method, path in routes:
            url = re.sub(r"\{[^}]+\}", "00000000-0000-0000-0000-000000000000", path)
            params = {
                "/v1/parameters": {"region": "310115", "as_of": "2024-01-01"},
                "/v1/exports/payments": {"period": "2026-01"},
            }.get(path)
            for role in ROLES:
                # A charity's token names its organisation in the register; an unregistered one is refused.
                subject = "pudong-charity-federation" if role == "charity" else "tester"
                headers = {"Authorization": f"Bearer {token(services.data_dir, role, '310115', subject)}"}
                response = await client.request(
                    method, url, headers=headers, json={} if method == "POST" else None, params=params
                )
                allowed = role in expected()[(service, method, path)]
                table.append((method, path, role, allowed, response.status_code))
        wrong = [row for row in table if (row[4] == 403) == row[3] or row[4] == 401]
        assert wrong == [], "role outcomes that contradict the policy: (method, path, role, allowed, status)"


@pytest.mark.parametrize("service", SERVICES)
async def test_without_a_token_every_endpoint_is_401_but_health_is_open(services: ServiceFactory, service: str) -> None:
    async with api_client(services, service) as client:
        for method, path in protected_routes(client.app):
            url = re.sub(r"\{[^}]+\}", "x", path)
            response = await client.request(method, url, headers={"Authorization": ""})
            assert response.status_code == 401, (method, path)
            assert response.headers["www-authenticate"].startswith("Bearer")
            assert response.headers["content-type"] == "application/problem+json"
        assert (await client.get("/healthz", headers={"Authorization": ""})).status_code == 200
        assert (await client.get("/metrics/", headers={"Authorization": ""})).status_code == 200
