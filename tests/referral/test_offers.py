"""Two-way claiming: a charity offers help in its categories and areas; an advisor or officer in the area
matches it to a case, which claims the case's need for the charity; the charity then delivers it."""

from __future__ import annotations

import uuid
from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select

from referral import offers, service
from referral.models import KnownCase, Need, Offer, messaging
from shared.contracts.eligibility import DeterminationDenied
from shared.contracts.intake import ApplicationSubmitted, HouseholdFacts
from tests.conftest import ServiceFactory, api_client, count, deliver_twice, manual, token
from tests.factories import TODAY, household_facts

FEDERATION = "pudong-charity-federation"  # food, medical, elderly, children in 310115; capacity 50
MEDICAL_FUND = "shanghai-medical-aid-fund"  # medical in all of Shanghai


def bearer(services: ServiceFactory, role: str, region: str, subject: str = "tester") -> dict[str, str]:
    return {"Authorization": f"Bearer {token(services.data_dir, role, region, subject)}"}


def application(region: str = "310115", community: str | None = "310115001001") -> ApplicationSubmitted:
    return ApplicationSubmitted(
        case_id=str(uuid.uuid4()),
        region=region,
        street=community[:9] if community else None,
        community=community,
        channel="window",
        programmes=[],
        household=HouseholdFacts.model_validate(
            household_facts() | {"members": [household_facts()["members"][0] | {"hukou_region": region}]}
        ),
        submitted_at=date(2026, 11, 22),
    )


async def known_case(client: Any, region: str = "310115", community: str | None = "310115001001") -> str:
    event = application(region, community)
    async with client.runtime.uow() as uow:
        await offers.remember_case(uow, event)
        await uow.commit()
    return event.case_id


async def offer(client: Any, services: ServiceFactory, org: str = FEDERATION, **body: Any) -> dict[str, Any]:
    values = {"category": "food", "area": "310115", "capacity": 2, "amount": "200.00", "description": "米面油一份"}
    response = await client.post("/v1/offers", json=values | body, headers=bearer(services, "charity", "310115", org))
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


class TestPublishOffer:
    async def test_a_charity_offers_help_in_its_categories_and_areas(self, services: ServiceFactory) -> None:
        async with api_client(services, "referral") as client:
            made = await offer(client, services)
            assert (made["organisation"], made["status"], made["places_left"], made["amount"]) == (
                FEDERATION,
                "open",
                2,
                "200.00",
            )
            charity = bearer(services, "charity", "310115", FEDERATION)
            for body, status in (
                ({"category": "shelter"}, 403),  # not its category
                ({"area": "310000"}, 403),  # all of Shanghai: wider than its district
                ({"area": "310112"}, 403),
                ({"capacity": 0}, 422),
                ({"amount": 12.5}, 422),  # money is never a float
                ({"colour": "red"}, 422),
            ):
                values = {"category": "food", "area": "310115", "capacity": 1, "description": "x"} | body
                response = await client.post("/v1/offers", json=values, headers=charity)
                assert response.status_code == status, (body, response.text)
                assert response.headers["content-type"] == "application/problem+json"
            stranger = bearer(services, "charity", "310115", "not-a-charity")
            values = {"category": "food", "area": "310115", "capacity": 1, "description": "x"}
            assert (await client.post("/v1/offers", json=values, headers=stranger)).status_code == 403
            assert await count(client.runtime, Offer) == 1

    async def test_a_retry_with_the_same_key_returns_the_same_offer(self, services: ServiceFactory) -> None:
        async with api_client(services, "referral") as client:
            charity = bearer(services, "charity", "310115", FEDERATION) | {"Idempotency-Key": "offer-1"}
            body = {"category": "food", "area": "310115", "capacity": 3, "description": "冬衣"}
            first = await client.post("/v1/offers", json=body, headers=charity)
            again = await client.post("/v1/offers", json=body, headers=charity)
            assert first.status_code == again.status_code == 201
            assert again.json()["offer_id"] == first.json()["offer_id"]
            assert again.headers["idempotent-replayed"] == "true"
            other = await client.post("/v1/offers", json=body | {"capacity": 4}, headers=charity)
            assert other.status_code == 409
            # Another charity's key of the same name is its own.
            fund = bearer(services, "charity", "310000", MEDICAL_FUND) | {"Idempotency-Key": "offer-1"}
            theirs = await client.post("/v1/offers", json=body | {"category": "medical"}, headers=fund)
            assert theirs.status_code == 201, theirs.text
            assert await count(client.runtime, Offer) == 2


