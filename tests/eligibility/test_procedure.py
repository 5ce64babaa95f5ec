"""The procedure a determination follows: proposed → an officer approves → public notice → approved (paid
from the month after); objections send it back to review; refusals carry their notice deadline; the filer
never decides; an emergency's aid-first amount is approved at once. Real database, real broker."""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import select

from eligibility import assessment, decisions, lifecycle
from eligibility.models import Determination, messaging
from shared.clock import Clock
from shared.contracts.intake import ApplicationSubmitted, HouseholdFacts
from shared.workdays import calendar
from tests.conftest import ServiceFactory, api_client, token
from tests.factories import household_facts

FILER = "window-clerk-1"


def submitted(case_id: str, *, wage: str = "500.00", emergency: bool = False) -> ApplicationSubmitted:
    facts = household_facts()
    facts["members"][0]["incomes"][0]["monthly"] = wage
    if emergency:
        facts["emergency"] = {"kind": "fire", "occurred_on": "2021-08-10", "region": "310115"}
    return ApplicationSubmitted(
        case_id=case_id,
        region="310115",
        channel="window",
        programmes=["subsistence_allowance", "temporary_aid"] if emergency else ["subsistence_allowance"],
        household=HouseholdFacts.model_validate(facts),
        submitted_at=date(2021, 8, 13),  # a Friday
        payee_account="6222021001112223",
        filed_by=FILER,
    )


def as_(services: ServiceFactory, role: str, subject: str = "officer-wang") -> dict[str, str]:
    return {"Authorization": f"Bearer {token(services.data_dir, role, '310115', subject)}"}


async def assessed(client: Any, event: ApplicationSubmitted) -> dict[str, Determination]:
    async with client.runtime.uow() as uow:
        await assessment.assess_application(uow, event, client.runtime.clock)
        await uow.commit()
    async with client.runtime.sessionmaker() as session:
        rows = (await session.execute(select(Determination).where(Determination.case_id == event.case_id))).scalars()
        return {d.programme: d for d in rows}


async def events_of(client: Any, case_id: str) -> list[str]:
    outbox = messaging.outbox
    async with client.runtime.engine.connect() as conn:
        rows = await conn.execute(
            select(outbox.c.event_type).where(outbox.c.kafka_key == case_id).order_by(outbox.c.seq)
        )
        return list(rows.scalars())


class TestProposal:
    async def test_every_determination_is_proposed_with_its_decision_deadline(self, services: ServiceFactory) -> None:
        async with api_client(services, "eligibility") as client:
            case_id = str(uuid.uuid4())
            found = await assessed(client, submitted(case_id))
            allowance = found["subsistence_allowance"]
            assert (allowance.status, allowance.outcome, allowance.filed_by) == ("proposed", "grant", FILER)
            # 30 working days from Friday 13 August 2021 (weekdays only: 2021 is not in the holiday calendar).
            assert allowance.decision_due == calendar().add_working_days(date(2021, 8, 13), 30) == date(2021, 9, 24)
            assert await events_of(client, case_id) == [
                "eligibility.verification.completed",
                "eligibility.determination.proposed",
            ]

    async def test_an_emergencys_aid_first_amount_is_approved_at_once(self, services: ServiceFactory) -> None:
        async with api_client(services, "eligibility") as client:
            case_id = str(uuid.uuid4())
            found = await assessed(client, submitted(case_id, emergency=True))
            aid = found["temporary_aid"]
            assert (aid.status, aid.payment_kind, aid.decided_by) == ("approved", "one_off", None)
            assert aid.amount is not None
            assert aid.amount > 0
            assert found["subsistence_allowance"].status == "proposed"  # the rest waits for the procedure
            assert "eligibility.determination.approved" in await events_of(client, case_id)


