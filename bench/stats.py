"""Benchmark of the statistical sections on SQLite: `python bench/stats.py [--items N]`.

Generates N items (default 1,000,000) in a fresh, migrated SQLite file, then times each shipped
section as the chat and `mcu stats` compute it (groups, medians, the total, the labels) and
prints the ratio to a raw `SELECT topic, status, count(*) FROM items GROUP BY topic, status`
answered from its covering index in the same process. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import text

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import synthetic  # noqa: E402

from bot.settings import DEFAULT_ORG_FILE  # noqa: E402
from handlers.analytics.report import Audience, build_report  # noqa: E402
from handlers.i18n import translator  # noqa: E402
from handlers.org import Organisation, load_organisation  # noqa: E402
from storage.db import create_engine, session_factory  # noqa: E402
from storage.migrate import upgrade  # noqa: E402
from storage.stats import Period  # noqa: E402

TZ = ZoneInfo("Asia/Sakhalin")
START, END = date(2025, 12, 1), date(2026, 12, 1)
NOW = datetime(2026, 12, 10, 12, 0, tzinfo=TZ)
BATCH = 100_000
CLUSTERS = 5_000
RAW = "SELECT topic, status, count(*) FROM items GROUP BY topic, status"


def generate(path: Path, org: Organisation, count: int) -> None:
    """Bulk insert: indexes dropped during the load and rebuilt after, big transactions."""
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode=OFF")
    connection.execute("PRAGMA synchronous=OFF")
    indexes = connection.execute(
        "SELECT name, sql FROM sqlite_master WHERE type='index' AND tbl_name='items' "
        "AND sql IS NOT NULL").fetchall()
    for name, _ in indexes:
        connection.execute(f'DROP INDEX "{name}"')
    stamp = NOW.replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")
    connection.execute("BEGIN")
    executors: dict[str, list[int]] = {}
    for block in org.blocks:
        for i in range(3):
            cursor = connection.execute(
                "INSERT INTO staff (role, block_id, name, created_at) VALUES (?, ?, ?, ?)",
                ("executor", block.id, f"Исполнитель {block.id} {i}", stamp))
            executors.setdefault(block.id, []).append(int(cursor.lastrowid or 0))
    connection.executemany(
        "INSERT INTO clusters (id, topic, label, created_at) VALUES (?, ?, ?, ?)",
        [(i, "roads", f"улица {i}", stamp) for i in range(1, CLUSTERS + 1)])
    connection.execute("COMMIT")
    columns = ", ".join(synthetic.COLUMNS)
    marks = ", ".join("?" for _ in synthetic.COLUMNS)
    insert = f"INSERT INTO items ({columns}) VALUES ({marks})"
    rows = synthetic.items(org, count, datetime.combine(START, datetime.min.time(), TZ),
                           datetime.combine(END, datetime.min.time(), TZ), now=NOW,
                           executors=executors, clusters=CLUSTERS)
    batch: list[tuple[object, ...]] = []
    for row in rows:
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
    for _, sql in indexes:
        connection.execute(sql)
    connection.execute("ANALYZE")
    connection.execute("PRAGMA journal_mode=WAL")
    connection.close()


async def best_of(runs: int, job: Callable[[], Awaitable[object]]) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        await job()
        times.append(time.perf_counter() - started)
    return min(times)


async def measure(url: str, org: Organisation, runs: int) -> None:
    engine = create_engine(url)
    sessions = session_factory(engine)
    t = translator("ru")
    year, month = Period(START, END), Period(END - timedelta(days=30), END)
    audiences = {"": Audience(), " (a head)": Audience(block_scope="housing")}
    async with sessions() as session:
        plan = (await session.execute(text("EXPLAIN QUERY PLAN " + RAW))).all()
        count = await session.scalar(text("SELECT count(*) FROM items"))

        async def raw() -> object:
            return (await session.execute(text(RAW))).all()

        baseline = await best_of(runs, raw)
        print(f"items: {count:,}; year {year.start} – {year.last_day}, 30 days from "
              f"{month.start}; best of {runs}; SQLite {sqlite3.sqlite_version}")
        print(f"raw: {RAW}\nraw query plan: {' / '.join(str(row[-1]) for row in plan)}")
        print(f"{'section':<26} {'groups':>6} {'year, s':>8} {'× raw':>7} {'30 d, s':>8} "
              f"{'× raw':>7}")
        print(f"{'raw GROUP BY':<26} {'':>6} {baseline:>8.3f} {1:>7.1f}")
        for section in org.sections:
            for suffix, audience in audiences.items():
                if suffix and section.group_by != "block":
                    continue
                cells, groups = [], 0
                for period in (year, month):
                    def job(section=section, period=period,  # type: ignore[no-untyped-def]
                            audience=audience):
                        return build_report(session, org, TZ, NOW, section, period, audience, t)

                    report = await job()
                    seconds = await best_of(runs, job)
                    cells.append(f"{seconds:>8.3f} {seconds / baseline:>7.1f}")
                    groups = groups or len(report.rows)
                print(f"{section.name + suffix:<26} {groups:>6} {' '.join(cells)}")
    await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--db", type=Path, help="keep the database here (default: a temp dir)")
    parser.add_argument("--reuse", action="store_true", help="time an existing --db again")
    args = parser.parse_args()
    org = load_organisation(DEFAULT_ORG_FILE)
    with tempfile.TemporaryDirectory() as tmp:
        path = args.db or Path(tmp) / "bench.sqlite3"
        url = f"sqlite+aiosqlite:///{path}"
        if not (args.reuse and path.exists()):
            path.unlink(missing_ok=True)
            started = time.perf_counter()
            upgrade(url)
            generate(path, org, args.items)
            print(f"generated {args.items:,} items in {time.perf_counter() - started:.1f} s "
                  f"({path.stat().st_size / 2**20:.0f} MiB)")
        asyncio.run(measure(url, org, args.runs))


if __name__ == "__main__":
    main()
