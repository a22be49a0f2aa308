"""Statistical sections in SQL, on SQLite and PostgreSQL, against hand-computed answers.

The dataset (tests/support/stats_data.py), November 2026 in Okha time, "now" = 10.12.2026:

    topic    channel   kind      block    status       exec open overdue  react answer rating sat.
A   roads    telegram  message   housing  answered     E1   0    0        2     10     5      yes
B   roads    vk        message   housing  closed       -    0    1 late   4     30     2      no
C   roads    telegram  message   housing  in_progress  E1   1    1 open   1     -      -      -
D   housing  pos       appeal    housing  assigned     -    1    0        -     -      -      -
E   culture  telegram  message   culture  answered     E2   0    0        3     6      4      (r>=4)
F   culture  incident  incident  culture  closed       E2   0    0        5     20     3      partly

Reopened: B once, F twice (reopened_count counts items: 1 each). Hours are from receipt.

A is at 05:00 on 1 November local (still 31 October in UTC); C at 00:30 on 5 November
(4 November in UTC); E at 05:00 on Monday 9 November (Sunday 8 in UTC). G (31 October, 23:00)
is outside November; H (1 December, 00:30 local, still 30 November in UTC) is outside too.
"""

from __future__ import annotations

from datetime import date

import pytest

from handlers.clock import ManualClock
from handlers.org import METRICS
from storage.stats import Period, StatsError, StatsQuery, buckets, section_stats
from tests.conftest import make_services
from tests.support.stats_data import NOW, SAKHALIN, seed

NOVEMBER = Period(date(2026, 11, 1), date(2026, 12, 1))
M = METRICS  # count, overdue_count, overdue_share, median_first_reaction_hours,
# median_answer_hours, average_rating, satisfied_share, reopened_count, open_count


def row(count, overdue, share, reaction, answer, rating, satisfied, reopened, open_):
    return dict(zip(M, (count, overdue, share, reaction, answer, rating, satisfied, reopened,
                        open_), strict=True))


EXPECTED = {
    "topic": [
        ("roads", row(3, 2, 2 / 3, 2, 20, 3.5, 0.5, 1, 1)),
        ("culture", row(2, 0, 0, 4, 13, 3.5, 0.5, 1, 0)),
        ("housing", row(1, 0, 0, None, None, None, None, 0, 1)),
    ],
    "channel": [
        ("telegram", row(3, 1, 1 / 3, 2, 8, 4.5, 1.0, 0, 1)),
        ("incident_management", row(1, 0, 0, 5, 20, 3, 0.0, 1, 0)),
        ("pos", row(1, 0, 0, None, None, None, None, 0, 1)),
        ("vk", row(1, 1, 1, 4, 30, 2, 0.0, 1, 0)),
    ],
    "kind": [
        ("message", row(4, 2, 0.5, 2.5, 10, 11 / 3, 2 / 3, 1, 1)),
        ("appeal", row(1, 0, 0, None, None, None, None, 0, 1)),
        ("incident", row(1, 0, 0, 5, 20, 3, 0.0, 1, 0)),
    ],
    "block": [
        ("housing", row(4, 2, 0.5, 2, 20, 3.5, 0.5, 1, 2)),
        ("culture_sport", row(2, 0, 0, 4, 13, 3.5, 0.5, 1, 0)),
    ],
    "status": [
        ("answered", row(2, 0, 0, 2.5, 8, 4.5, 1.0, 0, 0)),
        ("closed", row(2, 1, 0.5, 4.5, 25, 2.5, 0.0, 2, 0)),
        ("assigned", row(1, 0, 0, None, None, None, None, 0, 1)),
        ("in_progress", row(1, 1, 1, 1, None, None, None, 0, 1)),
    ],
}
TOTAL = row(6, 2, 1 / 3, 3, 15, 3.5, 0.5, 2, 2)
EMPTY = row(0, 0, None, None, None, None, None, 0, 0)


@pytest.fixture
async def seeded(db_url, tmp_path):
    services = await make_services(db_url, tmp_path / "data", ManualClock(NOW))
    data = await seed(services)
    yield services, data
    await services.sessions.kw["bind"].dispose()


async def stats(services, **query):
    query.setdefault("period", NOVEMBER)
    async with services.sessions() as session:
        return await section_stats(session, StatsQuery(**query), tz=SAKHALIN, now=NOW)


def assert_rows(actual, expected):
    assert [g.key for g in actual] == [key for key, _ in expected]
    for group, (key, values) in zip(actual, expected, strict=True):
        assert set(group.values) == set(values), key
        for metric, value in values.items():
            got = group.values[metric]
            if value is None:
                assert got is None, (key, metric, got)
            else:
                assert got == pytest.approx(value, abs=1e-6), (key, metric, got)


@pytest.mark.parametrize("grouping", sorted(EXPECTED))
async def test_every_metric_by_grouping(seeded, grouping):
    services, _ = seeded
    assert_rows(await stats(services, group_by=grouping), EXPECTED[grouping])


