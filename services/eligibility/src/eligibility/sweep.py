"""`doudi sweep`: the nightly re-screening of households near the line (政策找人 in bulk).

Near the line: on the low-income margin, refused or stopped within the window, or found by a signal within
it. Each is evaluated again with the rules in force on the sweep's date (a new standard included), in bulk
through the vectorised engine; one that may now qualify for something it does not receive, and whose case is
not being decided, becomes a lead for its community's advisor. Safe to run again for the same date: a
household gets one lead per sweep date.
"""

from __future__ import annotations

import sys
import uuid
from collections import Counter
from datetime import date, timedelta
from typing import Any

from sqlalchemy import or_, select

from eligibility.evaluation import screen
from eligibility.leads import LEAD_NAMESPACE, LEADS
from eligibility.models import Determination, Lead, Verification
from shared.contracts.eligibility import LeadQualified
from shared.db.base import utcnow
from shared.db.uow import UnitOfWork

# What a sweep may find: programmes a household can be led to. Temporary aid needs an emergency, which a
# sweep does not see.
SWEPT = ("subsistence_allowance", "expenditure_hardship", "extreme_poverty", "low_income_margin")
IN_PROCEDURE = ("proposed", "notice", "review")


async def _near_the_line(uow: UnitOfWork, since: date) -> set[str]:
    near = select(Determination.case_id).where(
        or_(
            (Determination.programme == "low_income_margin") & (Determination.status == "approved"),
            Determination.status.in_(("denied", "stopped")) & (Determination.decided_on >= since),
        )
    )
    signalled = select(Lead.case_id).where(Lead.case_id.is_not(None), Lead.found_on >= since)
    cases = set((await uow.session.execute(near)).scalars()) | set((await uow.session.execute(signalled)).scalars())
    deciding = set(
        (
            await uow.session.execute(select(Determination.case_id).where(Determination.status.in_(IN_PROCEDURE)))
        ).scalars()
    )
    return cases - deciding


async def sweep(
    uow: UnitOfWork, as_of: date, *, window_days: int = 365, chunk: int = 5_000, progress: bool = False
) -> dict[str, Any]:
    since = as_of - timedelta(days=window_days)
    cases = sorted(await _near_the_line(uow, since))
    found: Counter[str] = Counter()
    leads = screened = 0
    for start in range(0, len(cases), chunk):
        batch = cases[start : start + chunk]
        households = (
            (await uow.session.execute(select(Verification).where(Verification.case_id.in_(batch)))).scalars().all()
        )
        receiving: dict[str, set[str]] = {}
        for case_id, programme in await uow.session.execute(
            select(Determination.case_id, Determination.programme).where(
                Determination.case_id.in_(batch), Determination.status == "approved"
            )
        ):
            receiving.setdefault(case_id, set()).add(programme)
        requests = [
            (i, {"region": v.region, "as_of": as_of.isoformat(), "household": v.household}, None)
            for i, v in enumerate(households)
        ]
        for i, answer in screen(requests):
            screened += 1
            if "error" in answer:
                continue
            verification = households[i]
            new = [
                p
                for p in SWEPT
                if answer["results"][p]["eligible"] and p not in receiving.get(verification.case_id, set())
            ]
            if new and await _lead(uow, verification, new, as_of):
                leads += 1
                found.update(new)
        await uow.commit()
        if progress:
            print(f"  swept {min(start + chunk, len(cases))}/{len(cases)} households, {leads} leads", file=sys.stderr)  # noqa: T201
    return {
        "as_of": as_of.isoformat(),
        "near_the_line": len(cases),
        "screened": screened,
        "leads": leads,
        "by_programme": dict(found),
    }


async def _lead(uow: UnitOfWork, verification: Verification, programmes: list[str], as_of: date) -> bool:
    lead_id = str(uuid.uuid5(LEAD_NAMESPACE, f"sweep:{verification.case_id}:{as_of.isoformat()}"))
    if await uow.session.get(Lead, lead_id) is not None:
        return False  # this date's sweep already found it
    evidence = [f"re-screened on {as_of.isoformat()} with the rules then in force"]
    evidence += [f"may now qualify for {p}" for p in programmes]
    lead = Lead(
        lead_id=lead_id,
        signal_id=None,
        household_key=verification.case_id,
        case_id=verification.case_id,
        region=verification.region,
        community=verification.community,
        kind="sweep",
        programmes=programmes,
        evidence=evidence,
        found_on=as_of,
        created_at=utcnow(),
    )
    uow.session.add(lead)
    await uow.session.flush()
    await uow.outbox.add(
        LeadQualified(
            lead_id=lead.lead_id,
            household_key=lead.household_key,
            case_id=lead.case_id,
            region=lead.region,
            community=lead.community,
            programmes=programmes,  # type: ignore[arg-type]
            evidence=evidence,
            found_on=as_of,
        ),
        key=lead.household_key,
    )
    LEADS.labels("sweep").inc()
    return True