class TestOfficer:
    async def test_approval_opens_a_public_notice_that_ends_in_approval_and_payment(
        self, services: ServiceFactory, tmp_path: Path
    ) -> None:
        async with api_client(services, "eligibility") as client:
            case_id = str(uuid.uuid4())
            determination = (await assessed(client, submitted(case_id)))["subsistence_allowance"]
            url = f"/v1/determinations/{determination.determination_id}"
            response = await client.post(url + "/approve", headers=as_(services, "officer"))
            assert response.status_code == 200, response.text
            body = response.json()
            today = client.runtime.clock.today()
            assert (body["status"], body["decided_by"]) == ("notice", "officer-wang")
            assert body["notice_ends_on"] == (today + timedelta(days=7)).isoformat()  # S5 第十九条: 7 days

            clock = Clock(tmp_path / "offset")
            async with client.runtime.uow() as uow:  # the notice has not ended on its last day
                clock.advance(timedelta(days=7))
                assert await decisions.close_notices_once(uow, clock) == 0
                await uow.commit()
            async with client.runtime.uow() as uow:
                clock.advance(timedelta(days=1))
                assert await decisions.close_notices_once(uow, clock) == 1
                await uow.commit()
            after = (await client.get(url, headers=as_(services, "officer"))).json()
            assert after["status"] == "approved"
            assert after["decided_on"] == clock.today().isoformat()  # paid from the month after this date
            assert (await events_of(client, case_id))[-2:] == [
                "eligibility.determination.noticed",
                "eligibility.determination.approved",
            ]
            audit_log = messaging.audit
            async with client.runtime.engine.connect() as conn:
                closed = (
                    await conn.execute(
                        select(audit_log.c.subject, audit_log.c.action).where(
                            audit_log.c.resource_id == determination.determination_id
                        )
                    )
                ).all()
            assert ("eligibility-worker", "approve_after_notice") in closed  # the worker's change is audited too

    async def test_whoever_filed_the_case_cannot_approve_it(self, services: ServiceFactory) -> None:
        async with api_client(services, "eligibility") as client:
            determination = (await assessed(client, submitted(str(uuid.uuid4()))))["subsistence_allowance"]
            url = f"/v1/determinations/{determination.determination_id}/approve"
            response = await client.post(url, headers=as_(services, "officer", subject=FILER))
            assert response.status_code == 403
            assert "maker-checker" in response.json()["detail"]
            again = await client.post(url, headers=as_(services, "officer"))
            assert again.json()["status"] == "notice"
            twice = await client.post(url, headers=as_(services, "officer"))
            assert twice.status_code == 409  # already under notice

    async def test_an_objection_during_notice_sends_it_back_to_review_then_notice_again(
        self, services: ServiceFactory
    ) -> None:
        async with api_client(services, "eligibility") as client:
            case_id = str(uuid.uuid4())
            determination = (await assessed(client, submitted(case_id)))["subsistence_allowance"]
            url = f"/v1/determinations/{determination.determination_id}"
            early = await client.post(url + "/objections", json={"text": "他们有车"}, headers=as_(services, "advisor"))
            assert early.status_code == 409  # only during public notice
            await client.post(url + "/approve", headers=as_(services, "officer"))
            objected = await client.post(
                url + "/objections", json={"text": "他们有车"}, headers=as_(services, "advisor", "advisor-li")
            )
            assert objected.status_code == 200, objected.text
            assert (objected.json()["status"], objected.json()["objections"]) == ("review", 1)
            assert objected.json()["notice_ends_on"] is None
            again = await client.post(url + "/approve", headers=as_(services, "officer"))
            assert again.json()["status"] == "notice"
            types = await events_of(client, case_id)
            assert types[-3:] == [
                "eligibility.determination.noticed",
                "eligibility.determination.objected",
                "eligibility.determination.noticed",
            ]
            async with client.runtime.engine.connect() as conn:
                payloads = (
                    await conn.execute(
                        select(messaging.outbox.c.payload).where(messaging.outbox.c.kafka_key == case_id)
                    )
                ).scalars()
                assert all("他们有车" not in str(p) for p in payloads)  # what an objection says stays here

    async def test_a_proposed_refusal_confirmed_is_denied_with_its_written_notice_deadline(
        self, services: ServiceFactory
    ) -> None:
        async with api_client(services, "eligibility") as client:
            case_id = str(uuid.uuid4())
            determination = (await assessed(client, submitted(case_id, wage="1330.00")))["subsistence_allowance"]
            assert determination.outcome == "deny"
            url = f"/v1/determinations/{determination.determination_id}"
            rejected = await client.post(url + "/reject", json={"reason": "x"}, headers=as_(services, "officer"))
            assert rejected.status_code == 409  # nothing to reject: a refusal is confirmed with approve
            response = await client.post(url + "/approve", headers=as_(services, "officer"))
            body = response.json()
            today = client.runtime.clock.today()
            assert body["status"] == "denied"
            assert body["notice_due"] == calendar().add_working_days(today, 3).isoformat()  # S5 第二十一条
            assert (await events_of(client, case_id))[-1] == "eligibility.determination.denied"
            outbox = messaging.outbox
            async with client.runtime.engine.connect() as conn:
                payload = (
                    await conn.execute(
                        select(outbox.c.payload).where(
                            outbox.c.kafka_key == case_id, outbox.c.event_type == "eligibility.determination.denied"
                        )
                    )
                ).scalar_one()
            assert payload["need_categories"] == ["food"]  # for referral: a working-age adult, basic living

    async def test_an_officer_who_does_not_confirm_a_grant_denies_it_with_the_reason(
        self, services: ServiceFactory
    ) -> None:
        async with api_client(services, "eligibility") as client:
            case_id = str(uuid.uuid4())
            determination = (await assessed(client, submitted(case_id)))["subsistence_allowance"]
            url = f"/v1/determinations/{determination.determination_id}/reject"
            response = await client.post(
                url, json={"reason": "入户调查发现有未申报收入"}, headers=as_(services, "officer")
            )
            body = response.json()
            assert body["status"] == "denied"
            assert body["reasons"][-1]["code"] == "not_confirmed_by_officer"
            assert body["reasons"][-1]["text"] == "入户调查发现有未申报收入"
            assert "第二十一条" in body["reasons"][-1]["source"]


