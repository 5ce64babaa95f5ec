"""The phase-out after employment (渐退): a subsistence-allowance household a review finds over the standard
because a member found work keeps its aid, unchanged, through the phase-out's last month, then it stops;
in Shanghai only if the household reported the work itself. Review dates come from the injectable clock.
Real database; an HTTP verification centre where a source finds the wage."""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from eligibility import assessment, decisions, lifecycle, workflow
from eligibility.models import Determination, messaging
from shared.clock import Clock
from shared.contracts.intake import ApplicationReviewed, ApplicationSubmitted, ApplicationWithdrawn, HouseholdFacts
from tests.conftest import ServiceFactory, api_client, token
from tests.eligibility.centre import Centre
from tests.eligibility.test_verification import KEY, http_source

COUPLE: list[dict[str, Any]] = [
    {"ref": "m1", "relationship": "applicant", "birth_date": "1980-05-01", "hukou_region": "310115"},
    {"ref": "m2", "relationship": "spouse", "birth_date": "1982-07-12", "hukou_region": "310115"},
]


def household(region: str, *, wages: dict[str, str] | None = None, key: str | None = None) -> dict[str, Any]:
    hukou = "331002" if region.startswith("33") else "310115"
    members = [dict(m, hukou_region=hukou) for m in COUPLE]
    for member in members:
        wage = (wages or {}).get(member["ref"])
        member["incomes"] = [{"kind": "wage", "monthly": wage}] if wage else []
    members[1]["person_key"] = key
    return {"members": members}


async def approved(client: Any, services: ServiceFactory, tmp_path: Path, region: str = "310115") -> Determination:
    """A couple with no income at all, approved for the allowance and past its public notice."""
    case_id = str(uuid.uuid4())
    application = ApplicationSubmitted(
        case_id=case_id,
        region=region,
        channel="window",
        programmes=["subsistence_allowance"],
        household=HouseholdFacts.model_validate(household(region)),
        submitted_at=date(2021, 8, 13),
        payee_account="6222021001112223",
        filed_by="window-clerk-1",
    )
    async with client.runtime.uow() as uow:
        await assessment.assess_application(uow, application, client.runtime.clock)
        await uow.commit()
    async with client.runtime.sessionmaker() as session:
        allowance = (
            await session.execute(
                select(Determination).where(
                    Determination.case_id == case_id, Determination.programme == "subsistence_allowance"
                )
            )
        ).scalar_one()
    officer = {"Authorization": f"Bearer {token(services.data_dir, 'officer', region, 'officer-wang')}"}
    response = await client.post(f"/v1/determinations/{allowance.determination_id}/approve", headers=officer)
    assert response.status_code == 200, response.text
    clock = Clock(tmp_path / "notice-offset")
    clock.advance(timedelta(days=8))
    async with client.runtime.uow() as uow:
        await decisions.close_notices_once(uow, clock)
        await uow.commit()
    async with client.runtime.sessionmaker() as session:
        found = await session.get(Determination, allowance.determination_id)
    assert found is not None
    assert found.status == "approved"
    return found


def review_on(
    clock: Clock, case_id: str, region: str, *, kind: str = "change_reported", **facts: Any
) -> ApplicationReviewed:
    """The review as intake sends it: dated by the (movable) clock's today."""
    return ApplicationReviewed(
        case_id=case_id,
        region=region,
        household=HouseholdFacts.model_validate(household(region, **facts)),
        reviewed_on=clock.today(),
        kind=kind,  # type: ignore[arg-type]
    )


async def reviewed(client: Any, event: ApplicationReviewed, sources: Any = ()) -> Determination:
    async with client.runtime.uow() as uow:
        await lifecycle.review_case(uow, event, sources, 0.01)
        await uow.commit()
    async with client.runtime.sessionmaker() as session:
        return (
            await session.execute(
                select(Determination).where(
                    Determination.case_id == event.case_id, Determination.programme == "subsistence_allowance"
                )
            )
        ).scalar_one()


