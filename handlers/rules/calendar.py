"""Production calendar of the center: working days and hours in local (Sakhalin) time.

Working days follow the Russian production calendar from ``holidays.Russia``: public
holidays, observed holidays and transferred days off are non-working, transferred working
Saturdays/Sundays (``weekend_workdays``) are working. Pre-holiday shortened days are
deliberately ignored: deadlines are counted with full hours.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, tzinfo

import holidays

__all__ = ["WorkCalendar"]

_END_OF_DAY = time(23, 59, 59)


@dataclass(frozen=True, slots=True)
class _YearData:
    days_off: frozenset[date]
    weekend_workdays: frozenset[date]


@dataclass(frozen=True)
class WorkCalendar:
    """Working days/hours in ``tz``; every returned datetime is aware and in ``tz``.

    ``extra_holidays`` / ``extra_workdays`` are local overrides (e.g. a regional day off or
    a decree published after the library release) and win over the library.
    """

    tz: tzinfo
    work_start: time = time(9)
    work_end: time = time(18)
    workdays: frozenset[int] = frozenset({0, 1, 2, 3, 4})
    extra_holidays: frozenset[date] = frozenset()
    extra_workdays: frozenset[date] = frozenset()
    # Filled lazily per year; a plain dict so the frozen instance can still memoize.
    _years: dict[int, _YearData] = field(
        default_factory=dict, init=False, repr=False, compare=False, hash=False
    )

    def __post_init__(self) -> None:
        # Accept any iterable from configuration but keep the instance hashable.
        for name in ("workdays", "extra_holidays", "extra_workdays"):
            object.__setattr__(self, name, frozenset(getattr(self, name)))
        if self.work_start.tzinfo is not None or self.work_end.tzinfo is not None:
            raise ValueError("work_start/work_end must be naive local times")
        if not self.work_start < self.work_end:
            raise ValueError("work_start must be earlier than work_end")
        # A calendar without regular workdays would make next_working_day loop forever.
        if not self.workdays or not set(self.workdays) <= set(range(7)):
            raise ValueError("workdays must be a non-empty set of weekdays 0..6 (Mon=0)")
        both = self.extra_holidays & self.extra_workdays
        if both:
            raise ValueError(f"dates both extra holiday and extra workday: {sorted(both)}")

    # --- days -------------------------------------------------------------------------

    def _year(self, year: int) -> _YearData:
        data = self._years.get(year)
        if data is None:
            # Neighbouring years are generated too, so an observed day off that spills
            # over a year boundary is still seen; only ``year`` is kept.
            ru = holidays.Russia(years=range(year - 1, year + 2))
            data = _YearData(
                days_off=frozenset(d for d in ru if d.year == year),
                weekend_workdays=frozenset(d for d in ru.weekend_workdays if d.year == year),
            )
            self._years[year] = data
        return data

    def is_working_day(self, d: date) -> bool:
        if d in self.extra_holidays:
            return False
        if d in self.extra_workdays:
            return True
        data = self._year(d.year)
        if d in data.days_off:
            return False
        return d.weekday() in self.workdays or d in data.weekend_workdays

    def next_working_day(self, d: date) -> date:
        """First working day strictly after ``d``."""
        d += timedelta(days=1)
        while not self.is_working_day(d):
            d += timedelta(days=1)
        return d

    def previous_working_day(self, d: date) -> date:
        """Last working day strictly before ``d``."""
        d -= timedelta(days=1)
        while not self.is_working_day(d):
            d -= timedelta(days=1)
        return d

    def working_days_between(self, start: date, end: date) -> int:
        """Working days after ``start`` up to and including ``end`` (0 when end <= start)."""
        count, d = 0, start
        while d < end:
            d += timedelta(days=1)
            count += self.is_working_day(d)
        return count

    def add_working_days(self, d: date, n: int) -> date:
        """The ``n``-th working day strictly after ``d`` (``n`` >= 1)."""
        if n < 1:
            raise ValueError("n must be >= 1")
        for _ in range(n):
            d = self.next_working_day(d)
        return d

    # --- moments ----------------------------------------------------------------------

    def to_local(self, moment: datetime) -> datetime:
        """``moment`` converted to the calendar zone; naive datetimes are ambiguous."""
        if moment.tzinfo is None or moment.utcoffset() is None:
            raise ValueError(f"naive datetime is not allowed: {moment!r}")
        return moment.astimezone(self.tz)

    def working_hours_start(self, d: date) -> datetime:
        return datetime.combine(d, self.work_start, tzinfo=self.tz)

    def _working_hours_end(self, d: date) -> datetime:
        return datetime.combine(d, self.work_end, tzinfo=self.tz)

    def end_of_day(self, d: date) -> datetime:
        return datetime.combine(d, _END_OF_DAY, tzinfo=self.tz)

    def is_working_time(self, moment: datetime) -> bool:
        local = self.to_local(moment)
        return self.is_working_day(local.date()) and self.work_start <= local.time() < self.work_end

    def next_working_moment(self, moment: datetime) -> datetime:
        """``moment`` if it is working time, else the next start of working hours."""
        local = self.to_local(moment)
        day = local.date()
        if self.is_working_day(day):
            if local.time() < self.work_start:
                return self.working_hours_start(day)
            if local.time() < self.work_end:
                return local
        return self.working_hours_start(self.next_working_day(day))

    def add_working_hours(self, moment: datetime, hours: float) -> datetime:
        """Add ``hours`` of working time, skipping evenings, weekends and holidays.

        A result exactly at ``work_end`` stays on that day (the deadline is the end of
        that working day, not the next morning).
        """
        if hours < 0:
            raise ValueError("hours must be >= 0")
        current = self.next_working_moment(moment)
        remaining = timedelta(hours=hours)
        while True:
            # Wall-clock arithmetic: office hours are defined on the local clock.
            available = self._working_hours_end(current.date()) - current
            if remaining <= available:
                return current + remaining
            remaining -= available
            current = self.working_hours_start(self.next_working_day(current.date()))
