"""The periods offered in chat, and custom dates typed as «ДД.ММ.ГГГГ–ДД.ММ.ГГГГ»."""

from __future__ import annotations

import re
from datetime import date, timedelta

from storage.stats import Period

PRESETS = ("today", "7d", "30d", "quarter", "year")
MAX_DAYS = 5 * 366  # a longer custom period is almost certainly a typo
_RANGE = re.compile(r"^\s*(\d{1,2})\.(\d{1,2})\.(\d{4})\s*(?:[-–—]|по|to)\s*"
                    r"(\d{1,2})\.(\d{1,2})\.(\d{4})\s*$", re.IGNORECASE)


class PeriodError(ValueError):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason  # format, date, order, too_long: a text key suffix


def preset_period(name: str, today: date) -> Period:
    """Today; the last 7 or 30 days with today; the quarter or the year up to today."""
    end = today + timedelta(days=1)
    if name == "today":
        return Period(today, end)
    if name == "7d":
        return Period(today - timedelta(days=6), end)
    if name == "30d":
        return Period(today - timedelta(days=29), end)
    if name == "quarter":
        return Period(date(today.year, 3 * ((today.month - 1) // 3) + 1, 1), end)
    if name == "year":
        return Period(date(today.year, 1, 1), end)
    raise PeriodError("format")


def parse_range(text: str) -> Period:
    """«01.11.2026–30.11.2026»: both days included."""
    match = _RANGE.match(text or "")
    if match is None:
        raise PeriodError("format")
    d1, m1, y1, d2, m2, y2 = (int(x) for x in match.groups())
    try:
        first, last = date(y1, m1, d1), date(y2, m2, d2)
    except ValueError as exc:
        raise PeriodError("date") from exc
    if last < first:
        raise PeriodError("order")
    if (last - first).days + 1 > MAX_DAYS:
        raise PeriodError("too_long")
    return Period(first, last + timedelta(days=1))


def encode_day(day: date) -> str:
    return f"{day:%Y%m%d}"


def decode_day(text: str) -> date | None:
    try:
        return date(int(text[:4]), int(text[4:6]), int(text[6:8])) if len(text) == 8 else None
    except ValueError:
        return None
