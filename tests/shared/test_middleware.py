"""The shared HTTP middlewares: who is calling (401 otherwise), the trace context and the correlation id."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
from fastapi import FastAPI, Request
from prometheus_client import REGISTRY

from shared.auth import Authenticator, ensure_dev_keypair, mint_dev_token
from shared.messaging.context import trace
from shared.middleware import CORRELATION_HEADER, Authenticate, TraceContextMiddleware


def _app(tmp_path: Path) -> tuple[FastAPI, str]:
    _private, public = ensure_dev_keypair(tmp_path)
    authenticator = Authenticator(jwks_url="", issuer="doudi-dev", audience="doudi", dev_public_key=public.read_bytes())
    app = FastAPI()

    @app.get("/v1/who/{name}")
    async def who(name: str, request: Request) -> dict[str, str]:
        principal = request.state.principal
        return {"subject": principal.subject, "region": principal.region, "correlation_id": trace().correlation_id}

    app.add_middleware(Authenticate, authenticator=authenticator, development=True)
    app.add_middleware(TraceContextMiddleware, service="middleware-test")
    token = mint_dev_token(
        tmp_path, role="advisor", region="310115", subject="advisor-1", issuer="doudi-dev", audience="doudi"
    )
    return app, token


def _observed(route: str, status: str) -> float:
    labels = {"service": "middleware-test", "method": "GET", "route": route, "status": status}
    return REGISTRY.get_sample_value("doudi_http_request_duration_seconds_count", labels) or 0.0


async def test_the_principal_and_the_callers_correlation_id_reach_the_handler_and_come_back(tmp_path: Path) -> None:
    app, token = _app(tmp_path)
    before = _observed("/v1/who/{name}", "200")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        response = await client.get(
            "/v1/who/x", headers={"Authorization": f"Bearer {token}", CORRELATION_HEADER: "case-desk-42"}
        )
        fresh = await client.get("/v1/who/y", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    assert response.json() == {"subject": "advisor-1", "region": "310115", "correlation_id": "case-desk-42"}
    assert response.headers[CORRELATION_HEADER] == "case-desk-42"
    # No id from the caller: a fresh one, the same in the handler's context and on the response.
    assert fresh.headers[CORRELATION_HEADER] == fresh.json()["correlation_id"]
    uuid.UUID(fresh.headers[CORRELATION_HEADER])
    assert _observed("/v1/who/{name}", "200") == before + 2  # by route template, not by path


async def test_a_missing_or_bad_token_is_a_401_with_its_challenge_and_the_correlation_id(tmp_path: Path) -> None:
    app, token = _app(tmp_path)
    before = _observed("unmatched", "401")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        missing = await client.get("/v1/who/x")
        bad = await client.get("/v1/who/x", headers={"Authorization": f"Bearer {token[:-4]}AAAA"})
        public = await client.get("/healthz")
    for response in (missing, bad):
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == 'Bearer realm="doudi"'
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["instance"] == "/v1/who/x"
        assert response.json()["correlation_id"] == response.headers[CORRELATION_HEADER]
    assert "bearer token is required" in missing.json()["detail"]
    assert "invalid token" in bad.json()["detail"]
    assert public.status_code == 404  # public paths need no token: past authentication, to the router
    assert _observed("unmatched", "401") == before + 2
