"""The rollup never disagrees with the items: random operations, then every section computed
both ways (the rollup and ordered medians, and from the items alone), then a rebuild from
scratch that must find the very same rollup rows. On SQLite and PostgreSQL.
"""

from __future__ import annotations

import random
from datetime import date, datetime, timedelta

import pytest
from sqlalchemy import insert, select, update

from handlers.clock import ManualClock
from handlers.items import NewItem, register_item
from handlers.operator.import_plan import prepare
from handlers.operator.importer import run_import
from handlers.operator.mapping import default_mapping
from handlers.operator.tabular import read_table
from handlers.org import METRICS
from handlers.rules.deadlines import Kind
from handlers.rules.lifecycle import Actor
from storage.models import Citizen, Item, ItemDayStats, ItemMonthStats
from storage.rollups import RollupError, rebuild
from storage.stats import ROLLUP_GROUPINGS, Period, StatsQuery, section_stats
from tests.conftest import make_services
from tests.support.stats_data import SAKHALIN
from tests.test_import import write_csv

NOW = datetime(2026, 12, 20, 12, 0, tzinfo=SAKHALIN)
TOPICS = ("roads", "housing", "energy", "culture", "other")
CHANNELS = ("telegram", "vk", "pos", "phone")
PERIODS = (Period(date(2026, 10, 1), date(2027, 1, 1)), Period(date(2026, 11, 1),
                                                               date(2026, 11, 2)),
           Period(date(2026, 11, 5), date(2026, 12, 6)))


@pytest.fixture
async def services(db_url, tmp_path):
    services = await make_services(db_url, tmp_path / "data", ManualClock(NOW))
    yield services
    await services.sessions.kw["bind"].dispose()


def moment(rng: random.Random) -> datetime:
    """Within October–December, often minutes from a local midnight."""
    day = date(2026, 10, 1) + timedelta(days=rng.randrange(85))
    minutes = rng.choice((rng.randrange(1440), rng.randrange(30), 1440 - 1 - rng.randrange(30)))
    return datetime.combine(day, datetime.min.time(), SAKHALIN) + timedelta(
        minutes=minutes, seconds=rng.randrange(60), microseconds=rng.randrange(10**6))


async def random_operations(services, rng: random.Random, steps: int) -> None:
    org = services.org
    async with services.sessions() as session, session.begin():
        citizen = Citizen(name="Житель", created_at=NOW)
        session.add(citizen)
    for step in range(steps):
        operation = rng.choice(("register", "register", "answer", "react", "reopen",
                                "redirect", "rate", "extend", "forget", "import"))
        async with services.sessions() as session, session.begin():
            items = list((await session.scalars(select(Item).order_by(Item.id))).all())
            item = rng.choice(items) if items else None
            if operation == "register" or item is None:
                await register_item(session, services, NewItem(
                    kind=rng.choice((Kind.MESSAGE, Kind.APPEAL)),
                    channel=rng.choice(CHANNELS), topic=rng.choice(TOPICS),
                    text="Текст", received_at=moment(rng), citizen_id=citizen.id),
                    Actor.SYSTEM)
            elif operation == "answer":
                item.answered_at = item.received_at + timedelta(hours=rng.uniform(0, 400))
                item.status = rng.choice(("answered", "closed"))
            elif operation == "react":
                item.first_reaction_at = item.received_at + timedelta(minutes=rng.randrange(900))
                item.status = "in_progress"
            elif operation == "reopen":
                item.status = "reopened"
                item.reopened_count += 1
            elif operation == "redirect":
                item.topic = rng.choice(TOPICS)
                item.block_id = org.block_of_topic[item.topic].id
                item.status = "redirected"
            elif operation == "rate":
                item.rating = rng.choice((None, 1, 2, 3, 4, 5))
                item.satisfaction = rng.choice((None, "yes", "partly", "no"))
                item.status = "closed"
            elif operation == "extend":
                item.answer_due = (item.answer_due or NOW) + timedelta(days=rng.randrange(-20, 20))
            elif operation == "forget":
                # What /forget does to the items of a citizen (handlers/citizen/privacy.py):
                # a Core UPDATE of columns the statistics do not read.
                await session.execute(update(Item).where(Item.citizen_id == citizen.id)
                                      .values(text="(удалено)", reply_account_id=None,
                                              updated_at=NOW))
        if operation == "import":
            rows = [[f"R{step}-{i}", moment(rng).strftime("%d.%m.%Y %H:%M"),
                     rng.choice(("Ямы на дорогах", "Отопление")), "Текст", "", "", "", "", ""]
                    for i in range(rng.randrange(1, 4))]
            table = read_table(write_csv(services.files.root.parent / f"i{step}.csv", rows))
            plan = prepare(table, "pos", default_mapping("pos"), services.org, SAKHALIN, NOW)
            await run_import(services, plan, source="test")


