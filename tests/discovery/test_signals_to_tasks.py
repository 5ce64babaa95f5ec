"""Policy finds the person: a department's signal → intake matches the household → eligibility pre-screens
it → a qualified lead → an outreach task for the community's advisor. Each hop against the real database;
the whole chain over the broker in the end-to-end test."""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from eligibility import leads
from eligibility.models import Determination, Lead, Verification
from intake import service as intake_service
from intake.models import Signal, messaging
from referral import outreach
from referral.models import OutreachTask
from shared.contracts.eligibility import LeadQualified
from shared.contracts.intake import HouseholdFacts, SignalReceived
from tests.conftest import ServiceFactory, api_client, deliver_twice, manual, token
from tests.factories import application, household_facts, new_id_number

COMMUNITY = "310115001001"  # advisor-zhang's, in the development roster


def signal(**overrides: Any) -> dict[str, Any]:
    body = {
        "source": "employment_service",
        "source_id": str(uuid.uuid4()),
        "kind": "unemployment",
        "id_number": new_id_number(),
        "region": "310115",
        "community": COMMUNITY,
        "occurred_on": "2026-11-20",
    }
    return body | overrides


def department(services: ServiceFactory, source: str = "employment_service") -> dict[str, str]:
    return {"Authorization": f"Bearer {token(services.data_dir, 'department', '310115', source)}"}


class TestIntake:
    async def test_a_signal_is_recorded_once_and_passed_on_without_the_id_number(
        self, services: ServiceFactory
    ) -> None:
        async with api_client(services, "intake") as client:
            body = signal()
            first = await client.post("/v1/signals", json=body, headers=department(services))
            assert first.status_code == 201, first.text
            again = await client.post("/v1/signals", json=body, headers=department(services))
            assert again.status_code == 200
            assert again.json() == first.json() | {"recognised": True}
            assert first.json()["matched_case"] is False
            outbox = messaging.outbox
            async with client.runtime.engine.connect() as conn:
                rows = (await conn.execute(select(outbox.c.event_type, outbox.c.payload))).all()
            sent = [payload for event_type, payload in rows if event_type == "intake.signal.received"]
            assert len(sent) == 1
            assert body["id_number"] not in str(sent[0])

    async def test_a_signal_about_a_member_of_a_known_household_carries_its_facts(
        self, services: ServiceFactory
    ) -> None:
        async with api_client(services, "intake") as client:
            app = application()
            case_id = (await client.post("/v1/applications", json=app)).json()["case_id"]
            person = app["household"]["members"][0]["id_number"]
            accepted = await client.post("/v1/signals", json=signal(id_number=person), headers=department(services))
            assert accepted.json()["matched_case"] is True
            assert accepted.json()["household_key"] == case_id
            async with client.runtime.sessionmaker() as session:
                row = await session.get(Signal, accepted.json()["signal_id"])
            assert row.case_id == case_id

    async def test_unknown_sources_wrong_kinds_other_clients_and_bad_numbers_make_no_signal(
        self, services: ServiceFactory
    ) -> None:
        async with api_client(services, "intake") as client:
            cases = [
                (signal(source="tarot_reader"), department(services, "tarot_reader"), 422, "source"),
                (signal(kind="disaster"), department(services), 422, "kind"),
                (signal(), department(services, "utilities"), 403, None),
                (signal(id_number="310115198005010014"), department(services), 422, "id_number"),
            ]
            for body, headers, status, field in cases:
                response = await client.post("/v1/signals", json=body, headers=headers)
                assert response.status_code == status, (body, response.text)
                if field:
                    assert field in response.text
            unauthenticated = await client.post("/v1/signals", json=signal(), headers={"Authorization": ""})
            assert unauthenticated.status_code == 401
            async with client.runtime.sessionmaker() as session:
                assert (await session.execute(select(Signal))).first() is None


def received(**overrides: Any) -> SignalReceived:
    values: dict[str, Any] = {
        "signal_id": str(uuid.uuid4()),
        "source": "employment_service",
        "kind": "unemployment",
        "region": "310115",
        "community": COMMUNITY,
        "occurred_on": date(2026, 11, 20),
        "household_key": str(uuid.uuid4()),
    }
    return SignalReceived(**(values | overrides))


