"""Referral's rules: which services an application points to. Pure: no database, no web, no broker."""

from __future__ import annotations

from shared.contracts.intake import ApplicationSubmitted

REQUESTED = "requested"
NO_LOCAL_HUKOU_OR_PERMIT = "no_local_hukou_or_residence_permit"


def _province(code: str) -> str:
    return code[:2]


def without_local_hukou_or_permit(application: ApplicationSubmitted) -> bool:
    """Nobody present in the household (status ordinary; everyone if nobody is) has a hukou or a residence
    permit in the province of the application (上海市社会救助条例 第三十六条: 不持有本市居住证的非本市户籍人员
    are helped by the rescue-management agency). The same test eligibility's temporary-aid rule makes for
    `decided_by` occurrence. A member always has a hukou region (intake requires it), so "without" means
    "not here", never "none recorded"."""
    members = [m for m in application.household.members if m.status == "ordinary"] or application.household.members
    here = _province(application.region)
    return not any(
        _province(m.hukou_region) == here
        or (m.residence_permit_region is not None and _province(m.residence_permit_region) == here)
        for m in members
    )


def services_indicated(application: ApplicationSubmitted) -> dict[str, str]:
    """kind → why, for the services a household is referred to when it applies (its verification starts):

    - counselling: the household asked for it, or it applies because of an emergency (fire, accident, sudden
      illness, disaster): the wait for verification after a shock is when counselling helps (心理疏导);
    - shelter: the household asked for it, or nobody in it has a local hukou or residence permit.
    """
    asked = set(application.services_requested)
    indicated: dict[str, str] = {}
    if "counselling" in asked:
        indicated["counselling"] = REQUESTED
    elif application.household.emergency is not None:
        indicated["counselling"] = f"emergency:{application.household.emergency.kind}"
    if "shelter" in asked:
        indicated["shelter"] = REQUESTED
    elif without_local_hukou_or_permit(application):
        indicated["shelter"] = NO_LOCAL_HUKOU_OR_PERMIT
    return indicated
