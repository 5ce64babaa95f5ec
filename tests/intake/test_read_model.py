"""Every intake handler: delivered twice, effect once; and the read model tolerates events out of order."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select

from intake import read_model, service
from intake.api.schemas import ApplicationCreate
from intake.models import Case, CaseDetermination, CaseEvent, CasePayment, CaseReferral
from intake.settings import vault_for
from shared.contracts import disbursement, eligibility, referral
from shared.contracts.eligibility import Reason
from tests.conftest import ServiceFactory, count, deliver_twice, manual
from tests.factories import TODAY, application


async def new_case(runtime: Any) -> str:
    async with runtime.uow() as uow:
        case = await service.submit_application(
            uow, ApplicationCreate.model_validate(application()), vault_for(runtime.settings)
        )
        await uow.commit()
    return case.case_id


def events_for(case_id: str) -> dict[str, Any]:
    determination_id, payment_id, need_id = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
    provider = {
        "case_id": case_id,
        "referral_id": str(uuid.uuid4()),
        "kind": "counselling",
        "organisation": "pudong-social-work-centre",
    }
    determination = {
        "case_id": case_id,
        "determination_id": determination_id,
        "programme": "subsistence_allowance",
        "region": "310115",
        "decided_on": TODAY,
        "monthly_amount": Decimal("830.00"),
        "reasons": [Reason(code="income_below_standard")],
    }
    payment = {
        "case_id": case_id,
        "payment_id": payment_id,
        "determination_id": determination_id,
        "programme": "subsistence_allowance",
        "period": "2026-12",
        "amount": Decimal("830.00"),
    }
    return {
        "eligibility.verification.completed": eligibility.VerificationCompleted(
            case_id=case_id,
            verification_id=str(uuid.uuid4()),
            sources=["declared"],
            counted_members=2,
            counted_monthly_income=Decimal("800.00"),
            per_capita_monthly_income=Decimal("400.00"),
        ),
        "eligibility.determination.proposed": eligibility.DeterminationProposed(**determination, decision_due=TODAY),
        "eligibility.determination.noticed": eligibility.DeterminationNoticed(**determination, notice_ends_on=TODAY),
        "eligibility.determination.objected": eligibility.DeterminationObjected(**determination),
        "eligibility.determination.approved": eligibility.DeterminationApproved(**determination),
        "eligibility.determination.denied": eligibility.DeterminationDenied(**determination),
        "eligibility.determination.confirmed": eligibility.DeterminationConfirmed(**determination),
        "eligibility.determination.flagged": eligibility.DeterminationFlagged(
            **determination, recoverable_amount=Decimal("1000.00")
        ),
        "disbursement.payment.instructed": disbursement.PaymentInstructed(**payment),
        "disbursement.payment.settled": disbursement.PaymentSettled(**payment, bank_reference="R1"),
        "disbursement.payment.failed": disbursement.PaymentFailed(**payment, reason="closed"),
        "disbursement.payment.returned": disbursement.PaymentReturned(**payment, reason="frozen"),
        "disbursement.payment.recovery_opened": disbursement.RecoveryOpened(**payment, reason="not supported"),
        "disbursement.payment.recovery_closed": disbursement.RecoveryClosed(
            **payment, outcome="waived", note="hardship"
        ),
        "eligibility.verification.delayed": eligibility.VerificationDelayed(
            case_id=case_id,
            reason="verification_centre: answered 503 (after 3 attempts)",
            sources_down=["verification_centre"],
            attempts=1,
            next_attempt_at=service.utcnow(),
        ),
        "referral.need.published": referral.NeedPublished(
            case_id=case_id, need_id=need_id, category="food", area="310115"
        ),
        "referral.need.claimed": referral.NeedClaimed(
            case_id=case_id, need_id=need_id, organisation="pudong-charity-federation"
        ),
        "referral.need.delivered": referral.NeedDelivered(
            case_id=case_id, need_id=need_id, organisation="pudong-charity-federation", amount=Decimal("300.00")
        ),
        "referral.need.matched": referral.NeedMatched(
            case_id=case_id,
            need_id=str(uuid.uuid4()),
            offer_id=str(uuid.uuid4()),
            organisation="shanghai-medical-aid-fund",
            category="medical",
            area="310115",
            amount=Decimal("500.00"),
        ),
        "referral.service.referred": referral.ServiceReferred(**provider, area="310115", reason="requested"),
        "referral.service.accepted": referral.ServiceAccepted(**provider, note="周三面谈"),
        "referral.service.declined": referral.ServiceDeclined(**provider, note="已满"),
        "referral.service.completed": referral.ServiceCompleted(**provider, outcome="三次面谈"),
        "referral.service.missed": referral.ServiceMissed(**provider),
    }


ROWS = {
    "eligibility.determination": CaseDetermination,
    "disbursement.payment": CasePayment,
    "referral.need": CaseReferral,
    "referral.service": CaseReferral,
}
# A step updates the row its referral's first event made (same topic, same key: it never arrives first).
STEPS = (
    "referral.need.claimed",
    "referral.need.delivered",
    "referral.service.accepted",
    "referral.service.declined",
    "referral.service.completed",
    "referral.service.missed",
)


@pytest.mark.parametrize("event_type", list(events_for("x")))
async def test_each_event_delivered_twice_is_recorded_once(services: ServiceFactory, event_type: str) -> None:
    from intake.handlers import HANDLERS

    assert event_type in HANDLERS
    async with manual(services, "intake") as runtime:
        case_id = await new_case(runtime)
        await deliver_twice(runtime, events_for(case_id)[event_type], key=case_id)
        assert await count(runtime, CaseEvent, CaseEvent.case_id == case_id, CaseEvent.event_type == event_type) == 1
        row = ROWS.get(event_type.rsplit(".", 1)[0])
        if row is not None:  # a step alone adds no row
            assert await count(runtime, row, row.case_id == case_id) == (0 if event_type in STEPS else 1)


async def test_a_settlement_that_overtakes_its_instruction_is_not_undone(services: ServiceFactory) -> None:
    async with manual(services, "intake") as runtime:
        case_id = await new_case(runtime)
        events = events_for(case_id)
        for event_type in (
            "disbursement.payment.settled",
            "disbursement.payment.instructed",
            "eligibility.determination.approved",
            "eligibility.determination.proposed",
        ):
            async with runtime.uow() as uow:
                await read_model.record_event(
                    uow,
                    events[event_type],
                    event_id=str(uuid.uuid4()),
                    source="/tests",
                    occurred_at=service.utcnow(),
                )
                await uow.commit()
        async with runtime.sessionmaker() as session:
            payment = (await session.execute(select(CasePayment).where(CasePayment.case_id == case_id))).scalar_one()
            case = await session.get(Case, case_id)
            determination = (
                await session.execute(select(CaseDetermination).where(CaseDetermination.case_id == case_id))
            ).scalar_one()
        assert payment.status == "settled"
        assert determination.status == "approved"
        assert case.status == "approved"


async def test_an_advance_owed_back_shows_on_its_payment_until_it_is_settled(services: ServiceFactory) -> None:
    async with manual(services, "intake") as runtime:
        case_id = await new_case(runtime)
        events = events_for(case_id)
        seen = []
        for event_type in (
            "disbursement.payment.instructed",
            "disbursement.payment.settled",
            "disbursement.payment.recovery_opened",
            "disbursement.payment.recovery_closed",
            "disbursement.payment.settled",  # a late repeat of the bank's word changes nothing
        ):
            async with runtime.uow() as uow:
                await read_model.record_event(
                    uow, events[event_type], event_id=str(uuid.uuid4()), source="/tests", occurred_at=service.utcnow()
                )
                await uow.commit()
            async with runtime.sessionmaker() as session:
                payment = (
                    await session.execute(select(CasePayment).where(CasePayment.case_id == case_id))
                ).scalar_one()
            seen.append((payment.status, payment.reason))
        assert seen == [
            ("pending", None),
            ("settled", None),
            ("owed_back", "not supported"),
            ("waived", "waived 830.00: hardship"),
            ("waived", "waived 830.00: hardship"),
        ]
        assert payment.amount == Decimal("830.00")


async def test_the_case_follows_the_procedure_and_shows_its_dates(services: ServiceFactory) -> None:
    """proposed (decision due) → notice (ends on) → review (objection) → notice → approved."""
    from datetime import timedelta

    async with manual(services, "intake") as runtime:
        case_id = await new_case(runtime)
        events = events_for(case_id)
        seen = []
        for event_type in (
            "eligibility.determination.proposed",
            "eligibility.determination.noticed",
            "eligibility.determination.objected",
            "eligibility.determination.noticed",
            "eligibility.determination.approved",
        ):
            async with runtime.uow() as uow:
                await read_model.record_event(
                    uow, events[event_type], event_id=str(uuid.uuid4()), source="/tests", occurred_at=service.utcnow()
                )
                await uow.commit()
            async with runtime.sessionmaker() as session:
                case = await session.get(Case, case_id)
                row = (
                    await session.execute(select(CaseDetermination).where(CaseDetermination.case_id == case_id))
                ).scalar_one()
            seen.append((case.status, row.status, row.decision_due, row.notice_ends_on))
        assert seen == [
            ("proposed", "proposed", TODAY, None),
            ("notice", "notice", TODAY, TODAY),
            ("review", "review", TODAY, None),
            ("notice", "notice", TODAY, TODAY),
            ("approved", "approved", TODAY, TODAY),
        ]
        from intake.domain import is_overdue

        assert not is_overdue("approved", TODAY, TODAY + timedelta(days=90))
        assert is_overdue("review", TODAY, TODAY + timedelta(days=1))
        assert not is_overdue("review", TODAY, TODAY)


async def test_the_case_shows_a_delayed_verification_until_it_completes(services: ServiceFactory) -> None:
    async with manual(services, "intake") as runtime:
        case_id = await new_case(runtime)
        events = events_for(case_id)

        async def apply(event_type: str) -> dict[str, Any] | None:
            async with runtime.uow() as uow:
                await read_model.record_event(
                    uow, events[event_type], event_id=str(uuid.uuid4()), source="/tests", occurred_at=service.utcnow()
                )
                await uow.commit()
            async with runtime.sessionmaker() as session:
                case = await session.get(Case, case_id)
                return case.verification if case else None

        delayed = await apply("eligibility.verification.delayed")
        assert delayed is not None
        assert (delayed["status"], delayed["sources_down"]) == ("delayed", ["verification_centre"])
        assert "503" in delayed["reason"]
        completed = await apply("eligibility.verification.completed")
        assert completed is not None
        assert (completed["status"], completed["sources"]) == ("completed", ["declared"])
        late = await apply("eligibility.verification.delayed")  # a stale delay never hides the completed test
        assert late is not None
        assert late["status"] == "completed"


async def test_a_service_referral_shows_its_provider_steps_and_outcome(services: ServiceFactory) -> None:
    async with manual(services, "intake") as runtime:
        case_id = await new_case(runtime)
        events = events_for(case_id)
        seen = []
        for event_type in (
            "referral.service.referred",
            "referral.service.accepted",
            "referral.service.completed",
            "referral.service.accepted",  # a stale step (a replay) never reopens what was completed
        ):
            async with runtime.uow() as uow:
                await read_model.record_event(
                    uow, events[event_type], event_id=str(uuid.uuid4()), source="/tests", occurred_at=service.utcnow()
                )
                await uow.commit()
            async with runtime.sessionmaker() as session:
                row = (await session.execute(select(CaseReferral).where(CaseReferral.case_id == case_id))).scalar_one()
            seen.append((row.kind, row.category, row.status, row.organisation, row.outcome))
        provider = "pudong-social-work-centre"
        assert seen == [
            ("service", "counselling", "referred", provider, ""),
            ("service", "counselling", "accepted", provider, "周三面谈"),
            ("service", "counselling", "completed", provider, "三次面谈"),
            ("service", "counselling", "completed", provider, "三次面谈"),
        ]


async def test_a_service_referral_nobody_covers_shows_unassigned(services: ServiceFactory) -> None:
    async with manual(services, "intake") as runtime:
        case_id = await new_case(runtime)
        event = referral.ServiceReferred(
            case_id=case_id, referral_id=str(uuid.uuid4()), kind="shelter", area="310112", reason="requested"
        )
        async with runtime.uow() as uow:
            await read_model.record_event(
                uow, event, event_id=str(uuid.uuid4()), source="/tests", occurred_at=service.utcnow()
            )
            await uow.commit()
        async with runtime.sessionmaker() as session:
            row = (await session.execute(select(CaseReferral).where(CaseReferral.case_id == case_id))).scalar_one()
        assert (row.category, row.status, row.organisation, row.reason) == ("shelter", "unassigned", None, "requested")


async def test_a_matched_offer_claims_the_published_need_or_adds_one(services: ServiceFactory) -> None:
    async with manual(services, "intake") as runtime:
        case_id = await new_case(runtime)
        events = events_for(case_id)
        published = events["referral.need.published"]
        on_published = referral.NeedMatched(
            case_id=case_id,
            need_id=published.need_id,
            offer_id=str(uuid.uuid4()),
            organisation="pudong-charity-federation",
            category="food",
            area="310115",
        )
        for event in (published, on_published, events["referral.need.matched"]):
            async with runtime.uow() as uow:
                await read_model.record_event(
                    uow, event, event_id=str(uuid.uuid4()), source="/tests", occurred_at=service.utcnow()
                )
                await uow.commit()
        async with runtime.sessionmaker() as session:
            rows = (await session.execute(select(CaseReferral).where(CaseReferral.case_id == case_id))).scalars()
            seen = sorted((r.kind, r.category, r.status, r.organisation, r.amount) for r in rows)
        assert seen == [
            ("charity_need", "food", "claimed", "pudong-charity-federation", None),
            ("charity_offer", "medical", "claimed", "shanghai-medical-aid-fund", Decimal("500.00")),
        ]


def test_a_case_whose_aid_has_all_stopped_has_exited() -> None:
    from intake.domain import CLOSED_STATUSES, case_status

    assert case_status(True, ["stopped"]) == "exited"
    assert case_status(True, ["stopped", "denied"]) == "exited"
    assert case_status(True, ["stopped", "approved"]) == "approved"  # other aid goes on
    assert case_status(True, ["stopped", "proposed"]) == "proposed"  # something is still being decided
    assert case_status(True, ["stopped", "recovery"]) == "verified"  # an advance owed back is still open
    assert "exited" in CLOSED_STATUSES  # its members are released


async def test_the_case_view_waits_for_a_change_in_flight_and_shows_all_of_it(services: ServiceFactory) -> None:
    """A case view is read from several tables; on PostgreSQL each statement has its own snapshot, so without
    a lock a change committed between two of them showed a stopped determination on a case still 'approved'
    (seen in CI). The view now waits for the change and shows it whole."""
    from shared.auth import Principal

    async with manual(services, "intake") as runtime:
        case_id = await new_case(runtime)
        events = events_for(case_id)
        async with runtime.uow() as uow:
            approved = events["eligibility.determination.approved"]
            await read_model.record_event(
                uow, approved, event_id=str(uuid.uuid4()), source="/tests", occurred_at=service.utcnow()
            )
            await uow.commit()
        stopped = eligibility.DeterminationStopped(**approved.model_dump(exclude={"event_type"}), last_period="2026-12")
        async with runtime.uow() as writer:
            await read_model.record_event(
                writer, stopped, event_id=str(uuid.uuid4()), source="/tests", occurred_at=service.utcnow()
            )

            async def view() -> tuple[str, list[str]]:
                async with runtime.uow() as uow:
                    seen = await service.get_case(uow, case_id, Principal("li", "advisor", "310115"))
                    await uow.commit()
                return seen["case"].status, [d.status for d in seen["determinations"]]

            reading = asyncio.create_task(view())
            await asyncio.sleep(0.5)
            assert not reading.done(), "the view did not wait for the change in flight"
            await writer.commit()
        assert await asyncio.wait_for(reading, 10) == ("exited", ["stopped"])
