"""A person is on at most one open case; worklists page through cases within the caller's region."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal
from typing import Any

import httpx
from sqlalchemy import select

from intake import read_model, service
from intake.api.schemas import ApplicationCreate
from intake.models import messaging
from intake.settings import vault_for
from shared.contracts import eligibility
from shared.contracts.eligibility import Reason
from tests.conftest import ServiceFactory, api_client, token
from tests.factories import TODAY, application, new_id_number


def with_member_of(body: dict[str, Any], other: dict[str, Any], index: int = 1) -> dict[str, Any]:
    """`body` with its second member replaced by a member of `other`'s household."""
    body["household"]["members"][index]["id_number"] = other["household"]["members"][index]["id_number"]
    return body


async def deny(runtime: Any, case_id: str) -> None:
    denied = eligibility.DeterminationDenied(
        case_id=case_id,
        determination_id=str(uuid.uuid4()),
        programme="subsistence_allowance",
        region="310115",
        decided_on=TODAY,
        monthly_amount=Decimal("0.00"),
        reasons=[Reason(code="income_not_below_standard")],
    )
    async with runtime.uow() as uow:
        await read_model.record_event(
            uow, denied, event_id=str(uuid.uuid4()), source="/tests", occurred_at=service.utcnow()
        )
        await uow.commit()


class TestOnePersonOneOpenCase:
    async def test_a_second_application_for_a_member_of_an_open_case_is_409_naming_the_case(
        self, services: ServiceFactory
    ) -> None:
        async with api_client(services, "intake") as client:
            first = application()
            case_id = (await client.post("/v1/applications", json=first)).json()["case_id"]
            again = await client.post("/v1/applications", json=with_member_of(application(), first))
            assert again.status_code == 409
            assert again.headers["content-type"] == "application/problem+json"
            problem = again.json()
            assert problem["case_id"] == case_id
            assert problem["member"] == "m2"
            assert case_id in problem["detail"]
            assert first["household"]["members"][1]["id_number"] not in again.text  # named by ref, not number

    async def test_once_the_case_is_closed_its_members_may_apply_again(self, services: ServiceFactory) -> None:
        async with api_client(services, "intake") as client:
            first = application()
            case_id = (await client.post("/v1/applications", json=first)).json()["case_id"]
            await deny(client.runtime, case_id)
            again = await client.post("/v1/applications", json=with_member_of(application(), first))
            assert again.status_code == 201, again.text

    async def test_two_applications_racing_for_one_person_make_one_case(self, services: ServiceFactory) -> None:
        async with api_client(services, "intake") as client:
            shared_person = new_id_number()
            bodies = [application() for _ in range(4)]
            for body in bodies:
                body["household"]["members"][0]["id_number"] = shared_person
            responses = await asyncio.gather(*(client.post("/v1/applications", json=b) for b in bodies))
            codes = sorted(r.status_code for r in responses)
            assert codes == [201, 409, 409, 409], [r.text for r in responses]

    async def test_after_the_hash_keys_rotate_a_person_held_under_the_old_key_is_still_409(
        self, services: ServiceFactory
    ) -> None:
        import base64
        import os

        from shared.pii import DEV_HASH_KEYS

        first = application()
        async with api_client(services, "intake") as client:  # held under the development hash key
            case_id = (await client.post("/v1/applications", json=first)).json()["case_id"]
        rotated = base64.b64encode(os.urandom(32)).decode() + "," + DEV_HASH_KEYS  # the new key first
        async with api_client(services, "intake", pii_hash_keys=rotated) as client:
            async with client.runtime.uow() as uow:  # api_client emptied the tables: put the first case back
                await service.submit_application(
                    uow, ApplicationCreate.model_validate(first), vault_for(services.settings("intake"))
                )
                await uow.commit()
            again = await client.post("/v1/applications", json=with_member_of(application(), first))
        assert again.status_code == 409, again.text
        assert again.json()["member"] == "m2"
        assert again.json()["case_id"] != case_id  # the case just put back, found by its old-key rows


