"""Reviews at intake: the household as found goes to eligibility with each member's person key taken from the
case (never from the client), only once the case's means test has finished; the case view shows the
review's means test, or why it waits."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select

from intake import read_model, service
from intake.models import Member, messaging
from intake.settings import vault_for
from shared.contracts import eligibility
from tests.conftest import ServiceFactory, api_client, token
from tests.factories import TODAY, application, new_id_number


def clock_today(client: Any) -> str:
    """The date intake records a review under: its clock's today."""
    return client.runtime.clock.today().isoformat()


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


def joiner(**overrides: Any) -> dict[str, Any]:
    person = {
        "ref": "m3",
        "name": "王五",
        "id_number": new_id_number(),
        "relationship": "child",
        "birth_date": "2008-03-01",
        "hukou_region": "310115",
        "education": "high_school",
    }
    return person | overrides


class TestPeopleJoiningAndLeaving:
    async def test_a_person_who_joins_is_added_encrypted_held_by_the_case_and_sent_with_their_person_key(
        self, services: ServiceFactory
    ) -> None:
        async with api_client(services, "intake", role="advisor", region="310115") as client:
            case_id, body = await approved_case(client)
            household = as_found(body)
            newcomer = joiner()
            household["members"].append(newcomer)
            response = await client.post(
                f"/v1/cases/{case_id}/reviews", json={"kind": "change_reported", "household": household}
            )
            assert response.status_code == 200, response.text
            case = (await client.get(f"/v1/cases/{case_id}")).json()
            added = next(m for m in case["members"] if m["ref"] == "m3")
            assert (added["name"], added["joined_on"], added["left_on"]) == ("王五", clock_today(client), None)
            assert added["id_number"] == newcomer["id_number"][:6] + "********" + newcomer["id_number"][-4:]
            vault = vault_for(client.runtime.settings)
            async with client.runtime.sessionmaker() as session:
                row = await session.get(Member, (case_id, "m3"))
            assert newcomer["id_number"] not in row.id_number_encrypted  # stored as at application
            assert vault.decrypt(row.id_number_encrypted) == newcomer["id_number"]
            assert row.id_number_hash == vault.lookup_hash(newcomer["id_number"])
            (event,) = await sent(client, case_id)
            assert (event["joined"], event["left"]) == (["m3"], [])
            assert event["household"]["members"][-1]["person_key"] == vault.person_key(newcomer["id_number"])
            assert newcomer["id_number"] not in str(event)
            # Held by this case now: an application naming them is the usual 409 naming it.
            other = application()
            other["household"]["members"][1]["id_number"] = newcomer["id_number"]
            again = await client.post("/v1/applications", json=other)
            assert again.status_code == 409
            assert again.json()["case_id"] == case_id
            timeline = (await client.get(f"/v1/cases/{case_id}/timeline")).json()["events"]
            assert timeline[-1]["summary"]["joined"] == ["m3"]

    async def test_a_person_on_another_open_case_cannot_join_and_nothing_changes(
        self, services: ServiceFactory
    ) -> None:
        async with api_client(services, "intake", role="advisor", region="310115") as client:
            case_id, body = await approved_case(client)
            elsewhere = application()
            their_case = (await client.post("/v1/applications", json=elsewhere)).json()["case_id"]
            household = as_found(body)
            household["members"].append(joiner(id_number=elsewhere["household"]["members"][0]["id_number"]))
            response = await client.post(f"/v1/cases/{case_id}/reviews", json={"household": household})
            assert response.status_code == 409
            assert response.headers["content-type"] == "application/problem+json"
            assert (response.json()["case_id"], response.json()["member"]) == (their_case, "m3")
            assert their_case in response.json()["detail"]
            case = (await client.get(f"/v1/cases/{case_id}")).json()
            assert [m["ref"] for m in case["members"]] == ["m1", "m2"]
            assert await sent(client, case_id) == []

    @pytest.mark.parametrize(
        ("change", "field"),
        [
            ({"id_number": "310115198005010014"}, "id_number"),  # wrong check digit
            ({"id_number": None}, "id_number"),
            ({"name": None}, "name"),
        ],
    )
    async def test_a_person_joining_needs_a_valid_id_number_and_a_name(
        self, services: ServiceFactory, change: dict[str, Any], field: str
    ) -> None:
        async with api_client(services, "intake", role="advisor", region="310115") as client:
            case_id, body = await approved_case(client)
            household = as_found(body)
            household["members"].append({k: v for k, v in (joiner() | change).items() if v is not None})
            response = await client.post(f"/v1/cases/{case_id}/reviews", json={"household": household})
            assert response.status_code == 422, response.text
            assert field in response.text
            assert await sent(client, case_id) == []

    async def test_a_member_is_who_the_case_says_and_a_ref_of_someone_who_left_is_not_reused(
        self, services: ServiceFactory
    ) -> None:
        async with api_client(services, "intake", role="advisor", region="310115") as client:
            case_id, body = await approved_case(client)
            household = as_found(body)
            household["members"][1]["id_number"] = new_id_number()  # not m2's number
            wrong = await client.post(f"/v1/cases/{case_id}/reviews", json={"household": household})
            assert wrong.status_code == 422
            assert "another ID number" in wrong.json()["detail"]
            household = as_found(body)
            household["members"].append(joiner(id_number=body["household"]["members"][1]["id_number"]))
            twice = await client.post(f"/v1/cases/{case_id}/reviews", json={"household": household})
            assert twice.status_code == 422
            assert "already member m2" in twice.json()["detail"]
            left = await client.post(
                f"/v1/cases/{case_id}/reviews",
                json={"household": as_found(body) | {"members": as_found(body)["members"][:1]}},
            )
            assert left.status_code == 200, left.text
            back = as_found(body)
            back["members"][1] |= {"name": "成员2", "id_number": body["household"]["members"][1]["id_number"]}
            reused = await client.post(f"/v1/cases/{case_id}/reviews", json={"household": back})
            assert reused.status_code == 422
            assert "takes a new ref" in reused.json()["detail"]

    async def test_a_member_who_leaves_is_released_to_apply_elsewhere_and_signals_about_them_go_elsewhere(
        self, services: ServiceFactory
    ) -> None:
        async with api_client(services, "intake", role="advisor", region="310115") as client:
            case_id, body = await approved_case(client)
            household = as_found(body)
            household["members"] = household["members"][:1]  # m2 moved out
            response = await client.post(f"/v1/cases/{case_id}/reviews", json={"household": household})
            assert response.status_code == 200, response.text
            (event,) = await sent(client, case_id)
            assert (event["joined"], event["left"]) == ([], ["m2"])
            assert [m["ref"] for m in event["household"]["members"]] == ["m1"]
            case = (await client.get(f"/v1/cases/{case_id}")).json()
            gone = next(m for m in case["members"] if m["ref"] == "m2")
            assert gone["left_on"] == clock_today(client)  # the row stays, as the case's history
            departed = body["household"]["members"][1]["id_number"]
            signal = {
                "source": "employment_service",
                "source_id": str(uuid.uuid4()),
                "kind": "unemployment",
                "id_number": departed,
                "region": "310115",
                "community": "310115001001",
                "occurred_on": "2026-11-20",
            }
            department = {
                "Authorization": f"Bearer {token(services.data_dir, 'department', '310115', 'employment_service')}"
            }
            about = await client.post("/v1/signals", json=signal, headers=department)
            assert about.json()["matched_case"] is False  # not the household they left
            elsewhere = application()
            elsewhere["household"]["members"][0]["id_number"] = departed
            applied = await client.post("/v1/applications", json=elsewhere)
            assert applied.status_code == 201, applied.text
            stayer = application()
            stayer["household"]["members"][0]["id_number"] = body["household"]["members"][0]["id_number"]
            assert (await client.post("/v1/applications", json=stayer)).status_code == 409  # m1 is still held


async def test_a_phase_out_shows_on_the_case_as_stopped_aid_paid_through_its_last_month(
    services: ServiceFactory,
) -> None:
    async with api_client(services, "intake", role="advisor", region="310115") as client:
        case_id, _ = await approved_case(client)
        granted = (await client.get(f"/v1/cases/{case_id}")).json()["determinations"][0]
        phase_out = eligibility.Reason(
            code="phase_out_after_employment", text="m2 found work …", source="最低生活保障审核确认办法 第三十三条"
        )
        stopped = eligibility.DeterminationStopped(
            case_id=case_id,
            determination_id=granted["determination_id"],
            programme="subsistence_allowance",
            region="310115",
            decided_on=TODAY,
            monthly_amount=Decimal("1700.00"),
            reasons=[phase_out],
            last_period="2027-05",
        )
        await record(client.runtime, stopped)
        (shown,) = (await client.get(f"/v1/cases/{case_id}")).json()["determinations"]
        assert (shown["status"], shown["last_period"], shown["monthly_amount"]) == ("stopped", "2027-05", "1700.00")
        assert shown["reasons"][-1]["code"] == "phase_out_after_employment"
        assert shown["review_due"] is None
