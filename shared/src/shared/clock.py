"""The time decisions are made at: decision dates, notice periods, deadlines and reviews read it.

Production reads the system clock. Outside production an offset may be kept in `<data_dir>/clock-offset`
(`doudi clock advance 8d`, `doudi clock reset`), shared by every process of a stack, so a tester can walk a
case through a 7-day public notice or a 30-working-day deadline in minutes. Records' own timestamps
(created_at, audit entries) always stay real time.
"""

from __future__ import annotations

import os
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

# China keeps one time zone and no daylight saving: dates of decisions and deadlines are Beijing dates.
BEIJING = timezone(timedelta(hours=8), "Asia/Shanghai")
OFFSET_FILE = "clock-offset"


class Clock:
    def __init__(self, offset_file: Path | None = None) -> None:
        self._file = offset_file
        self._seen: float | None = None
        self._offset = timedelta(0)

    @classmethod
    def system(cls) -> Clock:
        return cls(None)

    @classmethod
    def for_data_dir(cls, data_dir: Path, *, production: bool) -> Clock:
        return cls.system() if production else cls(Path(data_dir) / OFFSET_FILE)

    @property
    def offset(self) -> timedelta:
        if self._file is None:
            return timedelta(0)
        try:
            mtime = os.stat(self._file).st_mtime
        except FileNotFoundError:
            self._seen, self._offset = None, timedelta(0)
            return self._offset
        if mtime != self._seen:
            text = self._file.read_text().strip()
            self._offset = timedelta(seconds=float(text or 0))
            self._seen = mtime
        return self._offset

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def today(self) -> date:
        """Today's date in Beijing."""
        return self.now().astimezone(BEIJING).date()

    def advance(self, by: timedelta) -> timedelta:
        """Move this stack's clock forward (or back); returns the new offset. Not in production."""
        if self._file is None:
            raise RuntimeError("the system clock cannot be moved")
        offset = self.offset + by
        self._file.parent.mkdir(parents=True, exist_ok=True)
        staging = self._file.with_suffix(".tmp")
        staging.write_text(f"{offset.total_seconds()}\n")
        os.replace(staging, self._file)
        return offset

    def reset(self) -> None:
        if self._file is not None:
            self._file.unlink(missing_ok=True)
