"""Intake's HTTP contract: applications, idempotency, problem+json errors, case and timeline."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from intake.models import Case, CaseEvent, Member, messaging
from tests.conftest import ServiceFactory, api_client, count
from tests.factories import application


async def nothing_written(client: Any) -> bool:
    runtime = client.runtime
    return all(
        [
            await count(runtime, Case) == 0,
            await count(runtime, Member) == 0,
            await count(runtime, CaseEvent) == 0,
            await count(runtime, messaging.outbox) == 0,
            await count(runtime, messaging.idempotency) == 0,
        ]
    )


class TestSubmitApplication:
    async def test_creates_a_case_and_queues_the_event(self, services: ServiceFactory) -> None:
        async with api_client(services, "intake") as client:
            response = await client.post("/v1/applications", json=application())
            assert response.status_code == 201
            body = response.json()
            assert body["status"] == "submitted"
            assert response.headers["location"] == f"/v1/cases/{body['case_id']}"
            outbox = messaging.outbox
            assert (
                await count(
                    client.runtime,
                    outbox,
                    outbox.c.kafka_key == body["case_id"],
                    outbox.c.event_type == "intake.application.submitted",
                )
                == 1
            )

    async def test_the_event_carries_no_name_or_id_number(self, services: ServiceFactory) -> None:
        from sqlalchemy import select

        from shared.pii import DEV_LINKAGE_KEY, person_key

        async with api_client(services, "intake") as client:
            body = application()
            await client.post("/v1/applications", json=body)
            async with client.runtime.engine.connect() as conn:
                payload = (await conn.execute(select(messaging.outbox.c.payload))).scalar_one()
            text = str(payload)
            for member in body["household"]["members"]:
                assert member["id_number"] not in text
                assert member["name"] not in text
            # Instead, the pseudonymous key a verification source finds the person by.
            keys = [m["person_key"] for m in payload["household"]["members"]]
            assert keys == [person_key(m["id_number"], DEV_LINKAGE_KEY) for m in body["household"]["members"]]

    async def test_services_the_household_asks_for_travel_with_the_application(self, services: ServiceFactory) -> None:
        from sqlalchemy import select

        async with api_client(services, "intake") as client:
            response = await client.post("/v1/applications", json=application(services_requested=["counselling"]))
            assert response.status_code == 201, response.text
            async with client.runtime.engine.connect() as conn:
                payload = (await conn.execute(select(messaging.outbox.c.payload))).scalar_one()
            assert payload["services_requested"] == ["counselling"]
            unknown = await client.post("/v1/applications", json=application(services_requested=["massage"]))
            assert unknown.status_code == 422
            assert unknown.json()["errors"][0]["field"].startswith("services_requested")

    async def test_a_client_may_not_set_a_person_key(self, services: ServiceFactory) -> None:
        async with api_client(services, "intake") as client:
            body = application()
            body["household"]["members"][0]["person_key"] = "0" * 64
            response = await client.post("/v1/applications", json=body)
            assert response.status_code == 422
            assert await nothing_written(client)

    async def test_same_key_and_body_return_the_same_case(self, services: ServiceFactory) -> None:
        async with api_client(services, "intake") as client:
            headers = {"Idempotency-Key": "window-42"}
            body = application()
            first = await client.post("/v1/applications", json=body, headers=headers)
            again = await client.post("/v1/applications", json=body, headers=headers)
            assert first.status_code == again.status_code == 201
            assert first.json() == again.json()
            assert again.headers["idempotent-replayed"] == "true"
            assert await count(client.runtime, Case) == 1
            assert await count(client.runtime, messaging.outbox) == 1

    async def test_same_key_with_another_body_is_409_and_writes_nothing(self, services: ServiceFactory) -> None:
        async with api_client(services, "intake") as client:
            headers = {"Idempotency-Key": "window-43"}
            await client.post("/v1/applications", json=application(), headers=headers)
            other = await client.post("/v1/applications", json=application(wage="900.00"), headers=headers)
            assert other.status_code == 409
            assert other.headers["content-type"] == "application/problem+json"
            assert await count(client.runtime, Case) == 1

    @pytest.mark.parametrize(
        ("mutate", "field"),
        [
            (
                lambda b: b["household"]["members"][0].update(birth_date="1980-13-45"),
                "household.members.0.birth_date",
            ),
            (
                lambda b: b["household"]["members"][0].update(id_number="310115198005010014"),
                "household.members.0.id_number",
            ),
            (lambda b: b["household"].update(members=[]), "household.members"),
            (
                lambda b: b["household"]["members"][0]["incomes"][0].update(monthly="-5.00"),
                "household.members.0.incomes.0.monthly",
            ),
            (
                lambda b: b["household"]["members"][0]["incomes"][0].update(kind="lottery"),
                "household.members.0.incomes.0.kind",
            ),
            (lambda b: b.update(region="31"), "region"),
            (lambda b: b.update(channel="fax"), "channel"),
            (lambda b: b.pop("consent"), "consent"),
            (lambda b: b.update(surprise=True), "surprise"),
        ],
        ids=[
            "birth-date",
            "id-check-digit",
            "no-members",
            "negative-income",
            "unknown-income-kind",
            "region",
            "channel",
            "no-consent",
            "unknown-field",
        ],
    )
    async def test_bad_input_is_422_naming_the_field_and_writes_nothing(
        self, services: ServiceFactory, mutate: Any, field: str
    ) -> None:
        async with api_client(services, "intake") as client:
            body = copy.deepcopy(application())
            mutate(body)
            response = await client.post("/v1/applications", json=body, headers={"Idempotency-Key": "k"})
            assert response.status_code == 422
            assert response.headers["content-type"] == "application/problem+json"
            problem = response.json()
            assert field in [e["field"] for e in problem["errors"]]
            assert problem["detail"].startswith(problem["errors"][0]["field"])
            assert await nothing_written(client)

    async def test_refused_consent_says_so(self, services: ServiceFactory) -> None:
        async with api_client(services, "intake") as client:
            body = application()
            body["consent"]["economic_verification"] = False
            response = await client.post("/v1/applications", json=body)
            assert response.status_code == 422
            assert "consent to economic verification is required" in response.json()["detail"]

    async def test_a_malformed_json_body_is_422(self, services: ServiceFactory) -> None:
        async with api_client(services, "intake") as client:
            response = await client.post(
                "/v1/applications", content=b"{not json", headers={"Content-Type": "application/json"}
            )
            assert response.status_code == 422
            assert await nothing_written(client)


class TestReadCase:
    async def test_an_unknown_case_is_404_problem(self, services: ServiceFactory) -> None:
        async with api_client(services, "intake") as client:
            for path in ("/v1/cases/00000000-0000-0000-0000-000000000000", "/v1/cases/nope/timeline"):
                response = await client.get(path)
                assert response.status_code == 404
                assert response.headers["content-type"] == "application/problem+json"

    async def test_the_case_masks_id_numbers_and_lists_its_timeline(self, services: ServiceFactory) -> None:
        async with api_client(services, "intake", role="window", region="310115") as client:
            case_id = (await client.post("/v1/applications", json=application())).json()["case_id"]
            case = (await client.get(f"/v1/cases/{case_id}")).json()
            assert case["status"] == "submitted"
            assert case["determinations"] == case["payments"] == case["referrals"] == []
            assert all("********" in m["id_number"] for m in case["members"])
            timeline = (await client.get(f"/v1/cases/{case_id}/timeline")).json()
            assert [e["type"] for e in timeline["events"]] == ["intake.application.submitted"]


class TestHealth:
    async def test_healthz_and_readyz(self, services: ServiceFactory) -> None:
        async with api_client(services, "intake") as client:
            assert (await client.get("/healthz")).json()["status"] == "ok"
            ready = await client.get("/readyz")
            assert ready.status_code == 200
            assert ready.json()["checks"] == {"database": "ok", "broker": "ok"}
            assert (await client.get("/metrics/")).status_code == 200

    async def test_readyz_is_503_when_the_broker_is_unreachable(self, services: ServiceFactory) -> None:
        from shared.messaging.embedded_broker import free_port

        async with api_client(services, "intake", kafka_bootstrap_servers=f"127.0.0.1:{free_port()}") as client:
            ready = await client.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["checks"]["broker"] == "unreachable"


class TestHotPath:
    async def test_an_application_compiles_no_statement_after_the_first(self, services: ServiceFactory) -> None:
        """The application's statements are built once and found in SQLAlchemy's compiled cache: a statement
        that cannot be cached (a multi-row VALUES built per request was one) is compiled again on every
        request."""
        from sqlalchemy import event

        async with api_client(services, "intake") as client:
            assert (await client.post("/v1/applications", json=application())).status_code == 201
            seen: list[tuple[str, str]] = []

            def record(conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool) -> None:
                if context is not None and context.compiled is not None:
                    seen.append((context.cache_hit.name, statement.split("(")[0][:60]))

            engine = client.runtime.engine.sync_engine
            event.listen(engine, "after_cursor_execute", record)
            try:
                assert (await client.post("/v1/applications", json=application())).status_code == 201
            finally:
                event.remove(engine, "after_cursor_execute", record)
            assert len(seen) >= 6, seen  # the audit link, the memberships, the case, its members, outbox, timeline
            assert [s for s in seen if s[0] != "CACHE_HIT"] == [], seen
