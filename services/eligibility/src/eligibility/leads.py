"""Policy finds the person (政策找人): a signal about someone is pre-screened on what is known of their
household (verified against the data sources where they know its people), adjusted by what the signal
says; a household that may now qualify for something it does not receive becomes a lead for the
community's advisor. A household nobody knows is always worth a visit."""

from __future__ import annotations

import copy
import uuid
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from prometheus_client import Counter
from sqlalchemy import select

from eligibility import verification
from eligibility.evaluation import EvaluationRefused, evaluate_request
from eligibility.models import Determination, Lead
from eligibility.sources import Source
from shared.contracts.eligibility import LeadQualified
from shared.contracts.intake import SignalReceived
from shared.db.base import utcnow
from shared.db.uow import UnitOfWork
from shared.logging import get_logger

log = get_logger(__name__)
LEADS = Counter("doudi_leads_qualified_total", "Households a signal showed may qualify", ["kind"])
LEAD_NAMESPACE = uuid.UUID("0b7f3c52-1e6a-4f0e-a1d4-5c8e9b2a7d31")
IN_PROCEDURE = frozenset({"submitted", "verified", "proposed", "notice", "review"})
EARNED = frozenset({"wage", "business"})


def adjusted(household: dict[str, Any], signal: SignalReceived) -> dict[str, Any]:
    """The household as the signal says it now is (an interpretation, stated per kind)."""
    facts = copy.deepcopy(household)
    members = facts.get("members", [])
    named = next((m for m in members if m.get("ref") == signal.member_ref), None)
    emergency = {"occurred_on": signal.occurred_on.isoformat(), "region": signal.region}
    if signal.kind == "unemployment" and named is not None:  # the earned income is gone
        named["incomes"] = [i for i in named.get("incomes", []) if i.get("kind") not in EARNED]
    elif signal.kind == "earner_death" and named is not None and len(members) > 1:
        facts["members"] = [m for m in members if m is not named]
    elif signal.kind in ("hospitalisation", "medical_bill"):
        facts["emergency"] = {"kind": "sudden_illness", **emergency}
        if signal.amount:  # a bill spread over a year of rigid medical spending
            spending = facts.setdefault("expenditures", {})
            monthly = Decimal(str(spending.get("medical_monthly", "0"))) + signal.amount / 12
            spending["medical_monthly"] = str(monthly.quantize(Decimal("0.01")))
    elif signal.kind == "disaster":
        facts["emergency"] = {"kind": "disaster", **emergency}
    return facts


async def _verified(household: dict[str, Any], sources: Sequence[Source]) -> tuple[dict[str, Any], str]:
    """The household with its figures verified where a source knows its people (verification.py), and what
    the screen rests on, in words. A lead only sends an advisor to visit, so a source that cannot answer
    does not hold the screen up: it runs on the figures intake holds, and says so."""
    try:
        report = await verification.verify(household, sources)
    except verification.VerificationPending as pending:
        return (
            household,
            f"screened on the signal's figures (what intake holds); the sources could not answer: {pending}",
        )
    known = [e for e in report.evidence if e.members_found]
    if not known:
        return (
            household,
            "screened on the signal's figures (what intake holds): no verification source knows these people",
        )
    shown = ", ".join(
        f"{e.source} (data as of {e.data_as_of.isoformat() if e.data_as_of else 'unknown'})" for e in known
    )
    said = f"screened on figures verified by {shown}"
    if report.differences:
        said += "; they differ from what intake holds: " + "; ".join(report.discrepancies())
    return report.household, said


async def prescreen(uow: UnitOfWork, signal: SignalReceived, sources: Sequence[Source] = ()) -> Lead | None:
    """Decide whether the signal makes a lead; record and publish it if so. A known household is screened on
    its figures verified against the data sources where they know its people, with the signal's news on top."""
    evidence = [f"{signal.kind} reported by {signal.source} on {signal.occurred_on.isoformat()}"]
    programmes: list[str] = []
    if signal.household is None:
        evidence.append("the household is not known here: a visit finds out what it needs")
    elif signal.case_status in IN_PROCEDURE:
        log.info("lead_not_needed", signal_id=signal.signal_id, reason="the case is already being decided")
        return None
    else:
        known, screened_on = await _verified(signal.household.model_dump(mode="json"), sources)
        evidence.append(screened_on)
        facts = adjusted(known, signal)  # the signal is news the sources may not hold yet: it applies last
        request = {"region": signal.region, "as_of": signal.occurred_on.isoformat(), "household": facts}
        try:
            answer = evaluate_request(request, with_trace=False)
        except EvaluationRefused as exc:  # e.g. a date before any parameter: a visit still makes sense
            evidence.append(f"could not pre-screen: {exc.detail}")
            answer = {"results": []}
        receiving = set(
            (
                await uow.session.execute(
                    select(Determination.programme).where(
                        Determination.case_id == signal.case_id, Determination.status == "approved"
                    )
                )
            ).scalars()
        )
        programmes = [r["programme"] for r in answer["results"] if r["eligible"] and r["programme"] not in receiving]
        if answer["results"] and not programmes:
            log.info("lead_not_needed", signal_id=signal.signal_id, reason="qualifies for nothing new")
            return None
        evidence += [f"may now qualify for {p}" for p in programmes]
    lead = Lead(
        lead_id=str(uuid.uuid5(LEAD_NAMESPACE, signal.signal_id)),
        signal_id=signal.signal_id,
        household_key=signal.household_key,
        case_id=signal.case_id,
        region=signal.region,
        community=signal.community,
        kind=signal.kind,
        programmes=programmes,
        evidence=evidence,
        found_on=signal.occurred_on,
        created_at=utcnow(),
    )
    uow.session.add(lead)
    await uow.outbox.add(
        LeadQualified(
            lead_id=lead.lead_id,
            signal_id=lead.signal_id,
            household_key=lead.household_key,
            case_id=lead.case_id,
            region=lead.region,
            community=lead.community,
            programmes=programmes,  # type: ignore[arg-type]
            evidence=evidence,
            found_on=lead.found_on,
        ),
        key=lead.household_key,
    )
    LEADS.labels(lead.kind).inc()
    return lead
