"""Statistics count an item on the local day it was received, whenever it was registered.

Hand-computed set (Okha time, UTC+11): a ПОС export of October imported on 30 November, items
registered by chat in November, and items on both sides of a local midnight.

    received (local)        how          topic    counted in
    20.10.2026 10:00        import 30.11 roads    October
    31.10.2026 23:30        import 30.11 housing  October (31.10 is 12:30 UTC the same day)
    01.11.2026 00:30        import 30.11 roads    November (still 31.10 in UTC)
    the seeded A-F          chat         …        November (tests/support/stats_data.py)
    G 31.10 23:00, H 01.12 00:30 (still 30.11 in UTC)
"""

from __future__ import annotations

import asyncio
import json
from datetime import date, datetime

import pytest

from bot.cli import main
from handlers.analytics.report import Audience, build_report
from handlers.clock import ManualClock
from handlers.i18n import translator
from handlers.operator.import_plan import prepare
from handlers.operator.importer import run_import
from handlers.operator.mapping import default_mapping
from handlers.operator.tabular import read_table
from handlers.summaries import build_summary
from storage.models import RegistrationCounter
from storage.stats import Period, StatsQuery, section_stats
from tests.conftest import make_services
from tests.support.stats_data import NOW, SAKHALIN, seed
from tests.test_import import write_csv

IMPORTED_ON = datetime(2026, 11, 30, 15, 0, tzinfo=SAKHALIN)
OCTOBER = Period(date(2026, 10, 1), date(2026, 11, 1))
NOVEMBER = Period(date(2026, 11, 1), date(2026, 12, 1))


@pytest.fixture
async def services(db_url, tmp_path):
    clock = ManualClock(IMPORTED_ON)
    services = await make_services(db_url, tmp_path / "data", clock)
    await seed(services)
    async with services.sessions() as session, session.begin():
        # The seeded items take numbers of their own; the import numbers after them.
        session.add(RegistrationCounter(year=2026, last_value=900_000))
    rows = [["7001", "20.10.2026 10:00", "Ямы на дорогах", "Яма", "", "", "", "", ""],
            ["7002", "31.10.2026 23:30", "Отопление", "Холодно", "", "", "", "", ""],
            ["7003", "01.11.2026 00:30", "Ямы на дорогах", "Ещё яма", "", "", "", "", ""]]
    table = read_table(write_csv(tmp_path / "pos.csv", rows))
    plan = prepare(table, "pos", default_mapping("pos"), services.org, SAKHALIN, IMPORTED_ON)
    assert (await run_import(services, plan, source="test")).created == 3
    clock.set(NOW)
    yield services
    await services.sessions.kw["bind"].dispose()


async def counts(services, period, group_by="topic", **query):
    async with services.readers() as session:
        groups = await section_stats(session, StatsQuery(group_by=group_by, metrics=("count",),
                                                         period=period, **query),
                                     tz=SAKHALIN, now=NOW)
    return {g.key: g.values["count"] for g in groups}


async def test_an_import_lands_in_the_month_the_citizens_wrote(services):
    # October: G (other) and two imported items (roads 20.10, housing 31.10 23:30).
    assert await counts(services, OCTOBER) == {"other": 1, "roads": 1, "housing": 1}
    # November: A-F (roads 3, culture 2, housing 1) and the import of 01.11 00:30 (roads).
    assert await counts(services, NOVEMBER) == {"roads": 4, "culture": 2, "housing": 1}
    # Nothing piles up on the day of the import.
    assert await counts(services, Period(date(2026, 11, 30), date(2026, 12, 1))) == {}


async def test_the_day_across_midnight_in_sakhalin(services):
    days = await counts(services, Period(date(2026, 10, 31), date(2026, 11, 2)), "day")
    # 31.10: G 23:00 and the import 23:30; 01.11: A 05:00 and the import 00:30.
    assert days == {"2026-10-31": 2, "2026-11-01": 2}
    assert await counts(services, Period(date(2026, 12, 1), date(2026, 12, 2))) == {"roads": 1}


async def test_rollup_and_items_agree_on_this_set(services):
    async with services.readers() as session:
        for group_by in ("topic", "channel", "kind", "block", "status", "day", "week", None):
            query = StatsQuery(group_by=group_by, period=Period(date(2026, 10, 1),
                                                                date(2026, 12, 31)))
            fast = await section_stats(session, query, tz=SAKHALIN, now=NOW)
            slow = await section_stats(session, query, tz=SAKHALIN, now=NOW, from_items=True)
            assert [(g.key, g.values) for g in fast] == [(g.key, g.values) for g in slow]


async def test_report_header_names_both_days(services):
    async with services.readers() as session:
        report = await build_report(session, services.org, SAKHALIN, NOW,
                                    services.org.section("topics"), NOVEMBER, Audience(),
                                    translator("ru"))
    assert report.period_text == "01.11.2026 – 30.11.2026"


async def test_summary_counts_by_receipt(services):
    async with services.readers() as session:
        # The daily summary of 1 November (sent on the 2nd): A and the import of 00:30.
        summary = await build_summary(session, services,
                                      datetime(2026, 11, 2, 9, 0, tzinfo=SAKHALIN))
    assert summary.new_total == 2
    assert dict(summary.new_by_channel) == {"telegram": 1, "pos": 1}
    assert summary.daily_new[-1] == (date(2026, 11, 1), 2)


async def test_cli_to_is_inclusive(services, db_url, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MCU_DATABASE_URL", db_url)
    monkeypatch.setenv("MCU_DATA_DIR", str(tmp_path / "cli"))

    async def topics(first: str, last: str) -> dict[str, int]:
        args = ["stats", "--section", "topics", "--from", first, "--to", last, "--format",
                "json"]
        assert await asyncio.to_thread(main, args) == 0
        return {row["topic"]: row["count"] for row in json.loads(capsys.readouterr().out)}

    assert await topics("2026-11-01", "2026-11-30") == {"roads": 4, "culture": 2, "housing": 1}
    # 01.12 is included when asked for: H, received at 00:30 on 1 December.
    assert (await topics("01.11.2026", "01.12.2026"))["roads"] == 5
    assert await topics("2026-11-16", "2026-11-16") == {"culture": 1}  # one day: F
    assert await asyncio.to_thread(main, ["stats", "--section", "topics", "--from",
                                          "2026-11-02", "--to", "2026-11-01"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


async def test_a_section_may_ask_for_the_date_of_registration(services):
    """Only where a section says so explicitly: the import of 30 November then counts on the
    30th (the seeded A-H were registered when received)."""
    from handlers.org import Section

    import_day = Period(date(2026, 11, 30), date(2026, 12, 1))
    for counted_by in ("registered", "created"):
        assert await counts(services, import_day, counted_by=counted_by) == {
            "roads": 2, "housing": 1}
    section = Section(name="by_registration", title="По дате регистрации",
                      title_en="By registration", group_by="topic", metrics=["count"],
                      date="registered")
    async with services.readers() as session:
        report = await build_report(session, services.org, SAKHALIN, NOW, section, OCTOBER,
                                    Audience(), translator("ru"))
    assert {row.key: row.values["count"] for row in report.rows} == {"other": 1}
    assert "по дате регистрации" in report.filters