class TestWorklist:
    async def test_cases_page_newest_first_with_a_cursor_and_filters(self, services: ServiceFactory) -> None:
        community = f"310115{uuid.uuid4().int % 10**9:09d}"
        async with api_client(services, "intake", role="advisor", region="310115") as client:
            ids = []
            for _ in range(5):
                body = application(community=community, channel="advisor")
                ids.append((await client.post("/v1/applications", json=body)).json()["case_id"])
            seen: list[str] = []
            cursor = None
            while True:
                params: dict[str, Any] = {"community": community, "limit": 2}
                if cursor:
                    params["cursor"] = cursor
                page = (await client.get("/v1/cases", params=params)).json()
                assert len(page["items"]) <= 2
                seen += [item["case_id"] for item in page["items"]]
                cursor = page["next_cursor"]
                if cursor is None:
                    break
            assert seen == list(reversed(ids))
            assert "members" not in page["items"][0]  # a worklist carries no personal data
            none = await client.get("/v1/cases", params={"community": community, "status": "approved"})
            assert none.json() == {"items": [], "next_cursor": None}
            bad = await client.get("/v1/cases", params={"cursor": "not-a-cursor"})
            assert bad.status_code == 422

    async def test_a_worklist_never_shows_a_case_outside_the_callers_region(self, services: ServiceFactory) -> None:
        async with api_client(services, "intake", role="advisor", region="310115") as pudong:
            minhang_token = token(services.data_dir, "advisor", "310112")
            transport = httpx.ASGITransport(app=pudong.app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://test", headers={"Authorization": f"Bearer {minhang_token}"}
            ) as minhang:
                created = await minhang.post("/v1/applications", json=application(region="310112"))
                theirs = created.json()["case_id"]
                assert [i["case_id"] for i in (await minhang.get("/v1/cases")).json()["items"]] == [theirs]
            await pudong.post("/v1/applications", json=application())
            page = (await pudong.get("/v1/cases", params={"region": "310112", "limit": 200})).json()
            assert page["items"] == []
            everything = (await pudong.get("/v1/cases", params={"limit": 200})).json()
            assert len(everything["items"]) == 1
            assert everything["items"][0]["region"] == "310115"


async def test_the_worklist_finds_cases_past_their_decision_deadline(services: ServiceFactory) -> None:
    from datetime import date

    async with api_client(services, "intake", role="advisor", region="310115") as client:
        late = (await client.post("/v1/applications", json=application())).json()["case_id"]
        on_time = (await client.post("/v1/applications", json=application())).json()["case_id"]
        for case_id, due in ((late, date(2021, 9, 24)), (on_time, date(2999, 1, 1))):
            proposed = eligibility.DeterminationProposed(
                case_id=case_id,
                determination_id=str(uuid.uuid4()),
                programme="subsistence_allowance",
                region="310115",
                decided_on=TODAY,
                monthly_amount=Decimal("830.00"),
                decision_due=due,
            )
            async with client.runtime.uow() as uow:
                await read_model.record_event(
                    uow, proposed, event_id=str(uuid.uuid4()), source="/tests", occurred_at=service.utcnow()
                )
                await uow.commit()
        page = (await client.get("/v1/cases", params={"overdue": "true"})).json()
        assert [item["case_id"] for item in page["items"]] == [late]
        case = (await client.get(f"/v1/cases/{late}")).json()
        assert case["status"] == "proposed"
        assert case["determinations"][0]["overdue"] is True
        assert case["determinations"][0]["decision_due"] == "2021-09-24"


