"""Disbursement rules: which period is paid first, and which bank outcomes a payment may move to."""

from __future__ import annotations

from datetime import date

FINAL = frozenset({"settled", "failed", "returned", "cancelled"})
# A settled payment may later come back (returned); nothing else leaves a final state. Only an instruction
# that never reached the bank can be cancelled.
TRANSITIONS = {
    "pending": {"submitted", "settled", "failed", "cancelled"},
    "submitted": {"settled", "failed"},
    "settled": {"returned"},
    "failed": set(),
    "returned": set(),
    "cancelled": set(),
}
# Entitlements that pay monthly: active, or stopped with a last period (paid up to and including it).
PAYING = frozenset({"active", "stopped"})


def first_period(decided_on: date) -> str:
    """Monthly aid is paid from the month after approval (上海市社会救助条例 第十六条 and national practice)."""
    year, month = (decided_on.year + 1, 1) if decided_on.month == 12 else (decided_on.year, decided_on.month + 1)
    return f"{year:04d}-{month:02d}"


def can_move(current: str, incoming: str) -> bool:
    return incoming in TRANSITIONS[current]


def retry_delay_seconds(attempts: int, base: float = 30.0, cap: float = 3600.0) -> float:
    """Backoff before retrying a payment the bank failed temporarily: 30 s, 60 s, 120 s ... at most an hour."""
    return min(cap, base * 2 ** max(0, attempts - 1))