class TestWhoSeesOffers:
    @pytest.mark.parametrize(
        ("region", "seen"),
        [
            ("310115", {"food", "medical"}),
            ("310115001", {"food", "medical"}),
            ("310000", {"food", "medical"}),
            ("310112", {"medical"}),
            ("330000", set()),
        ],
    )
    async def test_casework_sees_offers_overlapping_its_region(
        self, services: ServiceFactory, region: str, seen: set[str]
    ) -> None:
        async with api_client(services, "referral") as client:
            await offer(client, services)  # Pudong
            await offer(client, services, MEDICAL_FUND, category="medical", area="310000")  # all of Shanghai
            listed = (await client.get("/v1/offers", headers=bearer(services, "advisor", region))).json()["items"]
            assert {o["category"] for o in listed} == seen

    async def test_a_charity_sees_its_own(self, services: ServiceFactory) -> None:
        async with api_client(services, "referral") as client:
            await offer(client, services)
            await offer(client, services, MEDICAL_FUND, category="medical", area="310000")
            fund = bearer(services, "charity", "310000", MEDICAL_FUND)
            assert [o["organisation"] for o in (await client.get("/v1/offers", headers=fund)).json()["items"]] == [
                MEDICAL_FUND
            ]


class TestMatchOffer:
    async def test_a_match_claims_a_new_need_for_the_charity_which_delivers_it(self, services: ServiceFactory) -> None:
        async with api_client(services, "referral") as client:
            made = await offer(client, services, capacity=1)
            case_id = await known_case(client)
            advisor = bearer(services, "advisor", "310115")
            url = f"/v1/offers/{made['offer_id']}/matches"
            matched = await client.post(url, json={"case_id": case_id}, headers=advisor)
            assert matched.status_code == 201, matched.text
            need = matched.json()["need"]
            assert (need["status"], need["claimed_by"], need["offer_id"], need["amount"]) == (
                "claimed",
                FEDERATION,
                made["offer_id"],
                "200.00",
            )
            assert (matched.json()["offer"]["status"], matched.json()["offer"]["places_left"]) == ("full", 0)
            # The same match again is the match already made; the full offer takes nobody else.
            again = await client.post(url, json={"case_id": case_id}, headers=advisor)
            assert again.status_code == 200
            assert again.json()["need"]["need_id"] == need["need_id"]
            other = await client.post(url, json={"case_id": await known_case(client)}, headers=advisor)
            assert other.status_code == 409
            assert other.json()["current_status"] == "full"
            outbox = messaging.outbox
            assert await count(client.runtime, outbox, outbox.c.event_type == "referral.need.matched") == 1
            # The charity sees it among its needs and delivers it as any claimed need.
            charity = bearer(services, "charity", "310115", FEDERATION)
            assert need["need_id"] in [
                n["need_id"] for n in (await client.get("/v1/needs", headers=charity)).json()["items"]
            ]
            delivered = await client.post(
                f"/v1/needs/{need['need_id']}/delivery", json={"amount": "200.00"}, headers=charity
            )
            assert delivered.status_code == 200, delivered.text
            assert delivered.json()["status"] == "delivered"

    async def test_a_match_claims_the_need_a_denial_published(self, services: ServiceFactory) -> None:
        async with api_client(services, "referral") as client:
            case_id = await known_case(client)
            async with client.runtime.uow() as uow:
                await service.publish_need_for_denial(
                    uow,
                    DeterminationDenied(
                        case_id=case_id,
                        determination_id=str(uuid.uuid4()),
                        programme="subsistence_allowance",
                        region="310115",
                        decided_on=TODAY,
                        monthly_amount=Decimal("0.00"),
                        need_categories=["medical", "food"],
                    ),
                )
                await uow.commit()
            made = await offer(client, services, MEDICAL_FUND, category="medical", area="310000", amount=None)
            matched = await client.post(
                f"/v1/offers/{made['offer_id']}/matches",
                json={"case_id": case_id},
                headers=bearer(services, "officer", "310000"),
            )
            assert matched.status_code == 201, matched.text
            async with client.runtime.sessionmaker() as session:
                needs = {
                    n.category: n
                    for n in (await session.execute(select(Need).where(Need.case_id == case_id))).scalars()
                }
            assert set(needs) == {"medical", "food"}  # no second medical need: the published one is claimed
            assert (needs["medical"].status, needs["medical"].claimed_by, needs["medical"].offer_id) == (
                "claimed",
                MEDICAL_FUND,
                made["offer_id"],
            )
            assert needs["medical"].determination_id is not None
            assert needs["food"].status == "published"
            # A need someone else holds is not matched again.
            food = await offer(client, services, category="food")
            charity = bearer(services, "charity", "310115", FEDERATION)
            assert (await client.post(f"/v1/needs/{needs['food'].need_id}/claim", headers=charity)).status_code == 200
            taken = await client.post(
                f"/v1/offers/{food['offer_id']}/matches",
                json={"case_id": case_id},
                headers=bearer(services, "advisor", "310115"),
            )
            assert taken.status_code == 409
            assert taken.json()["current_status"] == "claimed"

    async def test_outside_the_region_or_the_offers_area_nothing_is_matched(self, services: ServiceFactory) -> None:
        async with api_client(services, "referral") as client:
            pudong_offer = await offer(client, services)
            shanghai_offer = await offer(client, services, MEDICAL_FUND, category="medical", area="310000")
            pudong_case = await known_case(client)
            minhang_case = await known_case(client, "310112", None)
            minhang = bearer(services, "advisor", "310112")
            shanghai = bearer(services, "officer", "310000")

            async def match(offer_id: str, case_id: str, headers: dict[str, str]) -> int:
                url = f"/v1/offers/{offer_id}/matches"
                return (await client.post(url, json={"case_id": case_id}, headers=headers)).status_code

            assert await match(pudong_offer["offer_id"], minhang_case, minhang) == 404  # the offer is not theirs to see
            assert await match(shanghai_offer["offer_id"], pudong_case, minhang) == 404  # nor the case
            assert await match(shanghai_offer["offer_id"], str(uuid.uuid4()), minhang) == 404  # unknown case
            assert await match(pudong_offer["offer_id"], minhang_case, shanghai) == 409  # outside the offer's area
            assert await match(shanghai_offer["offer_id"], minhang_case, minhang) == 201
            street = bearer(services, "advisor", "310115002")  # another street of Pudong
            assert await match(pudong_offer["offer_id"], pudong_case, street) == 404
            assert await count(client.runtime, Need) == 1


async def test_an_application_delivered_twice_is_remembered_once(services: ServiceFactory) -> None:
    async with manual(services, "referral") as runtime:
        event = application()
        await deliver_twice(runtime, event, key=event.case_id)
        async with runtime.sessionmaker() as session:
            case = await session.get(KnownCase, event.case_id)
        assert case is not None
        assert (case.region, case.street, case.community) == ("310115", "310115001", "310115001001")
        assert await count(runtime, KnownCase, KnownCase.case_id == event.case_id) == 1