class TestPrescreen:
    async def test_a_known_household_whose_earner_lost_work_may_now_qualify(self, services: ServiceFactory) -> None:
        facts = household_facts()
        facts["members"][0]["incomes"] = [{"kind": "wage", "monthly": "3000.00"}]
        async with manual(services, "eligibility") as runtime:
            event = received(
                case_id=str(uuid.uuid4()),
                case_status="denied",
                member_ref="m1",
                household=HouseholdFacts.model_validate(facts),
            )
            async with runtime.uow() as uow:
                lead = await leads.prescreen(uow, event)
                await uow.commit()
            assert lead is not None
            assert "subsistence_allowance" in lead.programmes
            assert any("unemployment" in e for e in lead.evidence)

    async def test_no_lead_while_the_case_is_being_decided_or_when_nothing_new_qualifies(
        self, services: ServiceFactory
    ) -> None:
        rich = household_facts()
        rich["members"][0]["incomes"] = [{"kind": "pension", "monthly": "9000.00"}]
        async with manual(services, "eligibility") as runtime:
            async with runtime.uow() as uow:
                deciding = received(case_id=str(uuid.uuid4()), case_status="proposed", household=None)
                assert (
                    await leads.prescreen(
                        uow, deciding.model_copy(update={"household": HouseholdFacts.model_validate(rich)})
                    )
                    is None
                )
                comfortable = received(
                    case_id=str(uuid.uuid4()),
                    case_status="denied",
                    member_ref="m1",
                    household=HouseholdFacts.model_validate(rich),
                )
                assert await leads.prescreen(uow, comfortable) is None
                await uow.commit()
            async with runtime.sessionmaker() as session:
                assert (await session.execute(select(Lead))).first() is None

    async def test_a_household_nobody_knows_is_worth_a_visit(self, services: ServiceFactory) -> None:
        async with manual(services, "eligibility") as runtime:
            async with runtime.uow() as uow:
                lead = await leads.prescreen(uow, received(kind="earner_death", source="civil_registry"))
                await uow.commit()
            assert lead is not None
            assert lead.programmes == []
            assert any("not known" in e for e in lead.evidence)

    async def test_aid_already_received_is_not_a_lead(self, services: ServiceFactory) -> None:
        facts = household_facts()  # 500 a month: below the standard, already on the allowance
        case_id = str(uuid.uuid4())
        async with manual(services, "eligibility") as runtime:
            async with runtime.uow() as uow:
                uow.session.add(
                    Determination(
                        determination_id=str(uuid.uuid4()),
                        case_id=case_id,
                        programme="subsistence_allowance",
                        region="310115",
                        status="approved",
                        reasons=[],
                        rule="t",
                        decided_on=date(2026, 1, 1),
                        created_at=intake_service.utcnow(),
                    )
                )
                await uow.session.flush()
                event = received(
                    kind="utility_arrears",
                    source="utilities",
                    case_id=case_id,
                    case_status="approved",
                    household=HouseholdFacts.model_validate(facts),
                )
                lead = await leads.prescreen(uow, event)
            assert lead is None  # it qualifies for nothing it does not already receive


def qualified(**overrides: Any) -> LeadQualified:
    values: dict[str, Any] = {
        "lead_id": str(uuid.uuid4()),
        "household_key": str(uuid.uuid4()),
        "region": "310115",
        "community": COMMUNITY,
        "programmes": ["subsistence_allowance"],
        "evidence": ["unemployment reported by employment_service on 2026-11-20"],
        "found_on": date(2026, 11, 20),  # a Friday
    }
    return LeadQualified(**(values | overrides))


class TestOutreach:
    async def test_a_lead_becomes_a_task_for_the_communitys_advisor_who_records_the_visit(
        self, services: ServiceFactory
    ) -> None:
        async with api_client(services, "referral") as client:
            lead = qualified()
            async with client.runtime.uow() as uow:
                await outreach.open_task(uow, lead, response_days=5)
                await outreach.open_task(uow, lead, response_days=5)  # redelivered: one task
                await uow.commit()
            zhang = {"Authorization": f"Bearer {token(services.data_dir, 'advisor', COMMUNITY, 'advisor-zhang')}"}
            tasks = (await client.get("/v1/outreach-tasks", params={"mine": "true"}, headers=zhang)).json()["items"]
            assert len(tasks) == 1
            task = tasks[0]
            assert (task["advisor"], task["status"], task["due_on"]) == ("advisor-zhang", "assigned", "2026-11-27")
            url = f"/v1/outreach-tasks/{task['task_id']}/outcome"
            visited = await client.post(url, json={"outcome": "visited", "note": "在家，同意申请"}, headers=zhang)
            assert visited.json()["status"] == "visited"
            converted = await client.post(url, json={"outcome": "converted", "case_id": "c-1"}, headers=zhang)
            assert converted.json()["status"] == "converted"
            late = await client.post(url, json={"outcome": "declined"}, headers=zhang)
            assert late.status_code == 409
            other = {"Authorization": f"Bearer {token(services.data_dir, 'advisor', '310112', 'advisor-minhang')}"}
            assert (await client.get("/v1/outreach-tasks", headers=other)).json()["items"] == []
            summary = (await client.get("/v1/discovery/summary", headers=zhang)).json()
            assert summary["converted"] == 1
            assert summary["days_signal_to_visit_median"] is not None

    async def test_a_task_not_visited_by_its_due_date_is_escalated(self, services: ServiceFactory) -> None:
        async with manual(services, "referral") as runtime:
            async with runtime.uow() as uow:
                await outreach.open_task(uow, qualified(community="310115001999"), response_days=5)
                await uow.commit()
            async with runtime.uow() as uow:
                assert await outreach.escalate_overdue(uow, date(2026, 11, 27)) == 0  # the due date itself
                assert await outreach.escalate_overdue(uow, date(2026, 11, 27) + timedelta(days=1)) == 1
                await uow.commit()
            async with runtime.sessionmaker() as session:
                task = (await session.execute(select(OutreachTask))).scalar_one()
            assert task.escalated
            assert task.advisor == "advisor-zhang"  # no one for that community: its street's advisor
            from referral.models import messaging

            async with runtime.engine.connect() as conn:
                audited = (
                    await conn.execute(
                        select(messaging.audit.c.action).where(messaging.audit.c.resource_id == task.task_id)
                    )
                ).scalars()
                assert list(audited) == ["escalate"]


