"""Deadlines and the production calendar (Asia/Sakhalin, UTC+11).

Expected values are hand-checked against the Russian production calendar as shipped by
``holidays.Russia`` (0.109):

* 2025: 1-8 Jan, 2 May, 8-9 May, 12-13 Jun, 3-4 Nov, 31 Dec off; Sat 1 Nov 2025 working;
* 2026: 1-9 Jan (9 Jan transferred), 23 Feb, 9 Mar, 1 May, 9 + 11 May, 12 Jun, 4 Nov,
  31 Dec (transferred) off; no working weekend days;
* 2027: 1-8 Jan, 22-23 Feb, 8 Mar, 3 + 10 May, 14 Jun, 4-5 Nov, 31 Dec off; Sat 20 Feb working.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

import pytest

from handlers.rules.calendar import WorkCalendar
from handlers.rules.deadlines import (
    DEFAULT_POLICIES,
    DeadlinePolicy,
    Deadlines,
    Kind,
    calendar_day_deadline,
    compute_deadlines,
    working_day_deadline,
    working_hour_deadline,
)

TZ = ZoneInfo("Asia/Sakhalin")
CAL = WorkCalendar(TZ)


def local(*args: int) -> datetime:
    return datetime(*args, tzinfo=TZ)  # type: ignore[misc]


# --- the library's calendar is what we think it is ------------------------------------


@pytest.mark.parametrize(
    ("day", "working"),
    [
        pytest.param(date(2025, 12, 30), True, id="2025-12-30-tue-working"),
        pytest.param(date(2025, 12, 31), False, id="2025-12-31-transferred-off"),
        pytest.param(date(2026, 1, 1), False, id="2026-01-01-new-year"),
        pytest.param(date(2026, 1, 8), False, id="2026-01-08-new-year-holidays"),
        pytest.param(date(2026, 1, 9), False, id="2026-01-09-fri-transferred-off"),
        pytest.param(date(2026, 1, 12), True, id="2026-01-12-first-working-day"),
        pytest.param(date(2026, 3, 9), False, id="2026-03-09-observed-8-march"),
        pytest.param(date(2026, 5, 9), False, id="2026-05-09-victory-day-sat"),
        pytest.param(date(2026, 5, 11), False, id="2026-05-11-observed-victory-day"),
        pytest.param(date(2026, 6, 12), False, id="2026-06-12-russia-day"),
        pytest.param(date(2026, 12, 31), False, id="2026-12-31-thu-transferred-off"),
        pytest.param(date(2025, 11, 1), True, id="2025-11-01-working-saturday"),
        pytest.param(date(2025, 11, 3), False, id="2025-11-03-transferred-off"),
        pytest.param(date(2026, 11, 28), False, id="2026-11-28-plain-saturday"),
        pytest.param(date(2027, 2, 20), True, id="2027-02-20-working-saturday"),
        pytest.param(date(2027, 2, 22), False, id="2027-02-22-transferred-off"),
    ],
)
def test_is_working_day(day: date, working: bool) -> None:
    assert CAL.is_working_day(day) is working


def test_working_saturday_comes_from_library() -> None:
    import holidays

    assert date(2025, 11, 1) in holidays.Russia(years=2025).weekend_workdays
    assert date(2026, 1, 9) in holidays.Russia(years=2026)
    assert date(2026, 12, 31) in holidays.Russia(years=2026)


def test_years_outside_library_range_fall_back_to_weekdays() -> None:
    assert CAL.is_working_day(date(1900, 1, 1))  # a Monday, no data: plain weekday
    assert not CAL.is_working_day(date(2150, 1, 4))  # a Sunday


# --- WorkCalendar methods --------------------------------------------------------------


@pytest.mark.parametrize(
    ("day", "expected"),
    [
        pytest.param(date(2025, 12, 30), date(2026, 1, 12), id="over-new-year"),
        pytest.param(date(2026, 11, 27), date(2026, 11, 30), id="friday-to-monday"),
        pytest.param(date(2025, 10, 31), date(2025, 11, 1), id="to-working-saturday"),
        pytest.param(date(2026, 12, 30), date(2027, 1, 11), id="over-31-dec-2026"),
        pytest.param(date(2026, 2, 10), date(2026, 2, 11), id="plain-next-day"),
    ],
)
def test_next_working_day(day: date, expected: date) -> None:
    assert CAL.next_working_day(day) == expected


@pytest.mark.parametrize(
    ("day", "n", "expected"),
    [
        pytest.param(date(2025, 12, 30), 10, date(2026, 1, 23), id="10-after-2025-12-30"),
        pytest.param(date(2026, 1, 1), 1, date(2026, 1, 12), id="1-from-holiday"),
        pytest.param(date(2026, 5, 7), 2, date(2026, 5, 12), id="over-victory-day"),
        pytest.param(date(2025, 10, 31), 2, date(2025, 11, 5), id="sat-then-3-4-nov"),
    ],
)
def test_add_working_days(day: date, n: int, expected: date) -> None:
    assert CAL.add_working_days(day, n) == expected


def test_add_working_days_rejects_zero() -> None:
    with pytest.raises(ValueError):
        CAL.add_working_days(date(2026, 2, 10), 0)


def test_working_hours_start_and_end_of_day() -> None:
    assert CAL.working_hours_start(date(2026, 2, 10)) == local(2026, 2, 10, 9)
    eod = CAL.end_of_day(date(2026, 1, 12))
    assert eod == local(2026, 1, 12, 23, 59, 59)
    assert eod.isoformat() == "2026-01-12T23:59:59+11:00"


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        pytest.param(local(2026, 2, 10, 9), True, id="09:00-start-inclusive"),
        pytest.param(local(2026, 2, 10, 17, 59, 59), True, id="17:59:59"),
        pytest.param(local(2026, 2, 10, 18), False, id="18:00-end-exclusive"),
        pytest.param(local(2026, 2, 10, 8, 59), False, id="08:59"),
        pytest.param(local(2026, 2, 14, 12), False, id="saturday-noon"),
        pytest.param(local(2026, 1, 9, 12), False, id="2026-01-09-noon"),
        pytest.param(local(2025, 11, 1, 12), True, id="working-saturday-noon"),
        # 22:30 UTC Monday 9 Feb is 09:30 Tuesday in Okha.
        pytest.param(datetime(2026, 2, 9, 22, 30, tzinfo=UTC), True, id="utc-next-local-day"),
        # 01:00 UTC Tuesday is 12:00 local, but 01:00 UTC Saturday is 12:00 Saturday.
        pytest.param(datetime(2026, 2, 14, 1, tzinfo=UTC), False, id="utc-saturday"),
    ],
)
def test_is_working_time(moment: datetime, expected: bool) -> None:
    assert CAL.is_working_time(moment) is expected


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        pytest.param(local(2026, 2, 10, 11, 15), local(2026, 2, 10, 11, 15), id="inside"),
        pytest.param(local(2026, 2, 10, 3), local(2026, 2, 10, 9), id="night-same-day"),
        pytest.param(local(2026, 2, 10, 18), local(2026, 2, 11, 9), id="at-18:00"),
        pytest.param(local(2026, 11, 27, 19, 30), local(2026, 11, 30, 9), id="friday-evening"),
        pytest.param(local(2025, 12, 30, 20), local(2026, 1, 12, 9), id="new-year"),
        pytest.param(
            datetime(2026, 2, 10, 3, tzinfo=ZoneInfo("Europe/Moscow")),
            local(2026, 2, 10, 11),
            id="moscow-input-converted",
        ),
    ],
)
def test_next_working_moment(moment: datetime, expected: datetime) -> None:
    result = CAL.next_working_moment(moment)
    assert result == expected
    assert result.tzinfo is TZ


@pytest.mark.parametrize(
    ("moment", "hours", "expected"),
    [
        pytest.param(local(2026, 2, 10, 10), 0.5, local(2026, 2, 10, 10, 30), id="half-hour"),
        pytest.param(local(2026, 2, 10, 14), 4, local(2026, 2, 10, 18), id="ends-at-18:00"),
        pytest.param(local(2026, 2, 10, 14), 4.25, local(2026, 2, 11, 9, 15), id="overflow"),
        pytest.param(local(2026, 2, 10, 9), 18, local(2026, 2, 11, 18), id="two-full-days"),
        pytest.param(local(2026, 2, 14, 10), 0, local(2026, 2, 16, 9), id="zero-on-weekend"),
    ],
)
def test_add_working_hours(moment: datetime, hours: float, expected: datetime) -> None:
    assert CAL.add_working_hours(moment, hours) == expected


def test_custom_working_hours() -> None:
    cal = WorkCalendar(TZ, work_start=time(8, 30), work_end=time(17, 15))
    # 2 h 15 min left on Tuesday, 1 h 45 min on Wednesday from 08:30.
    assert cal.add_working_hours(local(2026, 2, 10, 15), 4) == local(2026, 2, 11, 10, 15)
    assert cal.next_working_moment(local(2026, 2, 10, 17, 15)) == local(2026, 2, 11, 8, 30)


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda: CAL.is_working_time(datetime(2026, 2, 10, 10)), id="is_working_time"),
        pytest.param(lambda: CAL.next_working_moment(datetime(2026, 2, 10, 10)), id="next_moment"),
        pytest.param(lambda: CAL.add_working_hours(datetime(2026, 2, 10, 10), 1), id="add_hours"),
        pytest.param(
            lambda: compute_deadlines(
                Kind.MESSAGE, DEFAULT_POLICIES[Kind.MESSAGE], CAL, datetime(2026, 2, 10, 10)
            ),
            id="compute-received",
        ),
        pytest.param(
            lambda: compute_deadlines(
                Kind.APPEAL,
                DEFAULT_POLICIES[Kind.APPEAL],
                CAL,
                local(2026, 2, 10, 10),
                datetime(2026, 2, 10, 11),
            ),
            id="compute-registered",
        ),
        pytest.param(
            lambda: calendar_day_deadline(CAL, datetime(2026, 2, 10, 10), 3), id="calendar-days"
        ),
    ],
)
def test_naive_datetime_rejected(call: object) -> None:
    with pytest.raises(ValueError, match="naive"):
        call()  # type: ignore[operator]


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"work_start": time(18), "work_end": time(9)}, id="start-after-end"),
        pytest.param({"workdays": frozenset()}, id="no-workdays"),
        pytest.param({"workdays": frozenset({7})}, id="bad-weekday"),
        pytest.param(
            {
                "extra_holidays": frozenset({date(2026, 4, 14)}),
                "extra_workdays": frozenset({date(2026, 4, 14)}),
            },
            id="same-date-both-overrides",
        ),
    ],
)
def test_calendar_validation(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        WorkCalendar(TZ, **kwargs)  # type: ignore[arg-type]


def test_calendar_is_hashable_and_comparable() -> None:
    CAL.is_working_day(date(2030, 1, 1))  # fills the lazy cache
    assert WorkCalendar(TZ) == CAL
    assert hash(WorkCalendar(TZ)) == hash(CAL)


# --- compute_deadlines: the main table ------------------------------------------------

EOD = "T23:59:59+11:00"

CASES = [
    # Messages: 1 working day for the first reaction, 10 for the answer.
    pytest.param(
        Kind.MESSAGE, local(2025, 12, 30, 10), None,
        {"first_reaction_due": "2026-01-12" + EOD, "answer_due": "2026-01-23" + EOD},
        id="message-2025-12-30-over-new-year-and-9-jan",
    ),
    pytest.param(
        Kind.MESSAGE, local(2026, 1, 1, 12), None,
        {"first_reaction_due": "2026-01-12" + EOD, "answer_due": "2026-01-23" + EOD},
        id="message-2026-01-01-received-on-holiday",
    ),
    pytest.param(
        Kind.MESSAGE, local(2026, 1, 9, 23, 50), None,
        {"first_reaction_due": "2026-01-12" + EOD, "answer_due": "2026-01-23" + EOD},
        id="message-2026-01-09-transferred-off-night",
    ),
    pytest.param(
        Kind.MESSAGE, local(2026, 12, 30, 10), None,
        {"first_reaction_due": "2027-01-11" + EOD, "answer_due": "2027-01-22" + EOD},
        id="message-2026-12-30-31-dec-off",
    ),
    pytest.param(
        Kind.MESSAGE, local(2026, 2, 14, 11), None,
        {"first_reaction_due": "2026-02-16" + EOD, "answer_due": "2026-03-02" + EOD},
        id="message-saturday-23-feb-skipped",
    ),
    pytest.param(
        Kind.MESSAGE, local(2025, 10, 31, 12), None,
        {"first_reaction_due": "2025-11-01" + EOD, "answer_due": "2025-11-17" + EOD},
        id="message-friday-to-working-saturday-2025-11-01",
    ),
    pytest.param(
        # Sunday 22:30 UTC is Monday 09:30 in Okha: Monday is not counted.
        Kind.MESSAGE, datetime(2026, 1, 11, 22, 30, tzinfo=UTC), None,
        {"first_reaction_due": "2026-01-13" + EOD, "answer_due": "2026-01-26" + EOD},
        id="message-utc-sunday-is-local-monday",
    ),
    # Incidents: 4 working hours for the first reaction, 1 working day for the answer.
    pytest.param(
        Kind.INCIDENT, local(2026, 11, 27, 19, 30), None,
        {"first_reaction_due": "2026-11-30T13:00:00+11:00", "answer_due": "2026-11-30" + EOD},
        id="incident-friday-evening-sakhalin",
    ),
    pytest.param(
        Kind.INCIDENT, datetime(2026, 11, 27, 8, 30, tzinfo=UTC), None,
        {"first_reaction_due": "2026-11-30T13:00:00+11:00", "answer_due": "2026-11-30" + EOD},
        id="incident-friday-evening-given-in-utc",
    ),
    pytest.param(
        Kind.INCIDENT, local(2026, 2, 10, 3, 15), None,
        {"first_reaction_due": "2026-02-10T13:00:00+11:00", "answer_due": "2026-02-11" + EOD},
        id="incident-night-of-working-day",
    ),
    pytest.param(
        Kind.INCIDENT, local(2026, 2, 15, 10), None,
        {"first_reaction_due": "2026-02-16T13:00:00+11:00", "answer_due": "2026-02-16" + EOD},
        id="incident-sunday",
    ),
    pytest.param(
        Kind.INCIDENT, local(2026, 2, 10, 14), None,
        {"first_reaction_due": "2026-02-10T18:00:00+11:00", "answer_due": "2026-02-11" + EOD},
        id="incident-ends-exactly-at-work-end",
    ),
    pytest.param(
        Kind.INCIDENT, local(2026, 2, 19, 16), None,
        {"first_reaction_due": "2026-02-20T11:00:00+11:00", "answer_due": "2026-02-20" + EOD},
        id="incident-thursday-16-00-splits-over-two-days",
    ),
    pytest.param(
        Kind.INCIDENT, local(2026, 2, 20, 15), None,
        {"first_reaction_due": "2026-02-24T10:00:00+11:00", "answer_due": "2026-02-24" + EOD},
        id="incident-friday-15-00-over-weekend-and-23-feb",
    ),
    pytest.param(
        # 14:00 UTC Thursday is 01:00 Friday local; Monday 9 March is the observed 8 March.
        Kind.INCIDENT, datetime(2026, 3, 5, 14, tzinfo=UTC), None,
        {"first_reaction_due": "2026-03-06T13:00:00+11:00", "answer_due": "2026-03-10" + EOD},
        id="incident-utc-thursday-is-local-friday-night",
    ),
    pytest.param(
        Kind.INCIDENT, local(2025, 11, 1, 10), None,
        {"first_reaction_due": "2025-11-01T14:00:00+11:00", "answer_due": "2025-11-05" + EOD},
        id="incident-working-saturday-2025-11-01",
    ),
    pytest.param(
        Kind.INCIDENT, local(2026, 12, 30, 16), None,
        {"first_reaction_due": "2027-01-11T11:00:00+11:00", "answer_due": "2027-01-11" + EOD},
        id="incident-2026-12-30-over-31-dec-and-new-year",
    ),
    # Appeals (59-ФЗ): registration 3, forwarding 7, answer 30, extension up to 60 days.
    pytest.param(
        Kind.APPEAL, local(2026, 4, 8, 15), local(2026, 4, 9, 11),
        {
            "registration_due": "2026-04-13" + EOD,  # 11 Apr is Saturday
            "forward_due": "2026-04-16" + EOD,
            "answer_due": "2026-05-12" + EOD,  # 9 May Sat, 10 Sun, 11 observed
            "extended_answer_due": "2026-06-08" + EOD,
        },
        id="appeal-day-30-on-2026-05-09",
    ),
    pytest.param(
        Kind.APPEAL, local(2026, 5, 12, 15), local(2026, 5, 13, 11),
        {
            "registration_due": "2026-05-15" + EOD,
            "forward_due": "2026-05-20" + EOD,
            "answer_due": "2026-06-15" + EOD,  # 12 Jun is Russia Day (Friday)
            "extended_answer_due": "2026-07-13" + EOD,  # 12 Jul is Sunday
        },
        id="appeal-day-30-on-2026-06-12",
    ),
    pytest.param(
        Kind.APPEAL, local(2025, 12, 29, 17), None,
        {
            "registration_due": "2026-01-12" + EOD,  # 1 Jan
            "forward_due": "2026-01-12" + EOD,  # 5 Jan
            "answer_due": "2026-01-28" + EOD,
            "extended_answer_due": "2026-02-27" + EOD,
        },
        id="appeal-new-year-holidays",
    ),
    pytest.param(
        Kind.APPEAL, local(2026, 1, 6, 12), None,
        {
            "registration_due": "2026-01-12" + EOD,  # 9 Jan transferred off
            "forward_due": "2026-01-13" + EOD,
            "answer_due": "2026-02-05" + EOD,
            "extended_answer_due": "2026-03-10" + EOD,  # 7 Mar Sat, 8 Sun, 9 observed
        },
        id="appeal-registration-on-2026-01-09",
    ),
    pytest.param(
        Kind.APPEAL, local(2026, 12, 1, 10), None,
        {
            "registration_due": "2026-12-04" + EOD,
            "forward_due": "2026-12-08" + EOD,
            "answer_due": "2027-01-11" + EOD,  # 31 Dec 2026 transferred off
            "extended_answer_due": "2027-02-01" + EOD,  # 30 Jan 2027 is Saturday
        },
        id="appeal-day-30-on-2026-12-31",
    ),
    pytest.param(
        # 20:00 UTC 1 June is 07:00 2 June in Okha.
        Kind.APPEAL, datetime(2026, 6, 1, 20, tzinfo=UTC), None,
        {
            "registration_due": "2026-06-05" + EOD,
            "forward_due": "2026-06-09" + EOD,
            "answer_due": "2026-07-02" + EOD,
            "extended_answer_due": "2026-08-03" + EOD,  # 1 Aug is Saturday
        },
        id="appeal-utc-date-differs-from-local",
    ),
]


@pytest.mark.parametrize(("kind", "received", "registered", "expected"), CASES)
def test_compute_deadlines(
    kind: Kind,
    received: datetime,
    registered: datetime | None,
    expected: dict[str, str],
) -> None:
    result = compute_deadlines(kind, DEFAULT_POLICIES[kind], CAL, received, registered)
    assert result.as_dict() == expected


# --- overrides -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cal", "kind", "received", "expected"),
    [
        pytest.param(
            WorkCalendar(TZ, extra_holidays=frozenset({date(2026, 4, 14)})),
            Kind.MESSAGE, local(2026, 4, 13, 10),
            {"first_reaction_due": "2026-04-15" + EOD, "answer_due": "2026-04-28" + EOD},
            id="extra-holiday-tuesday",
        ),
        pytest.param(
            WorkCalendar(TZ, extra_workdays=frozenset({date(2026, 4, 18)})),
            Kind.MESSAGE, local(2026, 4, 17, 10),
            {"first_reaction_due": "2026-04-18" + EOD, "answer_due": "2026-04-30" + EOD},
            id="extra-workday-saturday",
        ),
        pytest.param(
            WorkCalendar(TZ, extra_workdays=frozenset({date(2026, 6, 12)})),
            Kind.INCIDENT, local(2026, 6, 11, 16),
            {"first_reaction_due": "2026-06-12T11:00:00+11:00", "answer_due": "2026-06-12" + EOD},
            id="extra-workday-overrides-russia-day",
        ),
        pytest.param(
            CAL,
            Kind.INCIDENT, local(2026, 6, 11, 16),
            {"first_reaction_due": "2026-06-15T11:00:00+11:00", "answer_due": "2026-06-15" + EOD},
            id="same-incident-without-override",
        ),
        pytest.param(
            WorkCalendar(TZ, extra_holidays=frozenset({date(2025, 11, 1)})),
            Kind.MESSAGE, local(2025, 10, 31, 12),
            {"first_reaction_due": "2025-11-05" + EOD, "answer_due": "2025-11-18" + EOD},
            id="extra-holiday-overrides-working-saturday",
        ),
        pytest.param(
            WorkCalendar(TZ, extra_holidays=frozenset({date(2026, 4, 13)})),
            Kind.APPEAL, local(2026, 4, 9, 10),
            {
                "registration_due": "2026-04-14" + EOD,  # Sat 12 -> Sun -> extra holiday 13
                "forward_due": "2026-04-16" + EOD,
                "answer_due": "2026-05-12" + EOD,
                "extended_answer_due": "2026-06-08" + EOD,
            },
            id="extra-holiday-moves-calendar-day-deadline",
        ),
    ],
)
def test_overrides(
    cal: WorkCalendar, kind: Kind, received: datetime, expected: dict[str, str]
) -> None:
    assert compute_deadlines(kind, DEFAULT_POLICIES[kind], cal, received).as_dict() == expected


# --- as_dict, policies and public helpers ---------------------------------------------


@pytest.mark.parametrize(
    ("kind", "keys"),
    [
        pytest.param(
            Kind.APPEAL,
            {"registration_due", "forward_due", "answer_due", "extended_answer_due"},
            id="appeal",
        ),
        pytest.param(Kind.MESSAGE, {"first_reaction_due", "answer_due"}, id="message"),
        pytest.param(Kind.INCIDENT, {"first_reaction_due", "answer_due"}, id="incident"),
    ],
)
def test_as_dict_keys(kind: Kind, keys: set[str]) -> None:
    result = compute_deadlines(kind, DEFAULT_POLICIES[kind], CAL, local(2026, 2, 10, 10))
    assert set(result.as_dict()) == keys


def test_as_dict_skips_none_and_uses_local_offset() -> None:
    d = Deadlines(answer_due=datetime(2026, 1, 12, 12, 59, 59, tzinfo=UTC).astimezone(TZ))
    assert d.as_dict() == {"answer_due": "2026-01-12T23:59:59+11:00"}


def test_results_are_in_calendar_zone() -> None:
    result = compute_deadlines(
        Kind.INCIDENT,
        DEFAULT_POLICIES[Kind.INCIDENT],
        CAL,
        datetime(2026, 2, 10, 0, tzinfo=UTC),
    )
    assert result.first_reaction_due is not None
    assert result.first_reaction_due.tzinfo is TZ


def test_message_policy_per_topic() -> None:
    policy = DeadlinePolicy(first_reaction_working_hours=2, answer_working_days=3)
    result = compute_deadlines(Kind.MESSAGE, policy, CAL, local(2026, 2, 10, 17))
    assert result.as_dict() == {
        "first_reaction_due": "2026-02-11T10:00:00+11:00",
        "answer_due": "2026-02-13" + EOD,
    }


def test_missing_policy_values_give_no_deadline() -> None:
    result = compute_deadlines(Kind.MESSAGE, DeadlinePolicy(), CAL, local(2026, 2, 10, 10))
    assert result.as_dict() == {}


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param(
            {"first_reaction_working_days": 1, "first_reaction_working_hours": 4},
            id="two-first-reactions",
        ),
        pytest.param({"answer_working_days": 10, "answer_calendar_days": 30}, id="two-answers"),
        pytest.param({"answer_working_days": 0}, id="zero-working-days"),
        pytest.param({"first_reaction_working_hours": 0}, id="zero-hours"),
        pytest.param({"answer_calendar_days": -1}, id="negative-calendar-days"),
    ],
)
def test_policy_validation(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        DeadlinePolicy(**kwargs)  # type: ignore[arg-type]


def test_public_helpers() -> None:
    # Extension counted from registration: 30 + 30 days.
    assert calendar_day_deadline(CAL, local(2026, 4, 9, 10), 60) == local(2026, 6, 8, 23, 59, 59)
    # Reopened message: 10 working days from the reopening moment.
    assert working_day_deadline(CAL, local(2026, 1, 12, 10), 10) == local(2026, 1, 26, 23, 59, 59)
    assert working_hour_deadline(CAL, local(2026, 11, 27, 19, 30), 4) == local(2026, 11, 30, 13)
    # Zero calendar days: the same day, moved off a holiday.
    assert calendar_day_deadline(CAL, local(2026, 1, 9, 10), 0) == local(2026, 1, 12, 23, 59, 59)


def test_previous_working_day_and_working_days_between():
    from datetime import date
    from zoneinfo import ZoneInfo

    from handlers.rules.calendar import WorkCalendar

    calendar = WorkCalendar(tz=ZoneInfo("Asia/Sakhalin"))
    assert calendar.previous_working_day(date(2026, 1, 12)) == date(2025, 12, 30)  # over NY
    assert calendar.previous_working_day(date(2026, 11, 30)) == date(2026, 11, 27)
    assert calendar.working_days_between(date(2026, 12, 8), date(2026, 12, 11)) == 3
    assert calendar.working_days_between(date(2025, 12, 30), date(2026, 1, 12)) == 1
    assert calendar.working_days_between(date(2026, 12, 11), date(2026, 12, 8)) == 0


def test_the_production_calendar_file_matches_the_library():
    from handlers.rules.production_calendar import YEARS, _stored, from_library

    stored = _stored()
    for year in YEARS:
        assert stored[year] == from_library(year), (
            f"{year} differs from the installed holidays package: regenerate the file with "
            "`python -m handlers.rules.production_calendar`")
    # A year outside the file still comes from the library.
    from handlers.rules.production_calendar import year_data

    assert year_data(max(YEARS) + 1) == from_library(max(YEARS) + 1)
