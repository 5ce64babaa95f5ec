"""Charities see only needs in their categories and areas, claim within their capacity, and deliver; the
case view follows."""

from __future__ import annotations

import uuid
from decimal import Decimal

from referral import service
from shared.contracts.eligibility import DeterminationDenied
from tests.conftest import ServiceFactory, api_client, token
from tests.factories import TODAY


def charity(services: ServiceFactory, org: str, region: str = "310000") -> dict[str, str]:
    return {"Authorization": f"Bearer {token(services.data_dir, 'charity', region, org)}"}


async def publish(client: object, region: str = "310115") -> str:
    case_id = str(uuid.uuid4())
    async with client.runtime.uow() as uow:  # type: ignore[attr-defined]
        await service.publish_need_for_denial(
            uow,
            DeterminationDenied(
                case_id=case_id,
                determination_id=str(uuid.uuid4()),
                programme="subsistence_allowance",
                region=region,
                decided_on=TODAY,
                monthly_amount=Decimal("0.00"),
            ),
        )
        await uow.commit()
    return case_id


async def test_a_charity_sees_claims_and_delivers_only_within_its_categories_and_areas(
    services: ServiceFactory,
) -> None:
    async with api_client(services, "referral") as client:
        await publish(client)
        pudong = charity(services, "pudong-charity-federation")
        medical_only = charity(services, "shanghai-medical-aid-fund")
        (need,) = (await client.get("/v1/needs", headers=pudong)).json()["items"]
        assert "id_number" not in need
        assert (await client.get("/v1/needs", headers=medical_only)).json()["items"] == []  # food is not theirs
        url = f"/v1/needs/{need['need_id']}"
        assert (await client.post(url + "/claim", headers=medical_only)).status_code == 404
        claimed = await client.post(url + "/claim", headers=pudong)
        assert claimed.status_code == 200, claimed.text
        assert (claimed.json()["status"], claimed.json()["claimed_by"]) == ("claimed", "pudong-charity-federation")
        assert (await client.post(url + "/claim", headers=pudong)).status_code == 409
        delivered = await client.post(url + "/delivery", json={"amount": "300.00", "note": "米面油"}, headers=pudong)
        assert delivered.json()["status"] == "delivered"
        unknown = charity(services, "not-a-charity")
        assert (await client.get("/v1/needs", headers=unknown)).status_code == 403


async def test_a_charity_holds_no_more_open_claims_than_its_capacity(services: ServiceFactory) -> None:
    from referral import charities

    async with api_client(services, "referral") as client:
        pudong = charity(services, "pudong-charity-federation")
        capacity = charities.register()["pudong-charity-federation"].capacity
        for _ in range(capacity + 1):
            await publish(client)
        needs = (await client.get("/v1/needs", params={"limit": 500}, headers=pudong)).json()["items"]
        codes = [(await client.post(f"/v1/needs/{n['need_id']}/claim", headers=pudong)).status_code for n in needs]
        assert codes.count(200) == capacity
        assert codes.count(409) == 1