async def stopped_event(client: Any, case_id: str) -> dict[str, Any]:
    outbox = messaging.outbox
    async with client.runtime.engine.connect() as conn:
        return (
            await conn.execute(
                select(outbox.c.payload)
                .where(outbox.c.kafka_key == case_id, outbox.c.event_type == "eligibility.determination.stopped")
                .order_by(outbox.c.seq.desc())
                .limit(1)
            )
        ).scalar_one()


@pytest.fixture
def clock(tmp_path: Path) -> Clock:
    """A review clock moved to a known day: 2027-03-10 (Beijing)."""
    moving = Clock(tmp_path / "review-offset")
    target = date(2027, 3, 10)
    moving.advance(timedelta(days=(target - moving.today()).days))
    assert moving.today() == target
    return moving


class TestPhaseOut:
    async def test_new_work_reported_by_the_household_keeps_the_aid_unchanged_through_the_phase_out(
        self, services: ServiceFactory, tmp_path: Path, clock: Clock
    ) -> None:
        async with api_client(services, "eligibility") as client:
            before = await approved(client, services, tmp_path)
            event = review_on(clock, before.case_id, "310115", wages={"m2": "4000.00"})
            after = await reviewed(client, event)
            # Per capita 2,000.00 is over the 1,650.00 standard: no longer eligible, but the cause is m2's new
            # wage. Six months after March 2027: paid, unchanged, through September 2027, then stopped.
            assert (after.status, after.last_period) == ("stopped", "2027-09")
            assert after.monthly_amount == before.monthly_amount
            assert after.review_due is None
            why = after.reasons[-1]
            assert why["code"] == "phase_out_after_employment"
            assert "m2 found work (4000.00 a month" in why["text"]
            assert "through 2027-09 (6 months' phase-out" in why["text"]
            assert "第三十三条" in why["source"]
            assert "上海市社会救助条例 第二十七条第二款" in why["source"]
            assert [r["code"] for r in after.reasons][:1] == ["income_not_below_standard"]
            payload = await stopped_event(client, before.case_id)
            assert payload["last_period"] == "2027-09"
            assert payload["monthly_amount"] == f"{before.monthly_amount:.2f}"

    async def test_moving_the_clock_moves_the_phase_outs_last_month(
        self, services: ServiceFactory, tmp_path: Path, clock: Clock
    ) -> None:
        async with api_client(services, "eligibility") as client:
            before = await approved(client, services, tmp_path)
            clock.advance(timedelta(days=300))  # 2028-01-04: six months on is July 2028
            after = await reviewed(client, review_on(clock, before.case_id, "310115", wages={"m2": "4000.00"}))
            assert clock.today() == date(2028, 1, 4)
            assert after.last_period == "2028-07"

    async def test_in_shanghai_work_the_household_did_not_report_stops_the_aid_at_once(
        self, services: ServiceFactory, tmp_path: Path, clock: Clock
    ) -> None:
        async with api_client(services, "eligibility") as client:
            before = await approved(client, services, tmp_path)
            event = review_on(clock, before.case_id, "310115", kind="scheduled", wages={"m2": "4000.00"})
            after = await reviewed(client, event)
            assert (after.status, after.last_period) == ("stopped", "2027-03")
            assert after.reasons[-1]["code"] == "phase_out_not_reported"
            assert "主动申报" in after.reasons[-1]["source"]
            assert (await stopped_event(client, before.case_id))["last_period"] == "2027-03"

    async def test_a_wage_only_the_sources_found_was_not_reported(
        self, services: ServiceFactory, tmp_path: Path, clock: Clock
    ) -> None:
        centre = Centre({KEY: {"incomes": {"wage": "5200.00"}}})
        try:
            async with api_client(services, "eligibility") as client:
                before = await approved(client, services, tmp_path)
                event = review_on(clock, before.case_id, "310115", key=KEY)  # declares no work at all
                after = await reviewed(client, event, [http_source(centre)])
        finally:
            centre.close()
        assert (after.status, after.last_period) == ("stopped", "2027-03")
        codes = [r["code"] for r in after.reasons]
        assert "verified_differs_from_declared" in codes
        assert codes[-1] == "phase_out_not_reported"

    async def test_where_no_report_is_required_a_scheduled_review_finding_new_work_phases_out(
        self, services: ServiceFactory, tmp_path: Path, clock: Clock
    ) -> None:
        async with api_client(services, "eligibility") as client:
            before = await approved(client, services, tmp_path, region="331002")  # Taizhou, Zhejiang
            event = review_on(clock, before.case_id, "331002", kind="scheduled", wages={"m2": "4000.00"})
            after = await reviewed(client, event)
            assert (after.status, after.last_period) == ("stopped", "2027-09")
            assert after.reasons[-1]["code"] == "phase_out_after_employment"
            assert "浙江省社会救助条例 第五十条" in after.reasons[-1]["source"]

    @pytest.mark.parametrize(
        ("wages", "why"),
        [
            ({"m1": "4000.00"}, "a raise of a wage that was there before is not new work"),
            ({"m1": "3400.00", "m2": "600.00"}, "m2 found work, but m1's raise alone takes it over the line"),
        ],
    )
    async def test_no_phase_out_when_the_cause_is_not_new_work(
        self, services: ServiceFactory, tmp_path: Path, clock: Clock, wages: dict[str, str], why: str
    ) -> None:
        async with api_client(services, "eligibility") as client:
            before = await approved(client, services, tmp_path)
            first = await reviewed(client, review_on(clock, before.case_id, "310115", wages={"m1": "100.00"}))
            assert first.status == "approved"  # m1 earns a little: still eligible, a smaller amount
            after = await reviewed(client, review_on(clock, before.case_id, "310115", wages=wages))
            assert (after.status, after.last_period) == ("stopped", "2027-03"), why
            assert after.reasons[-1]["code"] == "no_longer_eligible", why

    async def test_a_withdrawal_during_the_phase_out_ends_it_after_the_month_of_withdrawal(
        self, services: ServiceFactory, tmp_path: Path, clock: Clock
    ) -> None:
        async with api_client(services, "eligibility") as client:
            before = await approved(client, services, tmp_path)
            await reviewed(client, review_on(clock, before.case_id, "310115", wages={"m2": "4000.00"}))
            async with client.runtime.uow() as uow:
                await lifecycle.withdraw_case(
                    uow, ApplicationWithdrawn(case_id=before.case_id, region="310115", withdrawn_on=date(2027, 5, 20))
                )
                await uow.commit()
            async with client.runtime.sessionmaker() as session:
                after = await session.get(Determination, before.determination_id)
            assert after is not None
            assert (after.status, after.last_period) == ("stopped", "2027-05")
            assert after.reasons[-1]["code"] == "withdrawn_by_applicant"
            assert (await stopped_event(client, before.case_id))["last_period"] == "2027-05"


def test_every_regions_phase_out_is_within_the_national_ceiling() -> None:
    """S10: 原则上不超过6个月 — the periods the parameters give never exceed the ceiling they also hold."""
    from eligibility.params import catalogue

    data = catalogue()
    for region in set(data.regions) - {"000000"}:  # every region with a standard of its own or inherited
        on = date(2027, 1, 1)
        resolved = data.resolve(region, on)
        rule = workflow.phase_out(region, on)
        assert rule is not None, region
        assert rule.months <= int(resolved["case_management.phase_out_max_months"].value), region
    assert workflow.periods_after(date(2027, 8, 31), 6) == "2028-02"
    assert workflow.periods_after(date(2027, 3, 10), 0) == "2027-03"