class TestWithdrawal:
    async def test_open_determinations_are_withdrawn_and_approved_monthly_aid_stops(
        self, services: ServiceFactory, tmp_path: Path
    ) -> None:
        from shared.contracts.intake import ApplicationWithdrawn

        async with api_client(services, "eligibility") as client:
            case_id = str(uuid.uuid4())
            found = await assessed(client, submitted(case_id, emergency=True))
            allowance = found["subsistence_allowance"]
            await client.post(
                f"/v1/determinations/{allowance.determination_id}/approve", headers=as_(services, "officer")
            )
            clock = Clock(tmp_path / "offset")
            clock.advance(timedelta(days=8))
            async with client.runtime.uow() as uow:
                await decisions.close_notices_once(uow, clock)
                await uow.commit()
            withdrawn_on = date(2027, 3, 9)
            async with client.runtime.uow() as uow:
                event = ApplicationWithdrawn(case_id=case_id, region="310115", withdrawn_on=withdrawn_on)
                await lifecycle.withdraw_case(uow, event)
                await uow.commit()
            async with client.runtime.sessionmaker() as session:
                rows = (await session.execute(select(Determination).where(Determination.case_id == case_id))).scalars()
                after = {d.programme: d for d in rows}
            assert after["subsistence_allowance"].status == "stopped"
            assert after["subsistence_allowance"].reasons[-1]["code"] == "withdrawn_by_applicant"
            assert after["temporary_aid"].status == "approved"  # the aid first already paid stands
            assert (await events_of(client, case_id))[-1] == "eligibility.determination.stopped"
            async with client.runtime.engine.connect() as conn:
                payload = (
                    await conn.execute(
                        select(messaging.outbox.c.payload)
                        .where(messaging.outbox.c.kafka_key == case_id)
                        .order_by(messaging.outbox.c.seq.desc())
                        .limit(1)
                    )
                ).scalar_one()
            assert payload["last_period"] == "2027-03"

    async def test_a_proposal_withdrawn_cannot_be_approved(self, services: ServiceFactory) -> None:
        from shared.contracts.intake import ApplicationWithdrawn

        async with api_client(services, "eligibility") as client:
            case_id = str(uuid.uuid4())
            allowance = (await assessed(client, submitted(case_id)))["subsistence_allowance"]
            async with client.runtime.uow() as uow:
                event = ApplicationWithdrawn(case_id=case_id, region="310115", withdrawn_on=date(2026, 11, 24))
                await lifecycle.withdraw_case(uow, event)
                await uow.commit()
            late = await client.post(
                f"/v1/determinations/{allowance.determination_id}/approve", headers=as_(services, "officer")
            )
            assert late.status_code == 409
            assert (await events_of(client, case_id))[-1] == "eligibility.determination.withdrawn"


async def approved_allowance(client: Any, services: ServiceFactory, tmp_path: Path, case_id: str, wage: str) -> Any:
    allowance = (await assessed(client, submitted(case_id, wage=wage)))["subsistence_allowance"]
    await client.post(f"/v1/determinations/{allowance.determination_id}/approve", headers=as_(services, "officer"))
    clock = Clock(tmp_path / "offset")
    clock.advance(timedelta(days=8))
    async with client.runtime.uow() as uow:
        await decisions.close_notices_once(uow, clock)
        await uow.commit()
    async with client.runtime.sessionmaker() as session:
        return await session.get(Determination, allowance.determination_id)


