"""Working days in mainland China: weekdays, less public holidays, plus make-up working days (调休上班),
from the calendar held as data in `shared/data/holidays.toml`.

Counting follows the civil-law convention (民法典 第二百零一条): the day of the act does not count, the count
starts the next day. So 3 working days from a Friday acceptance ends on the Wednesday after.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache
from pathlib import Path

from shared.logging import get_logger

log = get_logger(__name__)
DATA = Path(__file__).parent / "data" / "holidays.toml"


@lru_cache(maxsize=64)
def _missing_year(year: int) -> None:
    """Said once per process and year, not once per day counted (every deadline into such a year counts
    dozens of days)."""
    log.warning("holiday_calendar_missing_year", year=year)


@dataclass(frozen=True)
class Calendar:
    holidays: frozenset[date]
    workdays: frozenset[date]
    years: frozenset[int]

    def is_working_day(self, day: date) -> bool:
        if day in self.workdays:
            return True
        if day in self.holidays:
            return False
        return day.weekday() < 5

    def add_working_days(self, start: date, days: int) -> date:
        """The date `days` working days after `start` (the start day itself does not count)."""
        if days < 0:
            raise ValueError("days must not be negative")
        day = start
        while days:
            day += timedelta(days=1)
            if day.year not in self.years:
                _missing_year(day.year)
            if self.is_working_day(day):
                days -= 1
        return day

    def working_days_between(self, start: date, end: date) -> int:
        """Working days after `start` up to and including `end` (0 if `end` is not after `start`)."""
        count, day = 0, start
        while day < end:
            day += timedelta(days=1)
            count += self.is_working_day(day)
        return count


def load_calendar(path: Path = DATA) -> Calendar:
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    holidays: set[date] = set()
    workdays: set[date] = set()
    years: set[int] = set()
    for entry in data["year"]:
        years.add(int(entry["year"]))
        for first, last in entry["holidays"]:
            if last < first:
                raise ValueError(f"{path}: holiday range {first}..{last} runs backwards")
            day = first
            while day <= last:
                holidays.add(day)
                day += timedelta(days=1)
        workdays.update(entry["workdays"])
    clash = holidays & workdays
    if clash:
        raise ValueError(f"{path}: days both holiday and make-up working day: {sorted(clash)}")
    return Calendar(frozenset(holidays), frozenset(workdays), frozenset(years))


@lru_cache(maxsize=1)
def calendar() -> Calendar:
    return load_calendar()
