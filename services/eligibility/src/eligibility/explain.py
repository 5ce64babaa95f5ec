"""From outcome arrays to answers: each programme's result with its reasons (code, plain words, legal source)
and, on request, the trace of the figures used."""

from __future__ import annotations

from typing import Any

from eligibility.columns import STATUSES
from eligibility.engine import (
    ASSET_CODES,
    DECIDED_BY,
    EXPENDITURE_CODES,
    EXTREME_CODES,
    MARGIN_CODES,
    ROUTES,
    SA_CODES,
    Outcome,
    Scalars,
)
from eligibility.params import Resolved

SH = {
    "subsistence_allowance": "上海市社会救助条例 第十条、第十六条",
    "household": "上海市社会救助条例 第五十五条",
    "assets": "上海市社会救助条例 第十条 (财产标准; thresholds unverified, see parameters)",
    "low_income_margin": "上海市社会救助条例 第十一条; 最低生活保障审核确认办法 第八条",
    "expenditure_hardship": "上海市社会救助条例 第十二条、第十八条",
    "temporary_aid": "上海市社会救助条例 第十五条、第二十九条、第三十六条",
    "extreme_poverty": "上海市社会救助条例 第十三条、第十九条; 特困人员认定办法 第五条至第八条",
}
ZJ = {
    "subsistence_allowance": "浙江省社会救助条例 第九条、第十二条",
    "household": "最低生活保障审核确认办法 第七条",
    "assets": "浙江省社会救助条例 第九条 (财产状况; thresholds unverified, see parameters)",
    "low_income_margin": "浙江省社会救助条例 第十三条",
    "expenditure_hardship": "浙江省社会救助条例 第四十一条; 刚性支出困难家庭认定办法 第四条",
    "temporary_aid": "浙江省社会救助条例 第三十八条、第三十九条",
    "extreme_poverty": "特困人员认定办法 第四条至第八条",
}
NATIONAL = {
    "subsistence_allowance": "社会救助暂行办法 第九条、第十二条",
    "household": "最低生活保障审核确认办法 第七条",
    "assets": "最低生活保障审核确认办法 第十四条",
    "low_income_margin": "最低生活保障审核确认办法 第八条",
    "expenditure_hardship": "刚性支出困难家庭认定办法 第四条",
    "temporary_aid": "关于进一步加强和改进临时救助工作的意见",
    "extreme_poverty": "特困人员认定办法 第四条至第八条",
}

TEXT = {
    "income_below_standard": "per-capita income {pc} is below the standard {std}",
    "income_not_below_standard": "per-capita income {pc} is not below the standard {std}",
    "no_counted_members": "no member counts as living together in the household",
    "no_local_hukou": "no counted member holds a local hukou",
    "monetary_assets_exceed_limit": "monetary assets per member exceed the limit",
    "private_car": "the household owns a private car",
    "non_residential_property": "the household owns non-residential property",
    "too_many_homes": "the household owns more homes than allowed",
    "income_within_margin": "per-capita income {pc} is within the margin line {line}",
    "income_above_margin": "per-capita income {pc} is above the margin line {line}",
    "eligible_for_subsistence_allowance": "the household qualifies for the subsistence allowance instead",
    "rigid_expenditure_below_standard": (
        "after rigid expenditure the per-capita income {after} is below the standard {std}"
    ),
    "medical_expense_ratio": "medical spending reaches the set share of household income",
    "income_above_benchmark": "annual per-capita income is not below the city's per-capita disposable income",
    "no_trigger": "neither expenditure trigger applies",
    "emergency": "an emergency ({kind}) happened",
    "no_emergency": "temporary aid needs an emergency or sudden hardship",
    "no_work_capacity": "a member has no work capacity",
    "no_source_of_living": "that member has no source of living",
    "no_capable_supporter": "that member has no legal supporter able to support them",
    "has_work_capacity": "every counted member has work capacity",
    "has_source_of_living": "members without work capacity have a source of living",
    "has_capable_supporter": "members without work capacity or income have a supporter able to support them",
}
PROGRAMME_CODES = {
    "subsistence_allowance": SA_CODES,
    "low_income_margin": MARGIN_CODES,
    "expenditure_hardship": EXPENDITURE_CODES,
    "extreme_poverty": EXTREME_CODES,
}


def sources_for(region: str) -> dict[str, str]:
    return SH if region.startswith("31") else ZJ if region.startswith("33") else NATIONAL