class TestSweep:
    async def test_a_new_standard_finds_a_household_refused_under_the_old_one(self, services: ServiceFactory) -> None:
        """Per-capita 1,550 a month: refused in January 2024 (standard 1,510), margin granted; when the
        standard becomes 1,595 on 1 July 2024 the sweep finds it may now have the allowance."""
        from eligibility.sweep import sweep

        facts = household_facts()
        facts["members"][0]["incomes"] = [{"kind": "wage", "monthly": "1550.00"}]
        case_id, deciding_case = str(uuid.uuid4()), str(uuid.uuid4())
        async with manual(services, "eligibility") as runtime:
            async with runtime.uow() as uow:
                for case, status in ((case_id, "denied"), (deciding_case, "proposed")):
                    uow.session.add(
                        Verification(
                            verification_id=str(uuid.uuid4()),
                            case_id=case,
                            region="310115",
                            community=COMMUNITY,
                            sources=["declared"],
                            household=facts,
                            counted_members=1,
                            counted_monthly_income=Decimal("1550.00"),
                            per_capita_monthly_income=Decimal("1550.00"),
                            completed_at=intake_service.utcnow(),
                        )
                    )
                    for programme, programme_status in (
                        ("subsistence_allowance", status),
                        ("low_income_margin", "approved"),
                    ):
                        uow.session.add(
                            Determination(
                                determination_id=str(uuid.uuid4()),
                                case_id=case,
                                programme=programme,
                                region="310115",
                                status=programme_status,
                                reasons=[],
                                rule="t",
                                decided_on=date(2024, 1, 15),
                                created_at=intake_service.utcnow(),
                            )
                        )
                await uow.commit()
            async with runtime.uow() as uow:
                before = await sweep(uow, date(2024, 6, 30))
            assert before["leads"] == 0  # 1,550 is not below 1,510
            async with runtime.uow() as uow:
                after = await sweep(uow, date(2024, 7, 1))
            assert after["leads"] == 1, after  # not the case still being decided
            assert after["by_programme"] == {"subsistence_allowance": 1}
            async with runtime.uow() as uow:
                again = await sweep(uow, date(2024, 7, 1))
            assert again["leads"] == 0  # one lead per household per sweep date
            async with runtime.sessionmaker() as session:
                lead = (await session.execute(select(Lead).where(Lead.case_id == case_id))).scalar_one()
            assert (lead.kind, lead.community, lead.programmes) == ("sweep", COMMUNITY, ["subsistence_allowance"])


async def test_an_application_that_names_its_lead_converts_the_visit(services: ServiceFactory) -> None:
    from shared.contracts.intake import ApplicationSubmitted

    async with manual(services, "referral") as runtime:
        lead = qualified()
        async with runtime.uow() as uow:
            await outreach.open_task(uow, lead, response_days=5)
            await uow.commit()
        case_id = str(uuid.uuid4())
        applied = ApplicationSubmitted(
            case_id=case_id,
            region="310115",
            channel="discovery",
            programmes=[],
            household=HouseholdFacts.model_validate(household_facts()),
            submitted_at=date(2026, 11, 24),
            lead_id=lead.lead_id,
        )
        await deliver_twice(runtime, applied, key=case_id)
        async with runtime.sessionmaker() as session:
            task = (await session.execute(select(OutreachTask))).scalar_one()
        assert (task.status, task.application_case_id) == ("converted", case_id)


async def test_an_application_from_a_lead_must_come_through_discovery(services: ServiceFactory) -> None:
    async with api_client(services, "intake", role="advisor", region="310115") as client:
        wrong = await client.post("/v1/applications", json=application(lead_id=str(uuid.uuid4())))
        assert wrong.status_code == 422
        assert "discovery" in wrong.text
        right = await client.post("/v1/applications", json=application(lead_id=str(uuid.uuid4()), channel="discovery"))
        assert right.status_code == 201
