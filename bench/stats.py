"""Benchmark of the statistical sections: `python bench/stats.py [--items N] [--no-postgres]`.

Builds N items (default 1,000,000, one year) in a migrated SQLite file, cached on disk under
bench/.data/ between runs, and in a throw-away PostgreSQL server (tests/support/postgres.py),
then times on each database, in the same run:

- the raw indexed `SELECT topic, status, count(*) FROM items GROUP BY topic, status` (the
  baseline: it reads one covering index);
- every shipped section as the chat and `mcu stats` compute it (groups, medians, the total,
  the labels) over a year and over 30 days, as a ratio to the baseline (goal: ≤ 3× a year);
- the same section over a year computed from the items alone (`from_items`, the v1 way:
  window-function medians over every item of the period), for the before/after;
- the daily summary with its chart (goal: ≤ 1 s).

Not part of the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy import text

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import synthetic  # noqa: E402
from common import analyze, loading_items  # noqa: E402

from bot.settings import DEFAULT_ORG_FILE  # noqa: E402
from handlers.analytics.report import Audience, build_report  # noqa: E402
from handlers.clock import ManualClock  # noqa: E402
from handlers.context import Services  # noqa: E402
from handlers.files import FileStore  # noqa: E402
from handlers.i18n import translator  # noqa: E402
from handlers.org import Organisation, load_organisation  # noqa: E402
from handlers.summaries import build_summary, chart  # noqa: E402
from storage.db import create_engine, read_session_factory, session_factory  # noqa: E402
from storage.migrate import upgrade  # noqa: E402
from storage.rollups import rebuild_sync  # noqa: E402
from storage.stats import Period  # noqa: E402

TZ = ZoneInfo("Asia/Sakhalin")
START, END = date(2025, 12, 1), date(2026, 12, 1)
NOW = datetime(2026, 12, 10, 12, 0, tzinfo=TZ)
BATCH = 100_000
CLUSTERS = 5_000
RAW = "SELECT topic, status, count(*) FROM items GROUP BY topic, status"
CACHE = ROOT / "bench" / ".data"


def rows(org: Organisation, count: int, executors: dict[str, list[int]]) -> Any:
    return synthetic.items(org, count, datetime.combine(START, datetime.min.time(), TZ),
                           datetime.combine(END, datetime.min.time(), TZ), now=NOW,
                           executors=executors, clusters=CLUSTERS)


def executor_rows(org: Organisation) -> list[tuple[str, str, str]]:
    return [("executor", block.id, f"Исполнитель {block.id} {i}")
            for block in org.blocks for i in range(3)]


def executors_by_block(org: Organisation) -> dict[str, list[int]]:
    result: dict[str, list[int]] = {}
    for number, (_, block, _) in enumerate(executor_rows(org), start=1):
        result.setdefault(block, []).append(number)
    return result


def generate_sqlite(path: Path, org: Organisation, count: int) -> None:
    """Bulk insert: indexes dropped during the load and rebuilt after, big transactions."""
    with loading_items(path) as connection:
        stamp = NOW.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")
        connection.execute("BEGIN")
        connection.executemany(
            "INSERT INTO staff (id, role, block_id, name, created_at) VALUES (?, ?, ?, ?, ?)",
            [(i, *row, stamp) for i, row in enumerate(executor_rows(org), start=1)])
        connection.executemany(
            "INSERT INTO clusters (id, topic, label, created_at) VALUES (?, ?, ?, ?)",
            [(i, "roads", f"улица {i}", stamp) for i in range(1, CLUSTERS + 1)])
        connection.execute("COMMIT")
        insert = (f"INSERT INTO items ({', '.join(synthetic.COLUMNS)}) "
                  f"VALUES ({', '.join('?' for _ in synthetic.COLUMNS)})")
        batch: list[tuple[object, ...]] = []
        for row in rows(org, count, executors_by_block(org)):
            batch.append(synthetic.as_sqlite(row))
            if len(batch) == BATCH:
                connection.execute("BEGIN")
                connection.executemany(insert, batch)
                connection.execute("COMMIT")
                batch.clear()
        if batch:
            connection.execute("BEGIN")
            connection.executemany(insert, batch)
            connection.execute("COMMIT")
    engine = create_sync_engine(f"sqlite:///{path}")
    with engine.begin() as sync:
        rebuild_sync(sync, TZ, durations=False)  # the rows carry their durations already
    engine.dispose()
    analyze(path)


async def generate_postgres(url: str, org: Organisation, count: int) -> None:
    import asyncpg

    dsn = url.replace("postgresql+asyncpg://", "postgresql://")
    connection = await asyncpg.connect(dsn)
    indexes = await connection.fetch(
        "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'items' "
        "AND indexname NOT LIKE 'pk_%' AND indexname NOT LIKE 'uq_%'")
    for index in indexes:
        await connection.execute(f'DROP INDEX "{index["indexname"]}"')
    stamp = NOW.astimezone(UTC).replace(tzinfo=None)
    await connection.copy_records_to_table(
        "staff", columns=["id", "role", "block_id", "name", "created_at"],
        records=[(i, *row, stamp) for i, row in enumerate(executor_rows(org), start=1)])
    await connection.copy_records_to_table(
        "clusters", columns=["id", "topic", "label", "created_at"],
        records=[(i, "roads", f"улица {i}", stamp) for i in range(1, CLUSTERS + 1)])
    batch: list[tuple[object, ...]] = []
    for row in rows(org, count, executors_by_block(org)):
        batch.append(synthetic.as_postgres(row))
        if len(batch) == BATCH:
            await connection.copy_records_to_table("items", columns=list(synthetic.COLUMNS),
                                                   records=batch)
            batch.clear()
    if batch:
        await connection.copy_records_to_table("items", columns=list(synthetic.COLUMNS),
                                               records=batch)
    for index in indexes:
        await connection.execute(index["indexdef"])
    await connection.execute("SELECT setval(pg_get_serial_sequence('items', 'id'), "
                             "(SELECT max(id) FROM items))")
    await connection.close()
    async_engine = create_engine(url)
    async with async_engine.begin() as conn:
        await conn.run_sync(lambda sync: rebuild_sync(sync, TZ, durations=False))
    await async_engine.dispose()
    connection = await asyncpg.connect(dsn)
    await connection.execute("VACUUM ANALYZE")
    await connection.close()


async def best_of(runs: int, job: Callable[[], Awaitable[object]]) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        await job()
        times.append(time.perf_counter() - started)
    return min(times)


async def measure(url: str, org: Organisation, runs: int, label: str, tmp: Path) -> None:
    engine = create_engine(url)
    sessions = read_session_factory(engine, tz=TZ)
    t = translator("ru")
    # 30 days across a month boundary: no whole month inside, so only daily rollup rows.
    year, month = Period(START, END), Period(date(2026, 10, 17), date(2026, 11, 16))
    audiences = {"": Audience(), " (a head)": Audience(block_scope="housing")}
    async with sessions() as session:
        count = await session.scalar(text("SELECT count(*) FROM items"))

        async def raw() -> object:
            return (await session.execute(text(RAW))).all()

        baseline = await best_of(runs, raw)
        print(f"\n{label}: {count:,} items; year {year.start} – {year.last_day}, 30 days "
              f"{month.start} – {month.last_day}; best of {runs}")
        print(f"{'section':<24} {'groups':>6} {'year, s':>8} {'× raw':>6} {'30 d, s':>8} "
              f"{'× raw':>6} {'v1 year, s':>10} {'× raw':>6}")
        print(f"{'raw GROUP BY':<24} {'':>6} {baseline:>8.3f} {1:>6.1f}")
        for section in org.sections:
            for suffix, audience in audiences.items():
                if suffix and section.group_by != "block":
                    continue
                cells, groups = [], 0
                for period, from_items in ((year, False), (month, False), (year, True)):
                    def job(section=section, period=period,  # type: ignore[no-untyped-def]
                            audience=audience, from_items=from_items):
                        return build_report(session, org, TZ, NOW, section, period, audience,
                                            t, from_items=from_items)

                    report = await job()
                    seconds = await best_of(1 if from_items else runs, job)
                    width = 10 if from_items else 8
                    cells.append(f"{seconds:>{width}.3f} {seconds / baseline:>6.1f}")
                    groups = groups or len(report.rows)
                print(f"{section.name + suffix:<24} {groups:>6} {' '.join(cells)}")
    services = Services(sessions=session_factory(engine, tz=TZ), org=org,
                        clock=ManualClock(NOW), files=FileStore(tmp), tz=TZ)

    async def summary() -> object:
        async with services.readers() as session:
            built = await build_summary(session, services, NOW, days=1)
        return await asyncio.to_thread(chart, built, tmp / "daily.png", t)

    await summary()
    seconds = await best_of(runs, summary)
    print(f"daily summary with its chart: {seconds:.3f} s (goal ≤ 1 s)")
    await engine.dispose()


def sqlite_path(count: int, given: Path | None) -> Path:
    CACHE.mkdir(parents=True, exist_ok=True)
    return given or CACHE / f"stats-{count}.sqlite3"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--db", type=Path, help="the SQLite file (default: bench/.data/, "
                                                "kept between runs)")
    parser.add_argument("--fresh", action="store_true", help="build the SQLite file again")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--no-sqlite", action="store_true")
    args = parser.parse_args()
    org = load_organisation(DEFAULT_ORG_FILE)
    CACHE.mkdir(parents=True, exist_ok=True)
    if not args.no_sqlite:
        path = sqlite_path(args.items, args.db)
        url = f"sqlite+aiosqlite:///{path}"
        if args.fresh or not path.exists():
            path.unlink(missing_ok=True)
            started = time.perf_counter()
            upgrade(url)
            generate_sqlite(path, org, args.items)
            print(f"SQLite: generated {args.items:,} items in "
                  f"{time.perf_counter() - started:.1f} s ({path.stat().st_size / 2**20:.0f} MiB)")
        else:
            upgrade(url)  # a cached file from an older schema catches up
        print(f"SQLite {sqlite3.sqlite_version}, {path}")
        asyncio.run(measure(url, org, args.runs, "SQLite", CACHE))
    if not args.no_postgres:
        from tests.support.postgres import PostgresServer

        with PostgresServer(settings={"work_mem": "16MB", "shared_buffers": "256MB"}) as server:
            url = server.create_database("bench_stats")
            started = time.perf_counter()
            upgrade(url)
            asyncio.run(generate_postgres(url, org, args.items))
            print(f"\nPostgreSQL: generated {args.items:,} items in "
                  f"{time.perf_counter() - started:.1f} s")
            asyncio.run(measure(url, org, args.runs, "PostgreSQL", CACHE))


if __name__ == "__main__":
    main()