def money(fen: int) -> str:
    sign = "-" if fen < 0 else ""
    fen = abs(int(fen))
    return f"{sign}{fen // 100}.{fen % 100:02d}"


def summaries(o: Outcome, rows: list[int] | None = None) -> list[dict[str, dict[str, Any]]]:
    """Eligibility, amounts and reason codes per programme for every household of the batch: what `doudi
    screen` writes. Arrays become Python lists once here; indexing numpy per household is ten times slower."""
    asset_lists = [[code for bit, code in enumerate(ASSET_CODES) if mask >> bit & 1] for mask in range(16)]
    money_cache: dict[int, str] = {}

    def m(fen: int) -> str:
        text = money_cache.get(fen)
        if text is None:
            text = money_cache[fen] = money(fen)
        return text

    def pick(values: Any) -> list[Any]:
        return values.tolist() if rows is None else values[rows].tolist()

    columns = zip(
        pick(o.asset_failures),
        pick(o.sa_eligible),
        pick(o.sa_code),
        pick(o.sa_amount),
        pick(o.margin_eligible),
        pick(o.margin_code),
        pick(o.ex_eligible),
        pick(o.ex_code),
        pick(o.ex_trigger2),
        pick(o.ex_amount),
        pick(o.ta_eligible),
        pick(o.ta_max),
        pick(o.ep_eligible),
        pick(o.ep_code),
        pick(o.ep_amount),
        strict=True,
    )
    out = []
    for (
        assets_mask,
        sa_ok,
        sa_code,
        sa_amount,
        mg_ok,
        mg_code,
        ex_ok,
        ex_code,
        ex_t2,
        ex_amount,
        ta_ok,
        ta_max,
        ep_ok,
        ep_code,
        ep_amount,
    ) in columns:
        assets = asset_lists[assets_mask]
        expenditure = [EXPENDITURE_CODES[ex_code]]
        if ex_code == 0 and ex_t2:
            expenditure.append("medical_expense_ratio")
        if ex_code <= 3:
            expenditure += assets
        out.append(
            {
                "subsistence_allowance": {
                    "eligible": sa_ok,
                    "monthly_amount": m(sa_amount),
                    "reasons": [SA_CODES[sa_code], *assets],
                },
                "low_income_margin": {
                    "eligible": mg_ok,
                    "monthly_amount": "0.00",
                    "reasons": [MARGIN_CODES[mg_code], *assets],
                },
                "expenditure_hardship": {"eligible": ex_ok, "monthly_amount": m(ex_amount), "reasons": expenditure},
                "temporary_aid": {
                    "eligible": ta_ok,
                    "max_amount": m(ta_max),
                    "reasons": ["emergency" if ta_ok else "no_emergency"],
                },
                "extreme_poverty": {
                    "eligible": ep_ok,
                    "monthly_amount": m(ep_amount),
                    "reasons": list(EXTREME_CODES[:3]) if ep_ok else [EXTREME_CODES[ep_code]],
                },
            }
        )
    return out


def reason_codes(o: Outcome, i: int) -> dict[str, list[str]]:
    """The reason codes of household `i` for every programme (the same as `summaries` gives)."""
    single = summaries(o, [i])[0]
    return {programme: result["reasons"] for programme, result in single.items()}


