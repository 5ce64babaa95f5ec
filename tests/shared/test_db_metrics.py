"""Each service counts the statements and commits it sends, so a benchmark (or a dashboard) can say what a
case costs the database."""

from __future__ import annotations

from prometheus_client import REGISTRY

from tests.conftest import ServiceFactory, api_client
from tests.factories import application


def _sample(name: str) -> float:
    return REGISTRY.get_sample_value(name, {"service": "intake"}) or 0.0


async def test_an_application_is_counted_as_its_statements_and_one_commit(services: ServiceFactory) -> None:
    async with api_client(services, "intake") as client:
        statements, commits = _sample("doudi_db_statements_total"), _sample("doudi_db_commits_total")
        response = await client.post("/v1/applications", json=application())
        assert response.status_code == 201
        sent = _sample("doudi_db_statements_total") - statements
        # The case, its members, their open memberships, the timeline entry, the outbox row, the audit link.
        assert sent >= 6
        assert _sample("doudi_db_commits_total") - commits == 1
        metrics = await client.get("/metrics/")
        assert 'doudi_db_statements_total{service="intake"}' in metrics.text
