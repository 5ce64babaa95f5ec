"""Service referrals: counselling during verification, shelter for people with neither a local hukou nor a
local residence permit; once per case and kind, each step recorded by the provider, each an event."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any

import pytest
from sqlalchemy import select

from referral import charities, domain, service_referrals
from referral.models import ServiceReferral, messaging
from shared.contracts.intake import ApplicationSubmitted, HouseholdFacts
from tests.conftest import ServiceFactory, api_client, count, deliver_twice, manual, token
from tests.factories import household_facts

PUDONG_STREET = "310115001"
PUDONG_COMMUNITY = "310115001001"


def submitted(
    *,
    region: str = "310115",
    hukou: str = "310115",
    permit: str | None = None,
    emergency: dict[str, Any] | None = None,
    asked: list[str] | None = None,
    case_id: str | None = None,
    community: str | None = PUDONG_COMMUNITY,
    members: list[dict[str, Any]] | None = None,
) -> ApplicationSubmitted:
    facts = household_facts()
    facts["members"][0] |= {"hukou_region": hukou, "residence_permit_region": permit}
    if members is not None:
        facts["members"] = members
    facts["emergency"] = emergency
    return ApplicationSubmitted(
        case_id=case_id or str(uuid.uuid4()),
        region=region,
        street=community[:9] if community else None,
        community=community,
        channel="window",
        programmes=[],
        household=HouseholdFacts.model_validate(facts),
        submitted_at=date(2026, 11, 22),
        services_requested=asked or [],
    )


FIRE = {"kind": "fire", "occurred_on": "2026-11-20", "region": "310115"}


class TestWhichServices:
    def test_nothing_when_a_local_household_asks_for_nothing(self) -> None:
        assert domain.services_indicated(submitted()) == {}

    def test_counselling_when_asked(self) -> None:
        assert domain.services_indicated(submitted(asked=["counselling"])) == {"counselling": "requested"}

    def test_counselling_when_an_emergency_brings_the_household(self) -> None:
        assert domain.services_indicated(submitted(emergency=FIRE)) == {"counselling": "emergency:fire"}

    def test_shelter_when_nobody_has_a_local_hukou_or_residence_permit(self) -> None:
        # An Anhui hukou, no residence permit, applying in Pudong.
        assert domain.services_indicated(submitted(hukou="340102")) == {"shelter": "no_local_hukou_or_residence_permit"}

    @pytest.mark.parametrize(("hukou", "permit"), [("340102", "310000"), ("310112", None), ("310115", "340102")])
    def test_no_shelter_with_a_local_hukou_or_permit(self, hukou: str, permit: str | None) -> None:
        assert domain.services_indicated(submitted(hukou=hukou, permit=permit)) == {}

    def test_a_local_member_who_is_not_there_does_not_count(self) -> None:
        away = {"ref": "m2", "relationship": "spouse", "birth_date": "1980-01-01", "hukou_region": "310115"}
        here = {"ref": "m1", "relationship": "applicant", "birth_date": "1980-01-01", "hukou_region": "340102"}
        imprisoned = submitted(members=[here, away | {"status": "imprisoned"}])
        at_home = submitted(members=[here, away])
        assert "shelter" in domain.services_indicated(imprisoned)
        assert domain.services_indicated(at_home) == {}

    def test_zhejiang_is_local_to_taizhou(self) -> None:
        assert domain.services_indicated(submitted(region="331002", hukou="330102", community=None)) == {}
        assert "shelter" in domain.services_indicated(submitted(region="331002", hukou="310115", community=None))


class TestWhichProvider:
    def test_the_most_specific_area_that_offers_the_kind(self) -> None:
        assert charities.provider_for("counselling", "310115").org_id == "pudong-social-work-centre"  # type: ignore[union-attr]
        assert charities.provider_for("shelter", "310115").org_id == "shanghai-rescue-management-station"  # type: ignore[union-attr]
        assert charities.provider_for("shelter", "331002").org_id == "taizhou-rescue-management-station"  # type: ignore[union-attr]

    def test_none_where_nobody_offers_it(self) -> None:
        assert charities.provider_for("counselling", "310112") is None
        assert charities.provider_for("shelter", "440100") is None


class TestOpenForApplication:
    async def test_delivered_twice_refers_once_per_kind(self, services: ServiceFactory) -> None:
        async with manual(services, "referral") as runtime:
            event = submitted(hukou="340102", emergency=FIRE)
            await deliver_twice(runtime, event, key=event.case_id)
            async with runtime.sessionmaker() as session:
                rows = (
                    (await session.execute(select(ServiceReferral).where(ServiceReferral.case_id == event.case_id)))
                    .scalars()
                    .all()
                )
            assert sorted((r.kind, r.organisation, r.status, r.reason) for r in rows) == [
                ("counselling", "pudong-social-work-centre", "referred", "emergency:fire"),
                ("shelter", "shanghai-rescue-management-station", "referred", "no_local_hukou_or_residence_permit"),
            ]
            outbox = messaging.outbox
            referred = (outbox.c.kafka_key == event.case_id, outbox.c.event_type == "referral.service.referred")
            assert await count(runtime, outbox, *referred) == 2
            assert await count(runtime, outbox, outbox.c.topic == "referral.service") == 2

    async def test_an_application_seen_again_under_another_event_id_refers_nothing_new(
        self, services: ServiceFactory
    ) -> None:
        async with api_client(services, "referral") as client:
            event = submitted(asked=["counselling"])
            for _ in range(2):
                async with client.runtime.uow() as uow:
                    await service_referrals.open_for_application(uow, event)
                    await uow.commit()
            assert await count(client.runtime, ServiceReferral, ServiceReferral.case_id == event.case_id) == 1

    async def test_nobody_covering_the_area_leaves_it_unassigned_for_the_advisor(
        self, services: ServiceFactory
    ) -> None:
        async with api_client(services, "referral") as client:
            event = submitted(region="310112", asked=["counselling"], community=None)
            async with client.runtime.uow() as uow:
                (referral,) = await service_referrals.open_for_application(uow, event)
                await uow.commit()
            assert (referral.status, referral.organisation) == ("unassigned", None)
            minhang = {"Authorization": f"Bearer {token(services.data_dir, 'advisor', '310112')}"}
            listed = (await client.get("/v1/service-referrals", headers=minhang)).json()["items"]
            assert [(r["case_id"], r["status"]) for r in listed] == [(event.case_id, "unassigned")]


def bearer(services: ServiceFactory, role: str, region: str, subject: str = "tester") -> dict[str, str]:
    return {"Authorization": f"Bearer {token(services.data_dir, role, region, subject)}"}


async def referred(client: Any, event: ApplicationSubmitted) -> dict[str, str]:
    async with client.runtime.uow() as uow:
        rows = await service_referrals.open_for_application(uow, event)
        await uow.commit()
    return {r.kind: r.referral_id for r in rows}


class TestProviderRecordsTheOutcome:
    async def test_accepted_then_completed_each_an_event(self, services: ServiceFactory) -> None:
        async with api_client(services, "referral") as client:
            event = submitted(asked=["counselling"])
            referral_id = (await referred(client, event))["counselling"]
            centre = bearer(services, "charity", "310115", "pudong-social-work-centre")
            url = f"/v1/service-referrals/{referral_id}/outcome"
            mine = (await client.get("/v1/service-referrals", headers=centre)).json()["items"]
            assert [(r["referral_id"], r["case_id"], r["status"]) for r in mine] == [(referral_id, None, "referred")]
            accepted = await client.post(url, json={"outcome": "accepted", "note": "周三下午面谈"}, headers=centre)
            assert accepted.status_code == 200, accepted.text
            assert accepted.json()["accepted_at"] is not None
            done = await client.post(url, json={"outcome": "completed", "note": "三次面谈，情绪稳定"}, headers=centre)
            assert done.status_code == 200, done.text
            assert (done.json()["status"], done.json()["outcome"]) == ("completed", "三次面谈，情绪稳定")
            assert done.json()["closed_at"] is not None
            assert done.json()["case_id"] is None
            again = await client.post(url, json={"outcome": "no_show"}, headers=centre)
            assert again.status_code == 409
            assert again.headers["content-type"] == "application/problem+json"
            assert again.json()["current_status"] == "completed"
            outbox = messaging.outbox
            async with client.runtime.sessionmaker() as session:
                statement = select(outbox.c.event_type).where(outbox.c.kafka_key == event.case_id)
                types = (await session.execute(statement.order_by(outbox.c.seq))).scalars().all()
            assert types == ["referral.service.referred", "referral.service.accepted", "referral.service.completed"]

    @pytest.mark.parametrize(
        ("steps", "status"),
        [(["declined"], "declined"), (["accepted", "no_show"], "no_show")],
    )
    async def test_declined_or_no_show_closes_it(self, services: ServiceFactory, steps: list[str], status: str) -> None:
        async with api_client(services, "referral") as client:
            referral_id = (await referred(client, submitted(hukou="340102")))["shelter"]
            station = bearer(services, "charity", "310000", "shanghai-rescue-management-station")
            url = f"/v1/service-referrals/{referral_id}/outcome"
            for step in steps:
                response = await client.post(url, json={"outcome": step}, headers=station)
                assert response.status_code == 200, response.text
            assert response.json()["status"] == status
            assert (await client.post(url, json={"outcome": "completed"}, headers=station)).status_code == 409

    async def test_only_the_provider_it_went_to_sees_and_records_it(self, services: ServiceFactory) -> None:
        async with api_client(services, "referral") as client:
            referral_id = (await referred(client, submitted(asked=["counselling"])))["counselling"]
            url = f"/v1/service-referrals/{referral_id}/outcome"
            other = bearer(services, "charity", "310115", "pudong-charity-federation")
            assert (await client.get("/v1/service-referrals", headers=other)).json()["items"] == []
            assert (await client.post(url, json={"outcome": "accepted"}, headers=other)).status_code == 404
            unregistered = bearer(services, "charity", "310115", "not-a-provider")
            assert (await client.post(url, json={"outcome": "accepted"}, headers=unregistered)).status_code == 403
            centre = bearer(services, "charity", "310115", "pudong-social-work-centre")
            # Completing before accepting is not a step the referral allows; a made-up outcome is malformed.
            assert (await client.post(url, json={"outcome": "completed"}, headers=centre)).status_code == 409
            assert (await client.post(url, json={"outcome": "cured"}, headers=centre)).status_code == 422
            assert (
                await count(
                    client.runtime, messaging.outbox, messaging.outbox.c.event_type != "referral.service.referred"
                )
                == 0
            )


class TestCaseworkSeesItsRegion:
    @pytest.mark.parametrize(
        ("region", "seen"),
        [("310115", 1), ("310000", 1), (PUDONG_STREET, 1), (PUDONG_COMMUNITY, 1), ("310112", 0), ("310115002", 0)],
    )
    async def test_a_case_s_referrals_within_the_callers_region(
        self, services: ServiceFactory, region: str, seen: int
    ) -> None:
        async with api_client(services, "referral") as client:
            event = submitted(asked=["counselling"])
            await referred(client, event)
            response = await client.get(
                "/v1/service-referrals", params={"case_id": event.case_id}, headers=bearer(services, "advisor", region)
            )
            assert response.status_code == 200
            items = response.json()["items"]
            assert len(items) == seen
            if seen:
                assert (items[0]["case_id"], items[0]["kind"], items[0]["reason"]) == (
                    event.case_id,
                    "counselling",
                    "requested",
                )

    async def test_filters_by_kind_and_status(self, services: ServiceFactory) -> None:
        async with api_client(services, "referral") as client:
            event = submitted(hukou="340102", asked=["counselling"])
            await referred(client, event)
            kinds = (await client.get("/v1/service-referrals", params={"kind": "shelter"})).json()["items"]
            assert [r["kind"] for r in kinds] == ["shelter"]
            assert (await client.get("/v1/service-referrals", params={"status": "accepted"})).json()["items"] == []
