"""A household's contact details go to the charity holding its need only with its consent, from intake,
audited every time; withdrawing the consent stops it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from intake import domain, read_model
from intake.models import Case, messaging
from shared.contracts.base import Event
from shared.contracts.referral import NeedClaimed, NeedDelivered, NeedMatched, NeedPublished
from tests.conftest import ServiceFactory, api_client, count, token
from tests.factories import application

FEDERATION = "pudong-charity-federation"
MEDICAL_FUND = "shanghai-medical-aid-fund"
PHONE = "13800138000"


def charity(services: ServiceFactory, org: str = FEDERATION, region: str = "310115") -> dict[str, str]:
    return {"Authorization": f"Bearer {token(services.data_dir, 'charity', region, org)}"}


async def file(client: Any, *, consent: bool, phone: str | None = PHONE) -> tuple[str, dict[str, Any]]:
    body = application(consent={"economic_verification": True, "charity_contact": consent})
    if phone:
        body["contact_phone"] = phone
    response = await client.post("/v1/applications", json=body)
    assert response.status_code == 201, response.text
    return response.json()["case_id"], body


async def apply(client: Any, *events: Event) -> None:
    """What intake's worker does with referral's events: fold them into the case view."""
    async with client.runtime.uow() as uow:
        for event in events:
            await read_model.record_event(
                uow, event, event_id=str(uuid.uuid4()), source="/doudi/referral", occurred_at=datetime.now(UTC)
            )
        await uow.commit()


async def claimed_need(client: Any, case_id: str, org: str = FEDERATION) -> str:
    need_id = str(uuid.uuid4())
    await apply(
        client,
        NeedPublished(case_id=case_id, need_id=need_id, category="food", area="310115", consented=True),
        NeedClaimed(case_id=case_id, need_id=need_id, organisation=org),
    )
    return need_id


async def audit_rows(client: Any, action: str) -> list[Any]:
    table = messaging.audit
    async with client.runtime.engine.connect() as conn:
        return list((await conn.execute(select(table).where(table.c.action == action).order_by(table.c.seq))).all())


class TestConsentAtApplication:
    async def test_no_consent_unless_the_household_gives_it(self, services: ServiceFactory) -> None:
        async with api_client(services, "intake", role="window", region="310115") as client:
            body = application()  # the consent to economic verification only
            case_id = (await client.post("/v1/applications", json=body)).json()["case_id"]
            case = (await client.get(f"/v1/cases/{case_id}")).json()
            assert case["charity_contact"] == {"consented": False, "withdrawn_at": None, "disclosures": []}
            assert case["contact_phone"] is None
            given, _ = await file(client, consent=True)
            shown = (await client.get(f"/v1/cases/{given}")).json()
            assert (shown["charity_contact"]["consented"], shown["contact_phone"]) == (True, PHONE)

    async def test_sharing_contact_does_not_stand_for_the_consent_to_verification(
        self, services: ServiceFactory
    ) -> None:
        async with api_client(services, "intake", role="window", region="310115") as client:
            body = application(consent={"charity_contact": True})
            response = await client.post("/v1/applications", json=body)
            assert response.status_code == 422
            assert response.json()["errors"][0]["field"] == "consent.economic_verification"
            refused = application(consent={"economic_verification": False, "charity_contact": True})
            assert (await client.post("/v1/applications", json=refused)).status_code == 422

    async def test_the_phone_is_stored_encrypted(self, services: ServiceFactory) -> None:
        async with api_client(services, "intake", role="window", region="310115") as client:
            case_id, _ = await file(client, consent=True)
            async with client.runtime.sessionmaker() as session:
                stored = (await session.execute(select(Case).where(Case.case_id == case_id))).scalar_one()
            assert stored.contact_phone_encrypted is not None
            assert PHONE not in stored.contact_phone_encrypted


class TestDisclosure:
    async def test_the_charity_holding_the_need_gets_the_contact_and_it_is_on_record(
        self, services: ServiceFactory
    ) -> None:
        async with api_client(services, "intake", role="window", region="310115") as client:
            case_id, body = await file(client, consent=True)
            need_id = await claimed_need(client, case_id)
            answer = await client.get(f"/v1/needs/{need_id}/contact", headers=charity(services))
            assert answer.status_code == 200, answer.text
            applicant = body["household"]["members"][0]
            assert answer.json() == {"need_id": need_id, "category": "food", "name": applicant["name"], "phone": PHONE}
            assert applicant["id_number"] not in answer.text
            (entry,) = await audit_rows(client, "disclose_contact")
            assert (entry.subject, entry.role, entry.outcome, entry.resource_id) == (
                FEDERATION,
                "charity",
                "ok",
                case_id,
            )
            assert need_id in entry.purpose
            assert "consent" in entry.purpose
            case = (await client.get(f"/v1/cases/{case_id}")).json()
            (disclosure,) = case["charity_contact"]["disclosures"]
            assert (disclosure["need_id"], disclosure["organisation"]) == (need_id, FEDERATION)

    async def test_another_charity_gets_nothing_and_is_on_record_too(self, services: ServiceFactory) -> None:
        async with api_client(services, "intake", role="window", region="310115") as client:
            case_id, _ = await file(client, consent=True)
            need_id = await claimed_need(client, case_id)
            other = await client.get(f"/v1/needs/{need_id}/contact", headers=charity(services, MEDICAL_FUND))
            assert other.status_code == 404
            assert other.headers["content-type"] == "application/problem+json"
            assert PHONE not in other.text
            unknown = await client.get(f"/v1/needs/{uuid.uuid4()}/contact", headers=charity(services))
            assert unknown.status_code == 404
            assert [(e.subject, e.outcome) for e in await audit_rows(client, "disclose_contact")] == [
                (MEDICAL_FUND, "denied_not_holder"),
                (FEDERATION, "denied_not_found"),
            ]
            assert (await client.get(f"/v1/cases/{case_id}")).json()["charity_contact"]["disclosures"] == []

    async def test_a_need_nobody_has_claimed_yet_is_nobodys_to_contact(self, services: ServiceFactory) -> None:
        async with api_client(services, "intake", role="window", region="310115") as client:
            case_id, _ = await file(client, consent=True)
            need_id = str(uuid.uuid4())
            await apply(client, NeedPublished(case_id=case_id, need_id=need_id, category="food", area="310115"))
            assert (await client.get(f"/v1/needs/{need_id}/contact", headers=charity(services))).status_code == 404

    async def test_without_consent_the_holder_is_refused_with_the_reason(self, services: ServiceFactory) -> None:
        async with api_client(services, "intake", role="window", region="310115") as client:
            case_id, _ = await file(client, consent=False)
            need_id = await claimed_need(client, case_id)
            refused = await client.get(f"/v1/needs/{need_id}/contact", headers=charity(services))
            assert refused.status_code == 403
            assert refused.headers["content-type"] == "application/problem+json"
            assert refused.json()["reason"] == "no_consent"
            assert "did not consent" in refused.json()["detail"]
            assert PHONE not in refused.text
            assert [e.outcome for e in await audit_rows(client, "disclose_contact")] == ["denied_no_consent"]

    async def test_a_charity_whose_offer_was_matched_gets_the_contact_until_it_delivers(
        self, services: ServiceFactory
    ) -> None:
        async with api_client(services, "intake", role="window", region="310115") as client:
            case_id, _ = await file(client, consent=True)
            need_id = str(uuid.uuid4())
            matched = NeedMatched(
                case_id=case_id,
                need_id=need_id,
                offer_id=str(uuid.uuid4()),
                organisation=MEDICAL_FUND,
                category="medical",
                area="310115",
                consented=True,
            )
            await apply(client, matched)
            fund = charity(services, MEDICAL_FUND, "310000")
            assert (await client.get(f"/v1/needs/{need_id}/contact", headers=fund)).json()["category"] == "medical"
            await apply(client, NeedDelivered(case_id=case_id, need_id=need_id, organisation=MEDICAL_FUND))
            after = await client.get(f"/v1/needs/{need_id}/contact", headers=fund)
            assert after.status_code == 409
            assert after.json()["reason"] == "delivered"

    async def test_a_charity_token_for_another_region_sees_no_case_there(self, services: ServiceFactory) -> None:
        async with api_client(services, "intake", role="window", region="310115") as client:
            case_id, _ = await file(client, consent=True)
            need_id = await claimed_need(client, case_id)
            minhang = charity(services, FEDERATION, "310112")
            assert (await client.get(f"/v1/needs/{need_id}/contact", headers=minhang)).status_code == 404


class TestWithdrawal:
    async def test_after_withdrawal_nothing_more_is_disclosed(self, services: ServiceFactory) -> None:
        async with api_client(services, "intake", role="window", region="310115") as client:
            case_id, _ = await file(client, consent=True)
            need_id = await claimed_need(client, case_id)
            url = f"/v1/needs/{need_id}/contact"
            assert (await client.get(url, headers=charity(services))).status_code == 200
            advisor = {"Authorization": f"Bearer {token(services.data_dir, 'advisor', '310115')}"}
            withdrawn = await client.post(f"/v1/cases/{case_id}/contact-consent/withdrawal", headers=advisor)
            assert withdrawn.status_code == 200, withdrawn.text
            refused = await client.get(url, headers=charity(services))
            assert refused.status_code == 403
            assert refused.json()["reason"] == "consent_withdrawn"
            assert "withdrew" in refused.json()["detail"]
            again = await client.post(f"/v1/cases/{case_id}/contact-consent/withdrawal", headers=advisor)
            assert again.status_code == 200
            outbox = messaging.outbox
            assert (
                await count(client.runtime, outbox, outbox.c.event_type == "intake.application.consent_withdrawn") == 1
            )
            case = (await client.get(f"/v1/cases/{case_id}")).json()
            assert case["charity_contact"]["consented"] is False
            assert case["charity_contact"]["withdrawn_at"] is not None
            assert len(case["charity_contact"]["disclosures"]) == 1  # what was given before stays on record
            timeline = (await client.get(f"/v1/cases/{case_id}/timeline")).json()["events"]
            assert "intake.application.consent_withdrawn" in [e["type"] for e in timeline]
            assert [e.outcome for e in await audit_rows(client, "withdraw_contact_consent")] == ["ok", "ok"]

    async def test_a_household_that_never_consented_has_nothing_to_withdraw(self, services: ServiceFactory) -> None:
        async with api_client(services, "intake", role="window", region="310115") as client:
            case_id, _ = await file(client, consent=False)
            response = await client.post(f"/v1/cases/{case_id}/contact-consent/withdrawal")
            assert response.status_code == 409
            assert response.headers["content-type"] == "application/problem+json"
            elsewhere = {"Authorization": f"Bearer {token(services.data_dir, 'window', '310112')}"}
            assert (
                await client.post(f"/v1/cases/{case_id}/contact-consent/withdrawal", headers=elsewhere)
            ).status_code == 404


class TestTheRule:
    def test_each_refusal(self) -> None:
        def outcome(**changes: Any) -> str:
            facts = {
                "holder": FEDERATION,
                "status": "claimed",
                "caller": FEDERATION,
                "consent_given": True,
                "consent_withdrawn": False,
            }
            return domain.contact_disclosure(**(facts | changes))

        assert outcome() == "ok"
        assert outcome(caller=MEDICAL_FUND) == "not_holder"
        assert outcome(holder=None, status="published") == "not_holder"
        assert outcome(consent_given=False) == "no_consent"
        assert outcome(consent_withdrawn=True) == "consent_withdrawn"
        assert outcome(status="delivered") == "delivered"
