"""The procedure a determination follows (最低生活保障审核确认办法, S5; 上海市社会救助条例, S1):

    proposed ──officer approves a grant──▶ notice ──7 days, no objection──▶ approved
        │                                    │
        │                                    └──objection──▶ review ──officer approves──▶ notice (again)
        │   (a withdrawal before the end: withdrawn; approved monthly aid: stopped after that month)
        ├──officer approves a refusal, or rejects a grant──▶ denied (written notice due in 3 working days)
    review ──officer rejects──▶ denied

An emergency's "aid first" amount skips the procedure: approved at once, verification follows (S8, S9 §15).
Whoever filed the case may not approve or reject its determinations (maker-checker).
Pure functions of the determination's state, the parameters in force and the working-day calendar.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from eligibility.params import ParameterError, catalogue
from shared.workdays import calendar

PROCEDURE_SOURCE = "最低生活保障审核确认办法 第十九条至第二十二条"
REFUSAL_SOURCE = "最低生活保障审核确认办法 第二十一条: 不予确认同意……书面告知申请人并说明理由"
# A household may leave at its own request (as 特困人员认定办法 lists 自愿申请退出); a stop is decided and
# told with its reason (最低生活保障审核确认办法 第三十二条).
WITHDRAWAL_SOURCE = "最低生活保障审核确认办法 第三十二条 (停发决定告知并说明理由); at the household's own request"
OPEN = frozenset({"proposed", "review"})  # waiting for an officer
FINAL = frozenset({"approved", "denied"})


class StepRefused(Exception):
    """This step is not open to the determination in its present state."""


def _figure(region: str, on: date, name: str, default: int) -> int:
    try:
        resolved = catalogue().resolve(region, on).get(f"case_management.{name}")
    except ParameterError:
        return default
    return int(resolved.value) if resolved is not None else default


def decision_due(region: str, accepted_on: date) -> date:
    """The whole procedure is due within 30 working days of acceptance (S5 第二十二条)."""
    return calendar().add_working_days(accepted_on, _figure(region, accepted_on, "decision_working_days", 30))


def notice_ends_on(region: str, starts_on: date) -> date:
    """Public notice runs this many calendar days after the day it starts (S5 第十九条: 7 days)."""
    return starts_on + timedelta(days=_figure(region, starts_on, "public_notice_days", 7))


def refusal_notice_due(region: str, decided_on: date) -> date:
    return calendar().add_working_days(decided_on, _figure(region, decided_on, "refusal_notice_working_days", 3))


STOP_SOURCE = (
    "上海市社会救助条例 第四十五条（二）: 不再符合相关社会救助条件的……停止救助; "
    "最低生活保障审核确认办法 第三十二条 (停发决定告知并说明理由)"
)
UNSTABLE_INCOME_KINDS = frozenset({"business", "other"})


def income_unstable(household: dict[str, Any], on: date) -> bool:
    """Interpretation of S5 第三十一条 「收入来源不固定、家庭成员有劳动能力」: a member of working age (16 to
    59) without a recorded disability lives on business or other irregular income."""
    for member in household.get("members", []):
        born = date.fromisoformat(str(member["birth_date"]))
        age = on.year - born.year - ((on.month, on.day) < (born.month, born.day))
        irregular = any(i.get("kind") in UNSTABLE_INCOME_KINDS for i in member.get("incomes", []))
        if 16 <= age < 60 and not member.get("disability") and irregular:
            return True
    return False


def review_due(region: str, from_day: date, household: dict[str, Any]) -> date:
    """The next review: a year on, or six months where income is unstable and members can work (S5 第三十一条)."""
    if income_unstable(household, from_day):
        months = _figure(region, from_day, "review_months_unstable_income", 6)
    else:
        months = _figure(region, from_day, "review_months", 12)
    return add_months(from_day, months)


PHASE_OUT_SOURCE = (
    "最低生活保障审核确认办法 第三十三条: 对就业后家庭人均收入超过当地最低生活保障标准的……可以给予一定时间的渐退期; "
    "民政部 关于进一步做好最低生活保障等社会救助兜底工作的通知 (S10): 原则上不超过6个月的渐退期"
)


@dataclass(frozen=True)
class PhaseOut:
    """The region's phase-out after employment (渐退), as its parameters give it on a date."""

    months: int
    requires_report: bool
    months_reference: str
    report_reference: str


def phase_out(region: str, on: date) -> PhaseOut | None:
    """The phase-out in force in `region` on `on`, or None where there is none (0 months, or no value)."""
    try:
        resolved = catalogue().resolve(region, on)
    except ParameterError:
        return None
    months = resolved.get("case_management.phase_out_months")
    if months is None or int(months.value) <= 0:
        return None
    report = resolved.get("case_management.phase_out_requires_report")
    return PhaseOut(
        months=int(months.value),
        requires_report=bool(report.value) if report is not None else False,
        months_reference=months.reference,
        report_reference=report.reference if report is not None else "",
    )


def period_of(day: date) -> str:
    return f"{day.year:04d}-{day.month:02d}"


def periods_after(day: date, months: int) -> str:
    """The month `months` months after the month of `day` (YYYY-MM): a phase-out's last month."""
    return period_of(add_months(day.replace(day=1), months))


def month_after(day: date) -> str:
    following = add_months(day.replace(day=1), 1)
    return f"{following.year:04d}-{following.month:02d}"


def add_months(day: date, months: int) -> date:
    month_index = day.month - 1 + months
    year, month = day.year + month_index // 12, month_index % 12 + 1
    for last in (31, 30, 29, 28):  # the same day of the month, or the month's last day
        try:
            return date(year, month, min(day.day, last))
        except ValueError:
            continue
    raise AssertionError("unreachable")


def after_approval(status: str, outcome: str) -> str:
    """Where an officer's approval takes the determination: a grant to public notice, a refusal to denied."""
    if status not in OPEN:
        raise StepRefused(f"a determination that is {status} cannot be approved; only proposed or in review")
    return "notice" if outcome == "grant" else "denied"


def after_rejection(status: str, outcome: str) -> str:
    if status not in OPEN:
        raise StepRefused(f"a determination that is {status} cannot be rejected; only proposed or in review")
    if outcome != "grant":
        raise StepRefused("a proposed refusal is confirmed with approve; there is no grant to reject")
    return "denied"


def after_objection(status: str) -> str:
    if status != "notice":
        raise StepRefused(f"objections are heard during public notice; this determination is {status}")
    return "review"


def on_withdrawal(status: str, payment_kind: str) -> str | None:
    """What a withdrawal does to a determination: not yet final → withdrawn; approved monthly aid → stopped
    (after the month of withdrawal); anything else stands (None)."""
    if status in OPEN or status == "notice":
        return "withdrawn"
    if status == "approved" and payment_kind == "monthly":
        return "stopped"
    return None


def notice_is_over(status: str, ends_on: date | None, today: date) -> bool:
    return status == "notice" and ends_on is not None and today > ends_on


def may_decide(filed_by: str, officer: str) -> bool:
    """Maker-checker: the person who filed the case does not decide it."""
    return not filed_by or filed_by != officer
