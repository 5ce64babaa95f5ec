"""`doudi recompute --from YYYY-MM-DD`: when a standard changes from a date, every approved monthly amount is
computed again with the rules in force on that date, and changed from the month it takes effect.

The new standard is data (params/*.toml, from its effective date); this job applies it to households that
already receive aid, the way `doudi sweep` applies it to those near the line. Each household is evaluated on
its verified facts as the latest review left them, in bulk through the vectorised engine. An amount that
differs becomes a `DeterminationChanged` from the effective month (disbursement pays the new amount from that
period on, and amends instructions the bank has not seen). A household the new rules no longer qualify is not
stopped here: stopping is a review's decision (S5 第三十二条), so it is reported for one. Safe to run again:
an amount already at the new figure is left alone.
"""

from __future__ import annotations

import sys
from collections import Counter
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from eligibility import domain
from eligibility.evaluation import evaluate_request, screen
from eligibility.models import Determination, Verification
from eligibility.service import common_fields
from shared.contracts.eligibility import DeterminationChanged, Reason
from shared.db.base import utcnow
from shared.db.uow import UnitOfWork

SOURCE = "最低生活保障标准 adjusted by the city from a date (e.g. S15: from 2016-04-01, 790 → 880)"


def effective_period(effective: date) -> str:
    """The first month paid at the new amount: the effective date's month when the standard applies from the
    1st (as they do), else the month after (a month is paid at one amount)."""
    if effective.day != 1:
        year, month = (effective.year + 1, 1) if effective.month == 12 else (effective.year, effective.month + 1)
        return f"{year:04d}-{month:02d}"
    return f"{effective.year:04d}-{effective.month:02d}"


async def recompute(uow: UnitOfWork, effective: date, *, chunk: int = 5_000, progress: bool = False) -> dict[str, Any]:
    """Re-compute every approved monthly determination as of `effective`; commits per chunk."""
    session = uow.session
    period = effective_period(effective)
    ids = list(
        (
            await session.execute(
                select(Determination.determination_id)
                .where(Determination.status == "approved", Determination.payment_kind == "monthly")
                .order_by(Determination.determination_id)
            )
        ).scalars()
    )
    outcome: Counter[str] = Counter()
    for start in range(0, len(ids), chunk):
        rows = (
            await session.execute(
                select(Determination, Verification)
                .join(Verification, Verification.case_id == Determination.case_id)
                .where(Determination.determination_id.in_(ids[start : start + chunk]))
                .with_for_update()
            )
        ).all()
        requests = [
            (i, {"region": d.region, "as_of": effective.isoformat(), "household": v.household}, None)
            for i, (d, v) in enumerate(rows)
        ]
        for i, answer in screen(requests):
            determination: Determination = rows[i][0]
            if "error" in answer:
                outcome["cannot_evaluate"] += 1
                continue
            quick = answer["results"][determination.programme]  # the bulk engine: figures and reason codes
            if not quick["eligible"] or Decimal(quick["monthly_amount"]) <= 0:
                outcome["review_needed"] += 1
            elif Decimal(quick["monthly_amount"]) == determination.monthly_amount:
                outcome["unchanged"] += 1
            else:  # explained in full (reasons with their texts and articles) only where the amount changes
                request = {
                    "region": determination.region,
                    "as_of": effective.isoformat(),
                    "household": rows[i][1].household,
                }
                full = evaluate_request(request, with_trace=True)
                result = next(r for r in full["results"] if r["programme"] == determination.programme)
                outcome[await _apply(uow, determination, domain.decision_from(result), effective, period)] += 1
        await uow.commit()
        if progress:
            done = min(start + chunk, len(ids))
            print(f"  re-computed {done}/{len(ids)} approved amounts, {outcome['changed']} changed", file=sys.stderr)  # noqa: T201
    return {
        "effective": effective.isoformat(),
        "from_period": period,
        "approved_monthly": len(ids),
        "changed": outcome["changed"],
        "unchanged": outcome["unchanged"],
        "review_needed": outcome["review_needed"],
        "cannot_evaluate": outcome["cannot_evaluate"],
    }


async def _apply(
    uow: UnitOfWork, determination: Determination, decision: domain.Decision, effective: date, period: str
) -> str:
    if not decision.eligible or decision.payment_kind != "monthly" or decision.monthly_amount is None:
        return "review_needed"
    if decision.monthly_amount == determination.monthly_amount:
        return "unchanged"
    previous = determination.monthly_amount or Decimal("0.00")
    why = Reason(
        code="standard_changed",
        text=f"the standard in force from {effective.isoformat()} gives {decision.monthly_amount:.2f} a month "
        f"(was {previous:.2f}) from {period}",
        source=SOURCE,
    )
    determination.monthly_amount = decision.monthly_amount
    determination.reasons = [*(r.model_dump() for r in decision.reasons), why.model_dump()]
    determination.decided_on = effective
    determination.updated_at = utcnow()
    await uow.outbox.add(
        DeterminationChanged(**common_fields(determination), previous_monthly_amount=previous, from_period=period),
        key=determination.case_id,
    )
    return "changed"
