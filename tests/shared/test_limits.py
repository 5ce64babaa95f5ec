"""Abuse limits: oversized bodies and floods are refused with problem+json, per client."""

from __future__ import annotations

from tests.conftest import ServiceFactory, api_client, token
from tests.factories import application


async def test_an_oversized_body_is_413(services: ServiceFactory) -> None:
    async with api_client(services, "intake", max_body_bytes=2048) as client:
        big = application()
        big["household"]["members"][0]["name"] = "x" * 5000
        response = await client.post("/v1/applications", json=big)
        assert response.status_code == 413
        assert response.headers["content-type"] == "application/problem+json"

        async def chunks():  # no Content-Length: the limit counts what streams in
            for _ in range(10):
                yield b"x" * 1024

        streamed = await client.post("/v1/applications", content=chunks(), headers={"Content-Type": "application/json"})
        assert streamed.status_code == 413


async def test_a_flood_from_one_client_is_429_and_others_go_on(services: ServiceFactory) -> None:
    async with api_client(services, "eligibility", rate_limit_per_minute=60, rate_limit_burst=5) as client:
        statuses = [
            (await client.get("/v1/parameters", params={"region": "310115", "as_of": "2024-01-01"})).status_code
            for _ in range(8)
        ]
        assert statuses[:5] == [200] * 5
        assert statuses[5:] == [429] * 3
        refused = await client.get("/v1/parameters", params={"region": "310115", "as_of": "2024-01-01"})
        assert refused.headers["retry-after"].isdigit()
        assert refused.headers["content-type"] == "application/problem+json"
        other = {"Authorization": f"Bearer {token(services.data_dir, 'officer', '310115', 'someone-else')}"}
        assert (
            await client.get("/v1/parameters", params={"region": "310115", "as_of": "2024-01-01"}, headers=other)
        ).status_code == 200
        assert (await client.get("/healthz")).status_code == 200


async def test_with_the_database_store_two_api_processes_share_one_bucket_per_client(
    services: ServiceFactory,
) -> None:
    """Two API processes of one service (two apps on one database): a client's burst of 4 is spent across
    both, the fifth request is refused by either; another client is untouched."""
    limits = {"rate_limit_per_minute": 1, "rate_limit_burst": 4, "rate_limit_store": "database"}
    async with (
        api_client(services, "eligibility", **limits) as first,
        api_client(services, "eligibility", **limits) as second,
    ):
        statuses = [(await (first, second)[i % 2].get("/v1/determinations")).status_code for i in range(6)]
        assert statuses == [200, 200, 200, 200, 429, 429]
        refused = await second.get("/v1/determinations")
        assert int(refused.headers["retry-after"]) >= 1
        other = await first.get(
            "/v1/determinations",
            headers={"Authorization": "Bearer " + token(services.data_dir, "officer", subject="someone-else")},
        )
        assert other.status_code == 200
