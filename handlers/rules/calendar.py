"""Production calendar of the center: working days and hours in local (Sakhalin) time.

Working days follow the Russian production calendar of ``holidays.Russia``, read from the
data file of handlers/rules/production_calendar.py: public holidays, observed holidays and
transferred days off are non-working, transferred working Saturdays/Sundays
(``weekend_workdays``) are working. Pre-holiday shortened days are
deliberately ignored: deadlines are counted with full hours.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, tzinfo
from functools import lru_cache

from handlers.rules.production_calendar import year_data

__all__ = ["WorkCalendar"]

_END_OF_DAY = time(23, 59, 59)


@dataclass(frozen=True, slots=True)
class _YearData:
    days_off: frozenset[date]
    weekend_workdays: frozenset[date]


@lru_cache(maxsize=64)
def _russia(year: int) -> _YearData:
    """The production calendar of one year, read once per process."""
    days_off, weekend_workdays = year_data(year)
    return _YearData(days_off=days_off, weekend_workdays=weekend_workdays)


@dataclass(frozen=True, slots=True)
class _YearTable:
    """One year of one calendar: a working flag per day and the running count of working
    days, so that a day is a lookup and a span of days two subtractions."""

    first: int  # ordinal of 1 January
    working: bytes  # 1 for a working day, by day of the year
    before: tuple[int, ...]  # working days among the first i days of the year (len + 1)


class _Days:
    """The day tables of every calendar with the same working week and overrides; shared by
    equal WorkCalendar instances (Organisation.work_calendar builds a new one per access)."""

    def __init__(self, workdays: frozenset[int], extra_holidays: frozenset[date],
                 extra_workdays: frozenset[date]) -> None:
        self.workdays, self.extra_holidays = workdays, extra_holidays
        self.extra_workdays = extra_workdays
        self.years: dict[int, _YearTable] = {}

    def year(self, year: int) -> _YearTable:
        table = self.years.get(year)
        if table is None:
            data = _russia(year)
            first = date(year, 1, 1)
            flags = bytearray()
            day = first
            while day.year == year:
                flags.append(self._compute(day, data))
                day += timedelta(days=1)
            before = [0]
            for flag in flags:
                before.append(before[-1] + flag)
            table = _YearTable(first.toordinal(), bytes(flags), tuple(before))
            self.years[year] = table
        return table

    def _compute(self, d: date, data: _YearData) -> bool:
        if d in self.extra_holidays:
            return False
        if d in self.extra_workdays:
            return True
        if d in data.days_off:
            return False
        return d.weekday() in self.workdays or d in data.weekend_workdays

    def is_working_day(self, d: date) -> bool:
        table = self.year(d.year)
        return bool(table.working[d.toordinal() - table.first])

    def working_days_through(self, d: date, year: int) -> int:
        """Working days from 1 January of ``year`` up to and including ``d`` (d.year >= year)."""
        count = 0
        for y in range(year, d.year):
            count += self.year(y).before[-1]
        table = self.year(d.year)
        return count + table.before[d.toordinal() - table.first + 1]


@lru_cache(maxsize=32)
def _days(workdays: frozenset[int], extra_holidays: frozenset[date],
          extra_workdays: frozenset[date]) -> _Days:
    return _Days(workdays, extra_holidays, extra_workdays)


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
    # The day tables, shared by equal calendars and filled lazily per year.
    _days: _Days = field(init=False, repr=False, compare=False, hash=False)
    _starts: dict[date, datetime] = field(default_factory=dict, init=False, repr=False,
                                          compare=False, hash=False)

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
        object.__setattr__(self, "_days", _days(self.workdays, self.extra_holidays,
                                                self.extra_workdays))

    # --- days -------------------------------------------------------------------------

    def is_working_day(self, d: date) -> bool:
        return self._days.is_working_day(d)

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
        if end <= start:
            return 0
        days = self._days
        return days.working_days_through(end, start.year) - days.working_days_through(
            start, start.year)

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
        moment = self._starts.get(d)  # asked for every item of a sweep: one per day
        if moment is None:
            moment = self._starts[d] = datetime.combine(d, self.work_start, tzinfo=self.tz)
        return moment

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
