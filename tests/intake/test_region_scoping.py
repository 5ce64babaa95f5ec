"""A token's region limits what it sees and changes: outside it a case answers 404, and filing is refused."""

from __future__ import annotations

import pytest

from tests.conftest import ServiceFactory, api_client, token
from tests.factories import application


def bearer(services: ServiceFactory, role: str, region: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(services.data_dir, role, region)}"}


@pytest.mark.parametrize(
    ("region", "sees"),
    [("310115", True), ("310000", True), ("000000", True), ("310112", False), ("330000", False), ("310115001", False)],
    ids=["same-district", "city", "national", "other-district", "other-province", "a-street-the-case-lacks"],
)
async def test_a_case_is_visible_only_within_the_callers_region(
    services: ServiceFactory, region: str, sees: bool
) -> None:
    async with api_client(services, "intake", role="window", region="310115") as client:
        case_id = (await client.post("/v1/applications", json=application())).json()["case_id"]
        for path in (f"/v1/cases/{case_id}", f"/v1/cases/{case_id}/timeline"):
            response = await client.get(path, headers=bearer(services, "advisor", region))
            assert response.status_code == (200 if sees else 404), (path, response.text)


async def test_a_street_advisor_sees_the_cases_of_that_street_only(services: ServiceFactory) -> None:
    async with api_client(services, "intake", role="advisor", region="310115001") as client:
        mine = await client.post("/v1/applications", json=application(street="310115001"))
        assert mine.status_code == 201
        assert (await client.get(f"/v1/cases/{mine.json()['case_id']}")).status_code == 200
        elsewhere = await client.post("/v1/applications", json=application(street="310115002"))
        assert elsewhere.status_code == 403
        assert elsewhere.headers["content-type"] == "application/problem+json"


async def test_filing_outside_ones_region_is_refused_and_writes_nothing(services: ServiceFactory) -> None:
    from intake.models import Case
    from tests.conftest import count

    async with api_client(services, "intake", role="window", region="310112") as client:
        response = await client.post("/v1/applications", json=application())  # region 310115
        assert response.status_code == 403
        assert await count(client.runtime, Case) == 0


async def test_charities_see_needs_of_their_area_only(services: ServiceFactory) -> None:
    import uuid
    from decimal import Decimal

    from referral import service
    from shared.contracts.eligibility import DeterminationDenied
    from tests.factories import TODAY

    async with api_client(services, "referral") as client:
        for region in ("310115", "330000"):
            async with client.runtime.uow() as uow:
                await service.publish_need_for_denial(
                    uow,
                    DeterminationDenied(
                        case_id=str(uuid.uuid4()),
                        determination_id=str(uuid.uuid4()),
                        programme="subsistence_allowance",
                        region=region,
                        decided_on=TODAY,
                        monthly_amount=Decimal("0.00"),
                    ),
                )
                await uow.commit()
        charity = {
            "Authorization": f"Bearer {token(services.data_dir, 'charity', '310000', 'pudong-charity-federation')}"
        }
        shanghai = (await client.get("/v1/needs", headers=charity)).json()["items"]
        assert [need["area"] for need in shanghai] == ["310115"]