async def rollup_rows(services) -> list[tuple]:
    """Every row of both rollups (days, then months)."""
    async with services.readers() as session:
        return [sorted(tuple(r) for r in (await session.execute(
            select(*table.__table__.c))).all()) for table in (ItemDayStats, ItemMonthStats)]


async def test_rollup_matches_the_items_after_random_operations(services):
    await random_operations(services, random.Random(15), 160)
    async with services.readers() as session:
        for period in PERIODS:
            for grouping in ROLLUP_GROUPINGS:
                for scope in (None, "housing"):
                    query = StatsQuery(group_by=grouping or None, metrics=METRICS, period=period,
                                       block_scope=scope)
                    fast = await section_stats(session, query, tz=SAKHALIN, now=NOW)
                    slow = await section_stats(session, query, tz=SAKHALIN, now=NOW,
                                               from_items=True)
                    assert [g.key for g in fast] == [g.key for g in slow], (grouping, period)
                    for a, b in zip(fast, slow, strict=True):
                        for metric in METRICS:
                            expected = b.values[metric]
                            assert a.values[metric] == (expected if expected is None else
                                                        pytest.approx(expected, rel=1e-9)), (
                                grouping, period, a.key, metric, a.values, b.values)
    kept = await rollup_rows(services)
    days, months = kept
    assert sum(row[6] for row in days) == sum(row[6] for row in months) > 40
    async with services.sessions() as session, session.begin():
        await rebuild(session, SAKHALIN)
    assert await rollup_rows(services) == kept


async def test_changes_that_would_bypass_the_rollup_are_refused(services):
    await random_operations(services, random.Random(1), 5)
    async with services.sessions() as session:
        with pytest.raises(RollupError):
            async with session.begin():
                await session.execute(update(Item).values(status="closed"))
        with pytest.raises(RollupError):
            async with session.begin():
                await session.execute(insert(Item), [{"number": "X"}])


async def test_statistics_read_beside_a_held_write_lock(sqlite_url, tmp_path):
    """/stats, `mcu stats` and the summaries read through read-only sessions: on SQLite they
    begin DEFERRED and read a snapshot while another connection holds the write lock."""
    import asyncio

    services = await make_services(sqlite_url, tmp_path / "data", ManualClock(NOW))
    await random_operations(services, random.Random(3), 10)
    try:
        async with services.sessions() as writer, writer.begin():
            await writer.execute(update(Item).values(updated_at=NOW))  # BEGIN IMMEDIATE held
            async with services.readers() as reader:
                rows = await asyncio.wait_for(section_stats(
                    reader, StatsQuery(group_by="topic", period=PERIODS[0]), tz=SAKHALIN,
                    now=NOW), timeout=5)
            assert sum(g.values["count"] for g in rows) > 0
    finally:
        await services.sessions.kw["bind"].dispose()


async def test_mcu_stats_rebuild(sqlite_url, tmp_path, monkeypatch, capsys):
    import asyncio

    from sqlalchemy import delete

    from bot.cli import main

    services = await make_services(sqlite_url, tmp_path / "data", ManualClock(NOW))
    try:
        await random_operations(services, random.Random(7), 30)
        kept = await rollup_rows(services)
        async with services.sessions() as session, session.begin():
            await session.execute(delete(ItemDayStats))  # lost, as after a manual repair
        assert (await rollup_rows(services))[0] == []
        monkeypatch.setenv("MCU_DATABASE_URL", sqlite_url)
        monkeypatch.setenv("MCU_DATA_DIR", str(tmp_path / "cli"))
        assert await asyncio.to_thread(main, ["stats", "rebuild"]) == 0
        assert "rebuilt" in capsys.readouterr().out
        assert await rollup_rows(services) == kept
    finally:
        await services.sessions.kw["bind"].dispose()
