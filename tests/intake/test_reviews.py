"""Reviews at intake: the household as found goes to eligibility with each member's person key taken from the
case (never from the client), only once the case's means test has finished; the case view shows the
review's means test, or why it waits."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from intake import read_model, service
from intake.models import messaging
from intake.settings import vault_for
from shared.contracts import eligibility
from tests.conftest import ServiceFactory, api_client
from tests.factories import TODAY, application


def as_found(body: dict[str, Any]) -> dict[str, Any]:
    """The household of an application as a review records it: members by ref, no names or ID numbers."""
    return {
        "members": [
            {k: v for k, v in m.items() if k not in ("name", "id_number")} for m in body["household"]["members"]
        ]
    }


async def record(runtime: Any, *events: Any) -> None:
    async with runtime.uow() as uow:
        for event in events:
            await read_model.record_event(
                uow, event, event_id=str(uuid.uuid4()), source="/doudi/eligibility", occurred_at=service.utcnow()
            )
        await uow.commit()


def verified(case_id: str, **extra: Any) -> eligibility.VerificationCompleted:
    return eligibility.VerificationCompleted(
        case_id=case_id,
        verification_id=str(uuid.uuid4()),
        sources=["declared", "registry"],
        counted_members=2,
        counted_monthly_income=Decimal("800.00"),
        per_capita_monthly_income=Decimal("400.00"),
        **extra,
    )


def approved(case_id: str) -> eligibility.DeterminationApproved:
    return eligibility.DeterminationApproved(
        case_id=case_id,
        determination_id=str(uuid.uuid4()),
        programme="subsistence_allowance",
        region="310115",
        decided_on=TODAY,
        monthly_amount=Decimal("1700.00"),
        review_due=TODAY + timedelta(days=365),
    )


async def approved_case(client: Any, body: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
    body = body or application()
    case_id = (await client.post("/v1/applications", json=body)).json()["case_id"]
    await record(client.runtime, verified(case_id), approved(case_id))
    return case_id, body


async def sent(client: Any, case_id: str, event_type: str = "intake.application.reviewed") -> list[dict[str, Any]]:
    outbox = messaging.outbox
    async with client.runtime.engine.connect() as conn:
        rows = await conn.execute(
            select(outbox.c.payload)
            .where(outbox.c.kafka_key == case_id, outbox.c.event_type == event_type)
            .order_by(outbox.c.seq)
        )
        return list(rows.scalars())


class TestPersonKeys:
    async def test_each_member_goes_to_eligibility_with_the_person_key_of_their_id_number_on_the_case(
        self, services: ServiceFactory
    ) -> None:
        async with api_client(services, "intake", role="advisor", region="310115") as client:
            case_id, body = await approved_case(client)
            response = await client.post(f"/v1/cases/{case_id}/reviews", json={"household": as_found(body)})
            assert response.status_code == 200, response.text
            (event,) = await sent(client, case_id)
            vault = vault_for(client.runtime.settings)
            expected = [vault.person_key(m["id_number"]) for m in body["household"]["members"]]
            assert [m["person_key"] for m in event["household"]["members"]] == expected
            for member in body["household"]["members"]:
                assert member["id_number"] not in str(event)

    async def test_a_person_key_sent_by_the_client_is_refused(self, services: ServiceFactory) -> None:
        async with api_client(services, "intake", role="advisor", region="310115") as client:
            case_id, body = await approved_case(client)
            household = as_found(body)
            household["members"][0]["person_key"] = "a" * 64  # someone else's records
            response = await client.post(f"/v1/cases/{case_id}/reviews", json={"household": household})
            assert response.status_code == 422
            assert "person_key" in response.text
            assert await sent(client, case_id) == []

    async def test_a_case_whose_means_test_has_not_finished_is_not_reviewed(self, services: ServiceFactory) -> None:
        """Only an emergency's aid first is approved before the means test ends; the review waits for it."""
        async with api_client(services, "intake", role="advisor", region="310115") as client:
            body = application()
            case_id = (await client.post("/v1/applications", json=body)).json()["case_id"]
            await record(client.runtime, approved(case_id))
            response = await client.post(f"/v1/cases/{case_id}/reviews", json={"household": as_found(body)})
            assert response.status_code == 409
            assert response.json()["title"] == "Not verified yet"


class TestTheReviewsMeansTestOnTheCase:
    async def test_a_review_waiting_for_its_sources_says_so_and_then_shows_what_they_found(
        self, services: ServiceFactory
    ) -> None:
        async with api_client(services, "intake", role="advisor", region="310115") as client:
            case_id, _ = await approved_case(client)
            delayed = eligibility.VerificationDelayed(
                case_id=case_id,
                reason="verification_centre: answered 503 (after 3 attempts)",
                sources_down=["verification_centre"],
                attempts=1,
                next_attempt_at=datetime.fromisoformat("2026-11-24T10:00:00+00:00"),
                kind="review",
                reviewed_on=TODAY,
            )
            await record(client.runtime, delayed)
            case = (await client.get(f"/v1/cases/{case_id}")).json()
            shown = case["verification"]
            assert (shown["status"], shown["kind"], shown["reviewed_on"]) == ("delayed", "review", TODAY.isoformat())
            assert "aid goes on unchanged" in shown["meanwhile"]
            assert case["status"] == "approved"
            difference = eligibility.Difference(
                member="m1", field="income.wage", declared="800.00", verified="5200.00", source="registry"
            )
            await record(client.runtime, verified(case_id, kind="review", reviewed_on=TODAY, differences=[difference]))
            shown = (await client.get(f"/v1/cases/{case_id}")).json()["verification"]
            assert (shown["status"], shown["kind"]) == ("completed", "review")
            assert shown["differences"] == [difference.model_dump(mode="json")]