async def test_by_executor(seeded):
    services, data = seeded
    e1, e2 = data.executors["E1"].id, data.executors["E2"].id
    assert_rows(await stats(services, group_by="executor"), [
        (e1, row(2, 1, 0.5, 1.5, 10, 5, 1.0, 0, 1)),
        (e2, row(2, 0, 0, 4, 13, 3.5, 0.5, 1, 0)),
        (None, row(2, 1, 0.5, 4, 30, 2, 0.0, 1, 1)),
    ])


async def test_total(seeded):
    services, _ = seeded
    assert_rows(await stats(services, group_by=None), [(None, TOTAL)])


async def test_days_in_local_time_including_empty_ones(seeded):
    services, _ = seeded
    rows = await stats(services, group_by="day", metrics=("count", "open_count"))
    assert len(rows) == 30 and rows[0].key == "2026-11-01" and rows[-1].key == "2026-11-30"
    counts = {g.key: g.values["count"] for g in rows if g.values["count"]}
    # A (05:00 on the 1st local) and C (00:30 on the 5th) are the previous day in UTC.
    assert counts == {"2026-11-01": 1, "2026-11-03": 1, "2026-11-05": 2, "2026-11-09": 1,
                      "2026-11-16": 1}
    assert next(g for g in rows if g.key == "2026-11-05").values == {"count": 2, "open_count": 2}


async def test_weeks_start_on_local_monday(seeded):
    services, _ = seeded
    rows = await stats(services, group_by="week")
    assert [(g.key, g.values["count"]) for g in rows] == [
        ("2026-10-26", 1), ("2026-11-02", 3), ("2026-11-09", 1), ("2026-11-16", 1),
        ("2026-11-23", 0), ("2026-11-30", 0)]
    assert_rows(rows[1:2], [("2026-11-02", row(3, 2, 2 / 3, 2.5, 30, 2, 0.0, 1, 2))])
    assert_rows(rows[-1:], [("2026-11-30", EMPTY)])


async def test_months_and_the_period_edges(seeded):
    services, _ = seeded
    rows = await stats(services, group_by="month",
                       period=Period(date(2026, 10, 1), date(2027, 1, 1)))
    assert_rows(rows, [
        ("2026-10", row(1, 1, 1, None, None, None, None, 0, 1)),  # G, overdue since 14.11
        ("2026-11", TOTAL),
        ("2026-12", row(1, 0, 0, None, None, None, None, 0, 1)),  # H, 30.11 in UTC
    ])


async def test_clusters_below_the_threshold_are_left_out(seeded):
    services, data = seeded
    rows = await stats(services, group_by="cluster", min_cluster_items=3)
    assert_rows(rows, [(data.cluster.id, row(3, 2, 2 / 3, 2, 20, 3.5, 0.5, 1, 1))])
    rows = await stats(services, group_by="cluster", min_cluster_items=2, metrics=("count",))
    assert [(g.key, g.values) for g in rows] == [(data.cluster.id, {"count": 3}),
                                                 (data.small_cluster.id, {"count": 2})]


@pytest.mark.parametrize(("filters", "expected"), [
    ({"topics": ("roads",), "channels": ("telegram",)}, 2),
    ({"statuses": ("closed",)}, 2),
    ({"kinds": ("incident",)}, 1),
    ({"blocks": ("culture_sport",)}, 2),
    ({"block_scope": "housing"}, 4),
    ({"block_scope": "housing", "blocks": ("culture_sport",)}, 0),
])
async def test_filters(seeded, filters, expected):
    services, _ = seeded
    rows = await stats(services, group_by=None, metrics=("count",), **filters)
    assert rows[0].values == {"count": expected}


async def test_a_block_scope_hides_every_other_block(seeded):
    services, _ = seeded
    rows = await stats(services, group_by="block", block_scope="culture_sport")
    assert [g.key for g in rows] == ["culture_sport"]


async def test_without_a_period_the_data_decides(seeded):
    services, _ = seeded
    rows = await stats(services, group_by="month", period=None, metrics=("count",))
    assert [(g.key, g.values["count"]) for g in rows] == [
        ("2026-10", 1), ("2026-11", 6), ("2026-12", 1)]


async def test_long_daily_periods_run_in_chunks(seeded):
    services, _ = seeded
    rows = await stats(services, group_by="day", metrics=("count",),
                       period=Period(date(2025, 1, 1), date(2027, 1, 1)))
    assert len(rows) == 730
    assert sum(g.values["count"] for g in rows) == 8


def test_bad_requests():
    with pytest.raises(StatsError):
        StatsQuery(group_by="weather")
    with pytest.raises(StatsError):
        StatsQuery(group_by="topic", metrics=("count", "happiness"))
    with pytest.raises(StatsError):
        Period(date(2026, 11, 2), date(2026, 11, 1))


def test_buckets_are_local_days_in_utc():
    (label, start, end), = buckets("day", Period(date(2026, 11, 5), date(2026, 11, 6)), SAKHALIN)
    assert label == "2026-11-05"
    assert (start.isoformat(), end.isoformat()) == ("2026-11-04T13:00:00+00:00",
                                                   "2026-11-05T13:00:00+00:00")
    months = buckets("month", Period(date(2026, 11, 20), date(2027, 1, 10)), SAKHALIN)
    assert [m[0] for m in months] == ["2026-11", "2026-12", "2027-01"]
