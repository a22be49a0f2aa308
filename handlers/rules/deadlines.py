"""Deadlines of messages, incidents and 59-ФЗ appeals.

Semantics (pinned by tests/test_deadlines.py):

* calendar days (59-ФЗ): counting starts the day after the starting day, so the last day
  is ``start local date + N``; a non-working last day moves to the next working day;
  the deadline is 23:59:59 local of that day;
* working days: the starting day is not counted; the deadline is 23:59:59 local of the
  N-th working day after the starting date (even if the start is on a holiday or at night);
* working hours: counting starts at the start moment if it is working time, otherwise at
  the next start of working hours; evenings, weekends and holidays are skipped.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from enum import StrEnum

from handlers.rules.calendar import WorkCalendar

__all__ = [
    "DEFAULT_POLICIES",
    "DeadlinePolicy",
    "Deadlines",
    "Kind",
    "calendar_day_deadline",
    "compute_deadlines",
    "working_day_deadline",
    "working_hour_deadline",
]


class Kind(StrEnum):
    MESSAGE = "message"  # сообщение (decree 1.3.5), the center's own deadlines
    INCIDENT = "incident"  # post from «Инцидент менеджмент»
    APPEAL = "appeal"  # обращение under 59-ФЗ (decree 1.3.6)


@dataclass(frozen=True)
class DeadlinePolicy:
    """Deadline lengths of one kind (or one topic); ``None`` means "no such deadline"."""

    first_reaction_working_days: int | None = None
    first_reaction_working_hours: float | None = None
    answer_working_days: int | None = None
    answer_calendar_days: int | None = None
    registration_calendar_days: int | None = None
    forward_calendar_days: int | None = None
    # Total reach of the extended answer deadline, counted from registration (59-ФЗ: 30 + 30).
    extension_max_calendar_days: int | None = None

    def __post_init__(self) -> None:
        # Two ways to count the same deadline would be a configuration error.
        if self.first_reaction_working_days is not None and (
            self.first_reaction_working_hours is not None
        ):
            raise ValueError("first reaction: set working days or working hours, not both")
        if self.answer_working_days is not None and self.answer_calendar_days is not None:
            raise ValueError("answer: set working days or calendar days, not both")
        for name in ("first_reaction_working_days", "answer_working_days"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1")
        for name in (
            "answer_calendar_days",
            "registration_calendar_days",
            "forward_calendar_days",
            "extension_max_calendar_days",
        ):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must be >= 0")
        hours = self.first_reaction_working_hours
        if hours is not None and hours <= 0:
            raise ValueError("first_reaction_working_hours must be > 0")


DEFAULT_POLICIES: dict[Kind, DeadlinePolicy] = {
    Kind.MESSAGE: DeadlinePolicy(first_reaction_working_days=1, answer_working_days=10),
    Kind.INCIDENT: DeadlinePolicy(first_reaction_working_hours=4, answer_working_days=1),
    Kind.APPEAL: DeadlinePolicy(
        registration_calendar_days=3,
        forward_calendar_days=7,
        answer_calendar_days=30,
        extension_max_calendar_days=60,
    ),
}


@dataclass(frozen=True)
class Deadlines:
    registration_due: datetime | None = None
    forward_due: datetime | None = None
    first_reaction_due: datetime | None = None
    answer_due: datetime | None = None
    extended_answer_due: datetime | None = None

    def as_dict(self) -> dict[str, str]:
        """Non-empty deadlines as ISO 8601 with the local offset."""
        result: dict[str, str] = {}
        for f in fields(self):
            value: datetime | None = getattr(self, f.name)
            if value is not None:
                result[f.name] = value.isoformat()
        return result


def calendar_day_deadline(calendar: WorkCalendar, start: datetime, days: int) -> datetime:
    """59-ФЗ: last day = local date of ``start`` + ``days``, moved off non-working days."""
    if days < 0:
        raise ValueError("days must be >= 0")
    last = calendar.to_local(start).date() + timedelta(days=days)
    if not calendar.is_working_day(last):
        last = calendar.next_working_day(last)
    return calendar.end_of_day(last)


def working_day_deadline(calendar: WorkCalendar, start: datetime, days: int) -> datetime:
    """End of the ``days``-th working day after the local date of ``start``."""
    return calendar.end_of_day(calendar.add_working_days(calendar.to_local(start).date(), days))


def working_hour_deadline(calendar: WorkCalendar, start: datetime, hours: float) -> datetime:
    """``start`` (or the next start of working hours) plus ``hours`` of working time."""
    return calendar.add_working_hours(start, hours)


def compute_deadlines(
    kind: Kind,
    policy: DeadlinePolicy,
    calendar: WorkCalendar,
    received: datetime,
    registered: datetime | None = None,
) -> Deadlines:
    """Deadlines of one item; only the fields meaningful for ``kind`` are filled.

    Appeals: registration counts from ``received``; forwarding, answer and extension count
    from ``registered``. Messages and incidents count from ``received``.
    """
    received = calendar.to_local(received)
    registered = received if registered is None else calendar.to_local(registered)

    if kind is Kind.APPEAL:
        return Deadlines(
            registration_due=_calendar_or_none(
                calendar, received, policy.registration_calendar_days
            ),
            forward_due=_calendar_or_none(calendar, registered, policy.forward_calendar_days),
            answer_due=_answer_due(calendar, policy, registered),
            extended_answer_due=_calendar_or_none(
                calendar, registered, policy.extension_max_calendar_days
            ),
        )

    if policy.first_reaction_working_hours is not None:
        first = working_hour_deadline(calendar, received, policy.first_reaction_working_hours)
    elif policy.first_reaction_working_days is not None:
        first = working_day_deadline(calendar, received, policy.first_reaction_working_days)
    else:
        first = None
    return Deadlines(first_reaction_due=first, answer_due=_answer_due(calendar, policy, received))


def _calendar_or_none(calendar: WorkCalendar, start: datetime, days: int | None) -> datetime | None:
    return None if days is None else calendar_day_deadline(calendar, start, days)


def _answer_due(calendar: WorkCalendar, policy: DeadlinePolicy, start: datetime) -> datetime | None:
    if policy.answer_calendar_days is not None:
        return calendar_day_deadline(calendar, start, policy.answer_calendar_days)
    if policy.answer_working_days is not None:
        return working_day_deadline(calendar, start, policy.answer_working_days)
    return None
