"""Intake's rules: resident ID numbers and how a case's status follows from what has happened to it."""

from __future__ import annotations

from datetime import date, datetime

ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
ID_CHECK_CHARS = "10X98765432"
# GB/T 2260 province-level codes; the full county-level table arrives with the case-workflow issue.
PROVINCES = frozenset(
    {
        "11",
        "12",
        "13",
        "14",
        "15",
        "21",
        "22",
        "23",
        "31",
        "32",
        "33",
        "34",
        "35",
        "36",
        "37",
        "41",
        "42",
        "43",
        "44",
        "45",
        "46",
        "50",
        "51",
        "52",
        "53",
        "54",
        "61",
        "62",
        "63",
        "64",
        "65",
        "71",
        "81",
        "82",
    }
)


def id_number_problem(id_number: str, today: date | None = None) -> str | None:
    """Why `id_number` is not a valid 18-character resident ID (GB 11643), or None when it is."""
    if len(id_number) != 18 or not id_number[:17].isdigit() or not (id_number[17].isdigit() or id_number[17] == "X"):
        return "must be 17 digits followed by a digit or X"
    if id_number[:2] not in PROVINCES:
        return f"unknown region code {id_number[:6]}"
    try:
        born = date(int(id_number[6:10]), int(id_number[10:12]), int(id_number[12:14]))
    except ValueError:
        return f"birth date {id_number[6:14]} is not a real date"
    if born > (today or date.today()) or born.year < 1880:
        return f"birth date {born.isoformat()} is not plausible"
    expected = ID_CHECK_CHARS[sum(int(d) * w for d, w in zip(id_number[:17], ID_WEIGHTS, strict=True)) % 11]
    if id_number[17] != expected:
        return "check digit does not match (GB 11643)"
    return None


def with_check_digit(first17: str) -> str:
    return first17 + ID_CHECK_CHARS[sum(int(d) * w for d, w in zip(first17, ID_WEIGHTS, strict=True)) % 11]


# Roles that see whole ID numbers: officers check identity before deciding; admins administer.
FULL_ID_ROLES = frozenset({"officer", "admin"})


def mask_id_number(id_number: str) -> str:
    return id_number[:6] + "*" * 8 + id_number[-4:]


# A case in one of these has let its members go: they may apply again.
CLOSED_STATUSES = frozenset({"denied", "withdrawn", "exited"})

# Determination events come in order on one partition; the rank only keeps a final decision final.
DETERMINATION_RANK = {
    "proposed": 0,
    "notice": 0,
    "review": 0,
    "approved": 1,
    "denied": 1,
    "withdrawn": 1,
    "stopped": 2,
    "recovery": 2,
}
DETERMINATION_STATUS = {
    "eligibility.determination.proposed": "proposed",
    "eligibility.determination.noticed": "notice",
    "eligibility.determination.objected": "review",
    "eligibility.determination.approved": "approved",
    "eligibility.determination.denied": "denied",
    "eligibility.determination.withdrawn": "withdrawn",
    "eligibility.determination.stopped": "stopped",
    "eligibility.determination.reviewed": "approved",
    "eligibility.determination.changed": "approved",
    "eligibility.determination.confirmed": "approved",
    # Aid first that verification did not support: an officer decides whether it is recovered.
    "eligibility.determination.flagged": "recovery",
}
# Still in the procedure: the decision deadline applies.
IN_PROCEDURE = frozenset({"proposed", "notice", "review"})
PAYMENT_RANK = {
    "pending": 0,
    "failed": 1,
    "settled": 1,
    "cancelled": 1,
    "returned": 2,
    # An advance ("aid first") verification did not support: owed back, then settled one way or another.
    "owed_back": 3,
    "recovered": 4,
    "waived": 4,
    "not_paid": 4,
}
# A service referral: referred (or unassigned: nobody covers the area) → accepted → completed or no_show;
# declined by the provider before that.
SERVICE_RANK = {"referred": 0, "unassigned": 0, "accepted": 1, "declined": 2, "completed": 2, "no_show": 2}


def supersedes(ranks: dict[str, int], current: str | None, incoming: str) -> bool:
    """Events from different topics can arrive out of order: a later stage never yields to an earlier one."""
    return current is None or ranks[incoming] >= ranks[current]


def case_status(verified: bool, determination_statuses: list[str]) -> str:
    """The case's stage from its determinations: approved once any is; denied once all are; otherwise the
    furthest step still open (review after an objection, public notice, proposed); exited once the aid it
    received has all stopped and nothing else is open (the exit is recorded, its members are free to apply
    again; a phase-out's last months are still paid, as the stopped determination's last period says)."""
    if "approved" in determination_statuses:
        return "approved"
    if determination_statuses and all(s == "denied" for s in determination_statuses):
        return "denied"
    for stage in ("review", "notice", "proposed"):
        if stage in determination_statuses:
            return stage
    if "stopped" in determination_statuses and all(s in EXIT_STATUSES for s in determination_statuses):
        return "exited"
    return "verified" if verified else "submitted"


# A case whose determinations are all among these, at least one stopped, has exited assistance.
EXIT_STATUSES = frozenset({"stopped", "denied", "withdrawn"})


def may_review(status: str) -> bool:
    """Reviews are of households receiving aid."""
    return status == "approved"


def may_withdraw(status: str) -> bool:
    """A household may withdraw an open case (before a decision, or to leave the assistance it receives)."""
    return status not in CLOSED_STATUSES


def is_overdue(status: str, decision_due: date | None, today: date) -> bool:
    """Past the procedure's deadline and not yet decided (30 working days from acceptance, S5 第二十二条)."""
    return status in IN_PROCEDURE and decision_due is not None and today > decision_due


# A need a charity may hold on a case: one a decision published that it claimed, or its offer an advisor
# matched to the case. Service referrals are not needs: their providers are told nothing about the household.
CHARITY_NEED_KINDS = frozenset({"charity_need", "charity_offer"})


def contact_consent_in_force(given: bool, withdrawn_at: datetime | None) -> bool:
    """Consent given at application holds until the household withdraws it."""
    return given and withdrawn_at is None


def contact_disclosure(
    *, holder: str | None, status: str, caller: str, consent_given: bool, consent_withdrawn: bool
) -> str:
    """Whether the charity `caller` may have the household's contact details for a need, as an outcome:
    `ok`; `not_holder` (nobody, or another charity, holds the need); `no_consent` (the household did not
    agree at application); `consent_withdrawn`; `delivered` (the details serve delivering the help, so they
    are given while the charity holds the need, not after it has reported delivery)."""
    if holder is None or holder != caller or status not in ("claimed", "delivered"):
        return "not_holder"
    if not consent_given:
        return "no_consent"
    if consent_withdrawn:
        return "consent_withdrawn"
    if status != "claimed":
        return "delivered"
    return "ok"
