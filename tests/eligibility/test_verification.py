"""The means test: sources find people by their person keys, verified figures replace declared ones with
every difference kept, and a source that cannot answer delays the case (never decides it) until it can.
The HTTP source talks to a real HTTP server; the database and broker are real."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from eligibility import assessment, verification
from eligibility.models import Determination, PendingVerification, Verification, messaging
from eligibility.sources import (
    DEV_REGISTRY,
    CircuitBreaker,
    HttpSource,
    PersonRecord,
    RegistrySource,
    SourceAnswer,
    SourceUnavailable,
)
from shared.contracts.intake import ApplicationSubmitted, HouseholdFacts
from shared.pii import DEV_LINKAGE_KEY, person_key
from tests.conftest import ServiceFactory, api_client, eventually
from tests.eligibility.centre import Centre
from tests.eligibility.test_procedure import events_of
from tests.factories import household_facts

ID_NUMBER = "310115196606060113"  # in the development registry: a wage of 5200.00 on record
KEY = person_key(ID_NUMBER, DEV_LINKAGE_KEY)


def declared(wage: str = "500.00", monetary: str = "0.00", key: str | None = KEY) -> dict[str, Any]:
    facts = household_facts()
    facts["members"][0]["incomes"][0]["monthly"] = wage
    facts["members"][0]["person_key"] = key
    facts["assets"] = {"monetary": monetary}
    return HouseholdFacts.model_validate(facts).model_dump(mode="json")


class TestReconcile:
    def test_a_verified_income_replaces_the_declared_one_and_the_difference_is_kept(self) -> None:
        answer = SourceAnswer(
            "social_insurance", date(2026, 11, 1), {KEY: PersonRecord(incomes={"wage": Decimal("5200.00")})}
        )
        report = verification.reconcile(declared("500.00"), [answer])
        assert report.household["members"][0]["incomes"] == [{"kind": "wage", "monthly": "5200.00"}]
        (difference,) = report.differences
        assert (difference.member, difference.field, difference.declared, difference.verified) == (
            "m1",
            "income.wage",
            "500.00",
            "5200.00",
        )
        assert report.evidence[0].members_found == 1
        assert report.sources == ["declared", "social_insurance"]
        assert "declared 500.00, verified 5200.00" in report.discrepancies()[0]

    def test_kinds_no_source_reports_stay_as_declared_and_an_agreeing_source_adds_no_difference(self) -> None:
        household = declared("500.00")
        answer = SourceAnswer("pensions", None, {KEY: PersonRecord(incomes={"pension": Decimal("0.00")})})
        report = verification.reconcile(household, [answer])
        assert report.household["members"][0]["incomes"] == [{"kind": "wage", "monthly": "500.00"}]
        assert report.differences == []

    def test_assets_are_the_larger_of_declared_and_verified(self) -> None:
        more = SourceAnswer("banks", None, {KEY: PersonRecord(monetary_assets=Decimal("90000.00"), private_cars=1)})
        report = verification.reconcile(declared(monetary="1000.00"), [more])
        assert report.household["assets"]["monetary"] == "90000.00"
        assert report.household["assets"]["private_cars"] == 1
        assert {d.field for d in report.differences} == {"monetary", "private_cars"}
        less = SourceAnswer("banks", None, {KEY: PersonRecord(monetary_assets=Decimal("10.00"))})
        report = verification.reconcile(declared(monetary="1000.00"), [less])
        assert report.household["assets"]["monetary"] == "1000.00"  # cash at home is not in a bank's records
        assert [d.verified for d in report.differences] == ["10.00"]

    def test_someone_no_source_knows_is_taken_as_declared(self) -> None:
        report = verification.reconcile(declared(key="0" * 64), [SourceAnswer("registry", None, {})])
        assert report.household["members"][0]["incomes"] == [{"kind": "wage", "monthly": "500.00"}]
        assert report.differences == []
        assert report.evidence[0].members_found == 0


class TestRegistrySource:
    async def test_the_development_registry_finds_people_by_person_key(self) -> None:
        source = RegistrySource(DEV_REGISTRY, DEV_LINKAGE_KEY)
        answer = await source.lookup([KEY, "f" * 64])
        assert answer.people == {KEY: PersonRecord({"wage": Decimal("5200.00")}, Decimal("3000.00"), 0, 0)}
        assert answer.data_as_of == date(2026, 11, 1)

    @pytest.mark.parametrize(
        ("entry", "problem"),
        [
            ('incomes = { salary = "1.00" }', "unknown income kinds"),
            ('monetary_assets = "lots"', "not an amount"),
            ("private_cars = -1", "whole number"),
        ],
    )
    def test_a_bad_record_is_refused_naming_it(self, tmp_path: Path, entry: str, problem: str) -> None:
        path = tmp_path / "records.toml"
        path.write_text(f'[[person]]\nid_number = "{ID_NUMBER}"\n{entry}\n', encoding="utf-8")
        with pytest.raises(ValueError, match=f"records.toml person 1.*{problem}"):
            RegistrySource(path, DEV_LINKAGE_KEY)


class TestCircuitBreaker:
    def test_opens_after_failures_in_a_row_and_lets_one_trial_through_after_the_reset(self) -> None:
        now = [0.0]
        breaker = CircuitBreaker(failures=2, reset_seconds=10, clock=lambda: now[0])
        breaker.failed()
        assert breaker.state == "closed"
        breaker.failed()
        assert (breaker.state, breaker.allow()) == ("open", False)
        now[0] = 10.0
        assert (breaker.state, breaker.allow()) == ("half-open", True)
        breaker.failed()  # the trial failed: open again, for another reset period
        assert breaker.state == "open"
        now[0] = 20.0
        breaker.succeeded()
        assert (breaker.state, breaker.failures) == ("closed", 0)


@pytest.fixture
def centre() -> Iterator[Centre]:
    instance = Centre({KEY: {"incomes": {"wage": "5200.00"}, "monetary_assets": "3000.00"}})
    yield instance
    instance.close()


def http_source(centre: Centre, **overrides: Any) -> HttpSource:
    options: dict[str, Any] = {"timeout": 0.3, "attempts": 2, "backoff": 0.01, "cache_seconds": 60}
    options.update(overrides)
    return HttpSource(centre.url, **options)


class TestHttpSource:
    async def test_answers_are_read_and_cached(self, centre: Centre) -> None:
        source = http_source(centre)
        first = await source.lookup([KEY])
        assert first.people[KEY].incomes == {"wage": Decimal("5200.00")}
        assert first.data_as_of == date(2026, 11, 1)
        assert await source.lookup([KEY]) == first
        assert centre.requests == 1

    @pytest.mark.parametrize(
        ("mode", "says"), [("down", "answered 503"), ("slow", "timed out"), ("garbage", "unreadable")]
    )
    async def test_a_source_that_cannot_answer_says_why_after_bounded_retries(
        self, centre: Centre, mode: str, says: str
    ) -> None:
        centre.mode = mode
        # A short timeout only where the test is about one: on a loaded machine the centre's thread can take
        # longer than 0.3 s to answer, and a 503 would read as a timeout.
        source = http_source(centre, timeout=0.3 if mode == "slow" else 10)
        with pytest.raises(SourceUnavailable, match=says):
            await source.lookup([KEY])
        expected = 1 if mode == "garbage" else 2
        # The centre counts a request in its own thread, which a timed-out client does not wait for.
        await eventually(lambda: centre.requests >= expected, timeout=5)
        assert centre.requests == expected

    async def test_the_breaker_stops_calling_a_source_that_keeps_failing(self, centre: Centre) -> None:
        centre.mode = "down"
        source = http_source(centre, attempts=1, breaker=CircuitBreaker(failures=2, reset_seconds=60))
        for _ in range(2):
            with pytest.raises(SourceUnavailable, match="503"):
                await source.lookup([KEY])
        with pytest.raises(SourceUnavailable, match="circuit open"):
            await source.lookup([KEY])
        assert centre.requests == 2


def application(case_id: str, *, emergency: bool = False) -> ApplicationSubmitted:
    household = declared("500.00")
    if emergency:
        household["emergency"] = {"kind": "fire", "occurred_on": "2021-08-10", "region": "310115"}
    return ApplicationSubmitted(
        case_id=case_id,
        region="310115",
        channel="window",
        programmes=["subsistence_allowance", "temporary_aid"] if emergency else ["subsistence_allowance"],
        household=HouseholdFacts.model_validate(household),
        submitted_at=date(2021, 8, 13),
        filed_by="window-clerk-1",
    )


async def determinations(client: Any, case_id: str) -> dict[str, Determination]:
    async with client.runtime.sessionmaker() as session:
        rows = (await session.execute(select(Determination).where(Determination.case_id == case_id))).scalars()
        return {d.programme: d for d in rows}


async def test_a_source_that_is_down_delays_the_case_and_it_is_decided_on_verified_figures_once_it_answers(
    services: ServiceFactory, centre: Centre
) -> None:
    source = http_source(centre, cache_seconds=0)
    async with api_client(services, "eligibility") as client:
        case_id = str(uuid.uuid4())
        centre.mode = "down"
        async with client.runtime.uow() as uow:
            await assessment.assess_application(uow, application(case_id), client.runtime.clock, [source], 0.01)
            await uow.commit()
        assert await determinations(client, case_id) == {}  # neither approved nor denied for want of an answer
        assert await events_of(client, case_id) == ["eligibility.verification.delayed"]
        async with client.runtime.sessionmaker() as session:
            pending = await session.get(PendingVerification, case_id)
            assert pending is not None
            assert "503" in pending.reason
            assert pending.attempts == 1

        centre.mode = "up"
        async with client.runtime.uow() as uow:
            assert await assessment.retry_verifications_once(uow, client.runtime.clock, [source], 0.01) == 1
            await uow.commit()
        found = await determinations(client, case_id)
        # Declared 500.00 a month, but a wage of 5200.00 is on record: refused on the verified figure.
        assert (found["subsistence_allowance"].outcome, found["subsistence_allowance"].status) == ("deny", "proposed")
        async with client.runtime.sessionmaker() as session:
            assert await session.get(PendingVerification, case_id) is None
            record = (await session.execute(select(Verification).where(Verification.case_id == case_id))).scalar_one()
        assert record.counted_monthly_income == Decimal("5200.00")
        assert record.sources == ["declared", "verification_centre"]
        assert record.differences[0]["field"] == "income.wage"
        assert record.evidence == [{"source": "verification_centre", "data_as_of": "2026-11-01", "members_found": 1}]
        assert (await events_of(client, case_id))[:2] == [
            "eligibility.verification.delayed",
            "eligibility.verification.completed",
        ]
        async with client.runtime.uow() as uow:  # nothing left to retry
            assert await assessment.retry_verifications_once(uow, client.runtime.clock, [source], 0.01) == 0


async def test_aid_first_does_not_wait_for_a_source_that_is_down_and_verification_then_confirms_it(
    services: ServiceFactory, centre: Centre
) -> None:
    """Aid first is paid while the centre is down; when it answers, the grant is confirmed. (Emergency aid
    is not means-tested by the rules, so even the undeclared wage of 5200.00 does not undo it; the
    subsistence allowance is refused on it.)"""
    source = http_source(centre, cache_seconds=0)
    async with api_client(services, "eligibility") as client:
        case_id = str(uuid.uuid4())
        centre.mode = "down"
        async with client.runtime.uow() as uow:
            await assessment.assess_application(
                uow, application(case_id, emergency=True), client.runtime.clock, [source], 0.01
            )
            await uow.commit()
        found = await determinations(client, case_id)
        assert list(found) == ["temporary_aid"]
        assert found["temporary_aid"].status == "approved"
        outbox = messaging.outbox
        async with client.runtime.engine.connect() as conn:
            approval = (
                await conn.execute(
                    select(outbox.c.payload).where(
                        outbox.c.kafka_key == case_id, outbox.c.event_type == "eligibility.determination.approved"
                    )
                )
            ).scalar_one()
        assert approval["advance"] is True  # paid before verification: disbursement books it as an advance
        centre.mode = "up"
        async with client.runtime.uow() as uow:
            assert await assessment.retry_verifications_once(uow, client.runtime.clock, [source], 0.01) == 1
            await uow.commit()
        found = await determinations(client, case_id)
        assert found["temporary_aid"].status == "approved"  # decided once, not twice
        assert found["temporary_aid"].reasons[-1]["code"] == "aid_first_confirmed"
        assert found["subsistence_allowance"].outcome == "deny"
        assert "eligibility.determination.confirmed" in await events_of(client, case_id)


async def test_aid_first_the_verified_figures_do_not_support_is_flagged_for_recovery(services: ServiceFactory) -> None:
    """Our step alone, given an answer that refuses temporary aid on the verified figures (as rules that
    means-test emergency aid would): the amount paid is flagged for an officer, with the reasons."""
    async with api_client(services, "eligibility") as client:
        case_id = str(uuid.uuid4())
        async with client.runtime.uow() as uow:  # the grant made while verification waited
            await assessment.assess_application(
                uow, application(case_id, emergency=True), client.runtime.clock, [], 0.01
            )
            await uow.commit()
        refused = {
            "results": [
                {
                    "programme": "temporary_aid",
                    "eligible": False,
                    "aid_first_amount": "0.00",
                    "reasons": [{"code": "no_emergency", "text": "no severe difficulty", "source": "S1 第十五条"}],
                }
            ]
        }
        async with client.runtime.uow() as uow:
            await assessment._settle_aid_first(uow, application(case_id, emergency=True), refused)
            await uow.commit()
        granted = (await determinations(client, case_id))["temporary_aid"]
        assert granted.status == "recovery"
        assert [r["code"] for r in granted.reasons][-2:] == ["no_emergency", "aid_first_not_supported"]
        assert (await events_of(client, case_id))[-1] == "eligibility.determination.flagged"
