"""Reviews of households receiving aid go through the means test like applications: the sources' figures
replace the declared ones (the differences kept and shown), a source that is down parks the review and
changes nothing until it answers, and a signal's pre-screen says which figures it rests on. Real database,
real HTTP verification centre."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from eligibility import assessment, leads, lifecycle
from eligibility.models import Determination, PendingVerification, Verification, messaging
from eligibility.sources import DEV_REGISTRY, RegistrySource
from shared.contracts.intake import ApplicationReviewed, ApplicationWithdrawn, HouseholdFacts, SignalReceived
from shared.db.base import utcnow
from shared.pii import DEV_LINKAGE_KEY
from tests.conftest import ServiceFactory, api_client, manual
from tests.eligibility.centre import Centre
from tests.eligibility.test_procedure import approved_allowance, events_of
from tests.eligibility.test_verification import KEY, http_source
from tests.factories import household_facts

REVIEWED_ON = date(2026, 11, 24)


def review(case_id: str, *, wage: str = "500.00", key: str | None = KEY, on: date = REVIEWED_ON) -> ApplicationReviewed:
    facts = household_facts()
    facts["members"][0]["incomes"] = [{"kind": "wage", "monthly": wage}]
    facts["members"][0]["person_key"] = key
    return ApplicationReviewed(
        case_id=case_id, region="310115", household=HouseholdFacts.model_validate(facts), reviewed_on=on
    )


@pytest.fixture
def centre() -> Iterator[Centre]:
    instance = Centre({KEY: {"incomes": {"wage": "5200.00"}, "monetary_assets": "3000.00"}})
    yield instance
    instance.close()


async def allowance_of(client: Any, case_id: str) -> Determination:
    async with client.runtime.sessionmaker() as session:
        return (
            await session.execute(
                select(Determination).where(
                    Determination.case_id == case_id, Determination.programme == "subsistence_allowance"
                )
            )
        ).scalar_one()


async def last_payload(client: Any, case_id: str, event_type: str) -> dict[str, Any]:
    outbox = messaging.outbox
    async with client.runtime.engine.connect() as conn:
        return (
            await conn.execute(
                select(outbox.c.payload)
                .where(outbox.c.kafka_key == case_id, outbox.c.event_type == event_type)
                .order_by(outbox.c.seq.desc())
                .limit(1)
            )
        ).scalar_one()


class TestReviewVerified:
    async def test_a_wage_the_review_did_not_declare_is_found_and_stops_the_aid_on_the_verified_figure(
        self, services: ServiceFactory, centre: Centre, tmp_path: Path
    ) -> None:
        async with api_client(services, "eligibility") as client:
            case_id = str(uuid.uuid4())
            await approved_allowance(client, services, tmp_path, case_id, "500.00")
            async with client.runtime.uow() as uow:  # declares the same 500.00; the centre holds 5200.00
                await lifecycle.review_case(uow, review(case_id), [http_source(centre)], 0.01)
                await uow.commit()
            allowance = await allowance_of(client, case_id)
            assert allowance.status == "stopped"
            codes = [r["code"] for r in allowance.reasons]
            assert codes[0] == "income_not_below_standard"
            assert "verified_differs_from_declared" in codes
            verified = next(r for r in allowance.reasons if r["code"] == "verified_differs_from_declared")
            assert "declared 500.00, verified 5200.00" in verified["text"]
            completed = await last_payload(client, case_id, "eligibility.verification.completed")
            assert (completed["kind"], completed["reviewed_on"]) == ("review", "2026-11-24")
            assert completed["counted_monthly_income"] == "5200.00"
            assert {(d["field"], d["declared"], d["verified"]) for d in completed["differences"]} == {
                ("income.wage", "500.00", "5200.00"),
                ("monetary", "0.00", "3000.00"),
            }
            async with client.runtime.sessionmaker() as session:
                record = (
                    await session.execute(select(Verification).where(Verification.case_id == case_id))
                ).scalar_one()
            # The case's verified household is now the review's: what the next review or a recompute starts from.
            assert record.household["members"][0]["incomes"] == [{"kind": "wage", "monthly": "5200.00"}]
            assert record.sources == ["declared", "verification_centre"]
            assert (await events_of(client, case_id))[-2:] == [
                "eligibility.verification.completed",
                "eligibility.determination.stopped",
            ]

    async def test_someone_no_source_knows_is_reviewed_on_the_declared_figures(
        self, services: ServiceFactory, centre: Centre, tmp_path: Path
    ) -> None:
        async with api_client(services, "eligibility") as client:
            case_id = str(uuid.uuid4())
            await approved_allowance(client, services, tmp_path, case_id, "500.00")
            async with client.runtime.uow() as uow:
                await lifecycle.review_case(uow, review(case_id, key="0" * 64), [http_source(centre)], 0.01)
                await uow.commit()
            allowance = await allowance_of(client, case_id)
            # The declared 500.00 against the standard in force at the review (1,650 from 2025-07-01).
            assert (allowance.status, allowance.monthly_amount) == ("approved", Decimal("1150.00"))
            completed = await last_payload(client, case_id, "eligibility.verification.completed")
            assert completed["differences"] == []
            assert completed["evidence"][0]["members_found"] == 0


class TestReviewWhileASourceIsDown:
    async def test_the_review_waits_changing_nothing_and_is_decided_on_verified_figures_once_the_source_answers(
        self, services: ServiceFactory, centre: Centre, tmp_path: Path
    ) -> None:
        source = http_source(centre, cache_seconds=0)
        async with api_client(services, "eligibility") as client:
            case_id = str(uuid.uuid4())
            before = await approved_allowance(client, services, tmp_path, case_id, "500.00")
            centre.mode = "down"
            async with client.runtime.uow() as uow:
                await lifecycle.review_case(uow, review(case_id), [source], 0.01)
                await uow.commit()
            allowance = await allowance_of(client, case_id)
            # Not stopped, not changed, its next review date untouched: nothing is decided on a guess.
            assert (allowance.status, allowance.monthly_amount, allowance.review_due) == (
                "approved",
                before.monthly_amount,
                before.review_due,
            )
            delayed = await last_payload(client, case_id, "eligibility.verification.delayed")
            assert (delayed["kind"], delayed["reviewed_on"], delayed["sources_down"]) == (
                "review",
                "2026-11-24",
                ["verification_centre"],
            )
            assert "503" in delayed["reason"]
            assert (await events_of(client, case_id))[-1] == "eligibility.verification.delayed"
            async with client.runtime.sessionmaker() as session:
                pending = await session.get(PendingVerification, case_id)
                assert (pending.kind, pending.attempts) == ("review", 1)
            # Its backoff (10 ms) ends first: on a fast run the reads above took less (seen once in CI).
            await asyncio.sleep(max(0.0, (pending.next_attempt_at - utcnow()).total_seconds()) + 0.005)

            async with client.runtime.uow() as uow:  # still down: tried again, still waiting
                assert await assessment.retry_verifications_once(uow, client.runtime.clock, [source], 0.0) == 1
                await uow.commit()
            assert (await allowance_of(client, case_id)).status == "approved"
            async with client.runtime.sessionmaker() as session:
                assert (await session.get(PendingVerification, case_id)).attempts == 2

            centre.mode = "up"
            async with client.runtime.uow() as uow:
                assert await assessment.retry_verifications_once(uow, client.runtime.clock, [source], 0.0) == 1
                await uow.commit()
            allowance = await allowance_of(client, case_id)
            assert allowance.status == "stopped"  # on the verified 5200.00
            assert allowance.decided_on == REVIEWED_ON  # the review's date, not the retry's
            async with client.runtime.sessionmaker() as session:
                assert await session.get(PendingVerification, case_id) is None
            assert (await events_of(client, case_id))[-2:] == [
                "eligibility.verification.completed",
                "eligibility.determination.stopped",
            ]

    async def test_a_later_review_takes_the_place_of_one_still_waiting(
        self, services: ServiceFactory, centre: Centre, tmp_path: Path
    ) -> None:
        source = http_source(centre, cache_seconds=0)
        async with api_client(services, "eligibility") as client:
            case_id = str(uuid.uuid4())
            await approved_allowance(client, services, tmp_path, case_id, "500.00")
            centre.mode = "down"
            for on in (date(2026, 11, 24), date(2026, 12, 2)):
                async with client.runtime.uow() as uow:
                    await lifecycle.review_case(uow, review(case_id, on=on), [source], 0.01)
                    await uow.commit()
            async with client.runtime.sessionmaker() as session:
                pending = await session.get(PendingVerification, case_id)
            assert (pending.application["reviewed_on"], pending.attempts) == ("2026-12-02", 1)

    async def test_a_withdrawal_ends_the_wait(self, services: ServiceFactory, centre: Centre, tmp_path: Path) -> None:
        source = http_source(centre, cache_seconds=0)
        async with api_client(services, "eligibility") as client:
            case_id = str(uuid.uuid4())
            await approved_allowance(client, services, tmp_path, case_id, "500.00")
            centre.mode = "down"
            async with client.runtime.uow() as uow:
                await lifecycle.review_case(uow, review(case_id), [source], 0.01)
                await lifecycle.withdraw_case(
                    uow, ApplicationWithdrawn(case_id=case_id, region="310115", withdrawn_on=date(2026, 11, 25))
                )
                await uow.commit()
            async with client.runtime.sessionmaker() as session:
                assert await session.get(PendingVerification, case_id) is None
            stopped = await allowance_of(client, case_id)
            assert stopped.reasons[-1]["code"] == "withdrawn_by_applicant"  # not the review's word

    async def test_a_review_never_displaces_an_application_still_waiting(
        self, services: ServiceFactory, centre: Centre
    ) -> None:
        from tests.eligibility.test_verification import application

        source = http_source(centre, cache_seconds=0)
        async with api_client(services, "eligibility") as client:
            case_id = str(uuid.uuid4())
            centre.mode = "down"  # an emergency: aid first approved, the rest waits for verification
            async with client.runtime.uow() as uow:
                await assessment.assess_application(
                    uow, application(case_id, emergency=True), client.runtime.clock, [source], 0.01
                )
                await uow.commit()
            centre.mode = "up"
            async with client.runtime.uow() as uow:
                await lifecycle.review_case(uow, review(case_id), [source], 0.01)
                await uow.commit()
            async with client.runtime.sessionmaker() as session:
                pending = await session.get(PendingVerification, case_id)
            assert pending is not None
            assert pending.kind == "application"  # still there, to be decided when its retry comes


def signal_about(case_id: str, *, key: str | None) -> SignalReceived:
    facts = household_facts()  # intake holds 500.00 a month from a wage
    facts["members"][0]["person_key"] = key
    return SignalReceived(
        signal_id=str(uuid.uuid4()),
        source="utilities",
        kind="utility_arrears",
        region="310115",
        community="310115001001",
        occurred_on=date(2026, 11, 20),
        household_key=case_id,
        case_id=case_id,
        case_status="denied",
        member_ref="m1",
        household=HouseholdFacts.model_validate(facts),
    )


class TestSignalPrescreen:
    async def test_a_person_the_registry_knows_is_screened_on_the_verified_figures(
        self, services: ServiceFactory
    ) -> None:
        registry = RegistrySource(DEV_REGISTRY, DEV_LINKAGE_KEY)
        async with manual(services, "eligibility") as runtime:
            async with runtime.uow() as uow:
                # On intake's 500.00 the household would qualify; the registry holds a wage of 5200.00.
                lead = await leads.prescreen(uow, signal_about(str(uuid.uuid4()), key=KEY), [registry])
                await uow.commit()
            assert lead is None

    async def test_a_person_no_source_knows_is_screened_on_the_signals_figures_and_the_lead_says_so(
        self, services: ServiceFactory
    ) -> None:
        registry = RegistrySource(DEV_REGISTRY, DEV_LINKAGE_KEY)
        async with manual(services, "eligibility") as runtime:
            async with runtime.uow() as uow:
                lead = await leads.prescreen(uow, signal_about(str(uuid.uuid4()), key="0" * 64), [registry])
                await uow.commit()
            assert lead is not None
            assert "subsistence_allowance" in lead.programmes
            assert any("screened on the signal's figures" in e and "no verification source" in e for e in lead.evidence)

    async def test_a_verified_lead_says_which_source_and_how_fresh(
        self, services: ServiceFactory, centre: Centre
    ) -> None:
        centre.people[KEY] = {"incomes": {"wage": "300.00"}}
        async with manual(services, "eligibility") as runtime:
            async with runtime.uow() as uow:
                lead = await leads.prescreen(uow, signal_about(str(uuid.uuid4()), key=KEY), [http_source(centre)])
                await uow.commit()
            assert lead is not None
            said = next(e for e in lead.evidence if e.startswith("screened on"))
            assert "verification_centre (data as of 2026-11-01)" in said
            assert "declared 500.00, verified 300.00" in said

    async def test_a_source_that_is_down_does_not_hold_the_screen_up_and_the_lead_says_so(
        self, services: ServiceFactory, centre: Centre
    ) -> None:
        centre.mode = "down"
        async with manual(services, "eligibility") as runtime:
            async with runtime.uow() as uow:
                lead = await leads.prescreen(
                    uow, signal_about(str(uuid.uuid4()), key=KEY), [http_source(centre, attempts=1)]
                )
                await uow.commit()
            assert lead is not None
            said = next(e for e in lead.evidence if e.startswith("screened on"))
            assert "could not answer" in said
            assert "503" in said


async def test_the_verified_household_is_what_a_review_compares_with(services: ServiceFactory, tmp_path: Path) -> None:
    """The review's figures land in the verification record even without sources (nothing to verify
    against): the stored household is always the latest one eligibility decided on."""
    async with api_client(services, "eligibility") as client:
        case_id = str(uuid.uuid4())
        await approved_allowance(client, services, tmp_path, case_id, "500.00")
        async with client.runtime.uow() as uow:
            await lifecycle.review_case(uow, review(case_id, wage="700.00", key=None))
            await uow.commit()
        async with client.runtime.sessionmaker() as session:
            record = (await session.execute(select(Verification).where(Verification.case_id == case_id))).scalar_one()
        assert record.household["members"][0]["incomes"] == [{"kind": "wage", "monthly": "700.00"}]
        assert record.counted_monthly_income == Decimal("700.00")
        assert record.sources == ["declared"]


def with_members(
    case_id: str,
    members: list[dict[str, Any]],
    *,
    joined: tuple[str, ...] | list[str] = (),
    left: tuple[str, ...] | list[str] = (),
) -> ApplicationReviewed:
    return ApplicationReviewed(
        case_id=case_id,
        region="310115",
        household=HouseholdFacts.model_validate({"members": members}),
        reviewed_on=REVIEWED_ON,
        kind="change_reported",
        joined=list(joined),
        left=list(left),
    )


APPLICANT = household_facts()["members"][0]  # a wage of 500.00
CHILD = {"ref": "m2", "relationship": "child", "birth_date": "2010-01-01", "hukou_region": "310115"}


class TestMembershipChanges:
    async def test_a_child_joining_raises_the_amount_from_the_next_month_with_the_reason(
        self, services: ServiceFactory, tmp_path: Path
    ) -> None:
        async with api_client(services, "eligibility") as client:
            case_id = str(uuid.uuid4())
            await approved_allowance(client, services, tmp_path, case_id, "500.00")
            async with client.runtime.uow() as uow:
                await lifecycle.review_case(uow, with_members(case_id, [APPLICANT, CHILD], joined=["m2"]))
                await uow.commit()
            allowance = await allowance_of(client, case_id)
            # 500.00 over two people: 250.00 each, 1,400.00 below the 1,650.00 standard, for two.
            assert (allowance.status, allowance.monthly_amount) == ("approved", Decimal("2800.00"))
            changed = await last_payload(client, case_id, "eligibility.determination.changed")
            assert (changed["from_period"], changed["monthly_amount"]) == ("2026-12", "2800.00")
            reason = next(r for r in changed["reasons"] if r["code"] == "household_changed")
            assert reason["text"].startswith("m2 joined the household")
            assert "第三十条" in reason["source"]

    async def test_someone_with_a_high_wage_joining_stops_the_aid_at_once_with_the_reason(
        self, services: ServiceFactory, tmp_path: Path
    ) -> None:
        async with api_client(services, "eligibility") as client:
            case_id = str(uuid.uuid4())
            await approved_allowance(client, services, tmp_path, case_id, "500.00")
            partner = {
                "ref": "m3",
                "relationship": "spouse",
                "birth_date": "1982-02-02",
                "hukou_region": "310115",
                "incomes": [{"kind": "wage", "monthly": "9000.00"}],
            }
            async with client.runtime.uow() as uow:
                await lifecycle.review_case(uow, with_members(case_id, [APPLICANT, partner], joined=["m3"]))
                await uow.commit()
            allowance = await allowance_of(client, case_id)
            assert allowance.status == "stopped"
            codes = [r["code"] for r in allowance.reasons]
            assert codes[0] == "income_not_below_standard"
            assert "household_changed" in codes
            assert codes[-1] == "no_longer_eligible"  # a stop at once: the new wage is a newcomer's, not new work
            stopped = await last_payload(client, case_id, "eligibility.determination.stopped")
            assert stopped["last_period"] == "2026-11"
