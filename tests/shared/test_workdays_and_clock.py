"""Working days with the holiday calendar (make-up working days count), and the movable development clock."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest

from shared.clock import Clock
from shared.workdays import calendar, load_calendar


def test_a_make_up_sunday_counts_and_the_golden_week_does_not() -> None:
    cal = calendar()
    # Friday 26 Sep 2025: Saturday off, Sunday 28th a make-up working day, then Monday and Tuesday.
    assert cal.add_working_days(date(2025, 9, 26), 3) == date(2025, 9, 30)
    # From 30 Sep: 1-8 Oct are holidays, Thursday 9th and Friday 10th work, Saturday 11th is a make-up day.
    assert cal.add_working_days(date(2025, 9, 30), 3) == date(2025, 10, 11)
    assert not cal.is_working_day(date(2025, 10, 8))
    assert cal.working_days_between(date(2025, 9, 30), date(2025, 10, 11)) == 3


def test_the_day_of_the_act_does_not_count() -> None:
    assert calendar().add_working_days(date(2025, 3, 3), 1) == date(2025, 3, 4)  # Monday → Tuesday
    assert calendar().add_working_days(date(2025, 3, 3), 0) == date(2025, 3, 3)


def test_a_calendar_with_a_day_both_holiday_and_working_day_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "holidays.toml"
    bad.write_text(
        '[[year]]\nyear = 2030\nverified = false\nsource = "x"\n'
        "holidays = [[2030-01-01, 2030-01-02]]\nworkdays = [2030-01-02]\n"
    )
    with pytest.raises(ValueError, match="both holiday"):
        load_calendar(bad)


def test_the_development_clock_moves_and_resets(tmp_path: Path) -> None:
    clock = Clock(tmp_path / "clock-offset")
    before = clock.today()
    clock.advance(timedelta(days=8))
    assert clock.today() - before in (timedelta(days=8), timedelta(days=9))  # midnight may pass meanwhile
    other_process = Clock(tmp_path / "clock-offset")  # every process of the stack reads the same offset
    assert other_process.offset == timedelta(days=8)
    clock.reset()
    assert other_process.offset == timedelta(0)


def test_the_system_clock_cannot_be_moved() -> None:
    with pytest.raises(RuntimeError):
        Clock.system().advance(timedelta(days=1))
    assert Clock.for_data_dir(Path("/nonexistent"), production=True).offset == timedelta(0)