class TestWithdrawal:
    async def test_a_withdrawn_case_frees_its_members_and_stays_withdrawn(self, services: ServiceFactory) -> None:
        async with api_client(services, "intake", role="advisor", region="310115") as client:
            first = application()
            case_id = (await client.post("/v1/applications", json=first)).json()["case_id"]
            response = await client.post(f"/v1/cases/{case_id}/withdrawal", json={"reason": "找到工作了"})
            assert response.status_code == 200, response.text
            assert response.json()["status"] == "withdrawn"
            again = await client.post(f"/v1/cases/{case_id}/withdrawal", json={"reason": "again"})
            assert again.status_code == 409
            reapplied = await client.post("/v1/applications", json=with_member_of(application(), first))
            assert reapplied.status_code == 201
            await deny(client.runtime, case_id)  # a late decision does not reopen it
            case = (await client.get(f"/v1/cases/{case_id}")).json()
            assert case["status"] == "withdrawn"
            timeline = (await client.get(f"/v1/cases/{case_id}/timeline")).json()["events"]
            assert timeline[-2]["type"] == "intake.application.withdrawn"
            outbox = messaging.outbox
            async with client.runtime.engine.connect() as conn:
                types = (await conn.execute(select(outbox.c.event_type).where(outbox.c.kafka_key == case_id))).scalars()
                assert "intake.application.withdrawn" in list(types)

    async def test_a_case_outside_the_region_cannot_be_withdrawn(self, services: ServiceFactory) -> None:
        async with api_client(services, "intake", role="advisor", region="310115") as client:
            case_id = (await client.post("/v1/applications", json=application())).json()["case_id"]
            other = {"Authorization": f"Bearer {token(services.data_dir, 'advisor', '310112')}"}
            response = await client.post(f"/v1/cases/{case_id}/withdrawal", json={"reason": "x"}, headers=other)
            assert response.status_code == 404


class TestReviews:
    async def test_an_approved_case_is_reviewed_and_found_on_the_review_worklist(
        self, services: ServiceFactory
    ) -> None:
        from datetime import date

        async with api_client(services, "intake", role="advisor", region="310115") as client:
            body = application()
            case_id = (await client.post("/v1/applications", json=body)).json()["case_id"]
            facts = {
                "members": [
                    {k: v for k, v in m.items() if k not in ("name", "id_number")} for m in body["household"]["members"]
                ]
            }
            early = await client.post(f"/v1/cases/{case_id}/reviews", json={"household": facts})
            assert early.status_code == 409  # not receiving aid yet
            verified = eligibility.VerificationCompleted(
                case_id=case_id,
                verification_id=str(uuid.uuid4()),
                sources=["declared"],
                counted_members=2,
                counted_monthly_income=Decimal("800.00"),
                per_capita_monthly_income=Decimal("400.00"),
            )
            grant = eligibility.DeterminationApproved(
                case_id=case_id,
                determination_id=str(uuid.uuid4()),
                programme="subsistence_allowance",
                region="310115",
                decided_on=TODAY,
                monthly_amount=Decimal("830.00"),
                review_due=date(2021, 1, 1),
            )
            async with client.runtime.uow() as uow:
                for event in (verified, grant):
                    await read_model.record_event(
                        uow, event, event_id=str(uuid.uuid4()), source="/t", occurred_at=service.utcnow()
                    )
                await uow.commit()
            due = (await client.get("/v1/cases", params={"review_due": "true", "limit": 200})).json()["items"]
            assert case_id in [item["case_id"] for item in due]
            case = (await client.get(f"/v1/cases/{case_id}")).json()
            assert case["determinations"][0]["review_due"] == "2021-01-01"
            done = await client.post(
                f"/v1/cases/{case_id}/reviews", json={"kind": "change_reported", "household": facts}
            )
            assert done.status_code == 200, done.text
            outbox = messaging.outbox
            async with client.runtime.engine.connect() as conn:
                types = list(
                    (await conn.execute(select(outbox.c.event_type).where(outbox.c.kafka_key == case_id))).scalars()
                )
            assert types[-1] == "intake.application.reviewed"