def reviewed(case_id: str, wage: str, on: date, kind: str = "business") -> Any:
    from shared.contracts.intake import ApplicationReviewed

    facts = household_facts()
    facts["members"][0]["incomes"] = [{"kind": kind, "monthly": wage}]
    return ApplicationReviewed(
        case_id=case_id, region="310115", household=HouseholdFacts.model_validate(facts), reviewed_on=on
    )


class TestReview:
    async def test_approval_sets_the_next_review_a_year_on(self, services: ServiceFactory, tmp_path: Path) -> None:
        async with api_client(services, "eligibility") as client:
            allowance = await approved_allowance(client, services, tmp_path, str(uuid.uuid4()), "500.00")
            approved_on = allowance.decided_on
            assert allowance.review_due == approved_on.replace(year=approved_on.year + 1)  # S5 第三十一条

    async def test_a_review_that_finds_income_over_the_standard_stops_the_aid(
        self, services: ServiceFactory, tmp_path: Path
    ) -> None:
        async with api_client(services, "eligibility") as client:
            case_id = str(uuid.uuid4())
            await approved_allowance(client, services, tmp_path, case_id, "500.00")
            async with client.runtime.uow() as uow:
                await lifecycle.review_case(uow, reviewed(case_id, "9000.00", date(2026, 11, 24), kind="wage"))
                await uow.commit()
            async with client.runtime.sessionmaker() as session:
                row = (
                    await session.execute(
                        select(Determination).where(
                            Determination.case_id == case_id, Determination.programme == "subsistence_allowance"
                        )
                    )
                ).scalar_one()
            assert (row.status, row.review_due) == ("stopped", None)
            codes = [r["code"] for r in row.reasons]
            assert "income_not_below_standard" in codes
            assert codes[-1] == "no_longer_eligible"
            assert "第四十五条" in row.reasons[-1]["source"]
            assert (await events_of(client, case_id))[-1] == "eligibility.determination.stopped"

    async def test_a_review_still_eligible_goes_on_and_unstable_income_is_reviewed_in_six_months(
        self, services: ServiceFactory, tmp_path: Path
    ) -> None:
        async with api_client(services, "eligibility") as client:
            case_id = str(uuid.uuid4())
            before = await approved_allowance(client, services, tmp_path, case_id, "500.00")
            on = date(2026, 11, 24)
            async with client.runtime.uow() as uow:  # the same 500 a month, now from a small business
                await lifecycle.review_case(uow, reviewed(case_id, "600.00", on))
                await uow.commit()
            async with client.runtime.sessionmaker() as session:
                row = await session.get(Determination, before.determination_id)
            assert row.status == "approved"
            assert row.review_due == date(2027, 5, 24)  # six months: business income, working age
            async with client.runtime.engine.connect() as conn:
                payload = (
                    await conn.execute(
                        select(messaging.outbox.c.payload)
                        .where(messaging.outbox.c.kafka_key == case_id)
                        .order_by(messaging.outbox.c.seq.desc())
                        .limit(1)
                    )
                ).scalar_one()
            assert payload["from_period"] == "2026-12"  # the month after the review
            assert payload["monthly_amount"] != payload["previous_monthly_amount"]
            assert (await events_of(client, case_id))[-2:] == [
                "eligibility.determination.reviewed",
                "eligibility.determination.changed",
            ]
            assert row.monthly_amount == Decimal(payload["monthly_amount"])


async def test_the_officers_worklist_lists_what_waits_for_a_decision_in_their_region(
    services: ServiceFactory,
) -> None:
    async with api_client(services, "eligibility") as client:
        case_id = str(uuid.uuid4())
        found = await assessed(client, submitted(case_id, wage="1330.00"))  # a refusal and a margin grant
        params = {"case_id": case_id, "status": "proposed"}
        mine = (await client.get("/v1/determinations", params=params, headers=as_(services, "officer"))).json()
        assert {d["determination_id"] for d in mine["items"]} == {d.determination_id for d in found.values()}
        elsewhere = {"Authorization": f"Bearer {token(services.data_dir, 'officer', '310112')}"}
        theirs = (await client.get("/v1/determinations", params=params, headers=elsewhere)).json()
        assert theirs["items"] == []