def explain(
    o: Outcome,
    i: int,
    p: Scalars,
    resolved: dict[str, Resolved],
    region: str,
    refs: list[str],
    member_offset: int,
    emergency_kind: str | None,
    with_trace: bool = True,
) -> dict[str, Any]:
    """The full answer for household `i`: the `household` block and the `results` list of `/v1/evaluations`."""
    sources = sources_for(region)
    codes = reason_codes(o, i)
    values = {
        "pc": money(o.per_capita[i]),
        "std": money(p.standard),
        "line": money(o.margin_line),
        "after": money(o.ex_per_capita_after[i]),
        "kind": emergency_kind or "",
    }

    def reasons(programme: str, source_key: str | None = None) -> list[dict[str, str]]:
        out = []
        for code in codes[programme]:
            key = "assets" if code in ASSET_CODES else source_key or programme
            if code in ("no_counted_members", "no_local_hukou"):
                key = "household"
            out.append({"code": code, "text": TEXT[code].format(**values), "source": sources[key]})
        return out

    def used(*names: str) -> list[dict[str, Any]]:
        if not with_trace:
            return []
        trace = []
        for name in names:
            r = resolved.get(name)
            if r is not None:
                value = r.value if not isinstance(r.value, tuple) else list(r.value)
                trace.append(
                    {
                        "parameter": name,
                        "value": str(value) if not isinstance(value, list | bool) else value,
                        "unit": r.unit,
                        "region": r.region,
                        "effective": r.effective.isoformat() if r.effective else None,
                        "verified": r.verified,
                        "reference": r.reference,
                        "overridden": r.overridden,
                    }
                )
        return trace

    members = range(member_offset, member_offset + len(refs))
    excluded = [
        {
            "ref": refs[m - member_offset],
            "reason": "not_local_hukou"
            if o.m_excluded_reason[m] == len(STATUSES)
            else STATUSES[o.m_excluded_reason[m]],
        }
        for m in members
        if o.m_excluded_reason[m] >= 0
    ]
    household = {
        "counted_members": int(o.counted[i]),
        "excluded_members": excluded,
        "counted_monthly_income": money(o.income[i]),
        "per_capita_monthly_income": money(o.per_capita[i]),
    }
    common = (
        "subsistence_allowance.standard",
        "household.excluded_statuses",
        "household.requires_local_hukou",
        "income.excluded_kinds",
    )
    assets = (
        "subsistence_allowance.monetary_assets_limit_per_capita",
        "subsistence_allowance.monetary_assets_limit_per_capita_small_household",
        "subsistence_allowance.max_private_cars",
        "subsistence_allowance.max_homes",
    )
    results = [
        {
            "programme": "subsistence_allowance",
            "eligible": bool(o.sa_eligible[i]),
            "standard": money(p.standard),
            "per_capita_gap": money(o.sa_gap[i]),
            "monthly_amount": money(o.sa_amount[i]),
            "reasons": reasons("subsistence_allowance"),
            "trace": used(*common, *assets),
        },
        {
            "programme": "low_income_margin",
            "eligible": bool(o.margin_eligible[i]),
            "line": money(o.margin_line),
            "monthly_amount": "0.00",
            "reasons": reasons("low_income_margin"),
            "trace": used(
                *common,
                "low_income_margin.multiple",
                "low_income_margin.inclusive",
                "low_income_margin.capped_at_minimum_wage",
                "income.minimum_wage_monthly",
            ),
        },
        {
            "programme": "expenditure_hardship",
            "eligible": bool(o.ex_eligible[i]),
            "monthly_amount": money(o.ex_amount[i]),
            "per_capita_income_after_rigid_expenditure": money(o.ex_per_capita_after[i]),
            "trigger_rigid_expenditure": bool(o.ex_trigger1[i]),
            "trigger_medical_ratio": bool(o.ex_trigger2[i]),
            "reasons": reasons("expenditure_hardship"),
            "trace": used(
                *common, "expenditure_hardship.annual_disposable_income_benchmark", "expenditure_hardship.medical_ratio"
            ),
        },
        {
            "programme": "temporary_aid",
            "eligible": bool(o.ta_eligible[i]),
            "max_amount": money(o.ta_max[i]),
            "special_hardship_max_amount": money(o.ta_special_max[i]),
            "aid_first_amount": money(o.ta_aid_first[i]),
            "persons": int(o.ta_persons[i]),
            "decided_by": DECIDED_BY[o.ta_decided_by[i]],
            "route": ROUTES[o.ta_route[i]],
            "monthly_amount": "0.00",
            "reasons": reasons("temporary_aid"),
            "trace": used(
                "subsistence_allowance.standard",
                "temporary_aid.cap_multiple_per_person",
                "temporary_aid.special_hardship_cap_multiple_per_person",
                "temporary_aid.aid_first_max",
                "temporary_aid.shelter_without_hukou_or_permit",
            ),
        },
        {
            "programme": "extreme_poverty",
            "eligible": bool(o.ep_eligible[i]),
            "monthly_amount": money(o.ep_amount[i]),
            "members": [refs[m - member_offset] for m in members if o.ep_member[m]],
            "reasons": reasons("extreme_poverty"),
            "trace": used(
                *common,
                "extreme_poverty.elderly_age",
                "extreme_poverty.minor_age",
                "extreme_poverty.no_work_capacity_disabilities",
                "extreme_poverty.in_school_after_minor_age",
                "extreme_poverty.basic_living_floor",
            ),
        },
    ]
    return {"household": household, "results": results}
