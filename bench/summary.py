"""The chairman's daily summary over a year of items: `python bench/summary.py [--quick]`.

Uses the dataset of bench/stats.py (1,000,000 items over a year; `--quick`: 100,000), built
once in a migrated SQLite file under bench/.data/, and times in the same run, best of 3:

- the daily summary as the `daily_summary` job builds it (every section of the text, in a
  read-only session) with its chart drawn, as the job does, in a worker thread;
- the baseline: the raw indexed `SELECT topic, status, count(*) FROM items GROUP BY topic,
  status` (it reads one covering index).

Goal: ≤ 1 s. Not part of the tests.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import stats  # noqa: E402
from common import Row, table  # noqa: E402
from sqlalchemy import text  # noqa: E402

from bot.settings import DEFAULT_ORG_FILE  # noqa: E402
from handlers.clock import ManualClock  # noqa: E402
from handlers.context import Services  # noqa: E402
from handlers.files import FileStore  # noqa: E402
from handlers.i18n import translator  # noqa: E402
from handlers.org import load_organisation  # noqa: E402
from handlers.summaries import build_summary, chart  # noqa: E402
from storage.db import create_engine, session_factory  # noqa: E402
from storage.migrate import upgrade  # noqa: E402

FULL, QUICK = 1_000_000, 100_000
GOAL_SECONDS = 1.0
RUNS = 3


def dataset(count: int, fresh: bool = False) -> Path:
    org = load_organisation(DEFAULT_ORG_FILE)
    path = stats.sqlite_path(count, None)
    url = f"sqlite+aiosqlite:///{path}"
    if fresh or not path.exists():
        path.unlink(missing_ok=True)
        started = time.perf_counter()
        upgrade(url)
        stats.generate_sqlite(path, org, count)
        print(f"built {count:,} items in {time.perf_counter() - started:.1f} s: {path}",
              file=sys.stderr)
    else:
        upgrade(url)  # a cached file from an older schema catches up (new indexes)
    return path


async def measure(path: Path, tmp: Path) -> tuple[int, float, float]:
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    services = Services(sessions=session_factory(engine, tz=stats.TZ),
                        org=load_organisation(DEFAULT_ORG_FILE), clock=ManualClock(stats.NOW),
                        files=FileStore(tmp), tz=stats.TZ)
    t = translator("ru")
    async with services.readers() as session:
        count = await session.scalar(text("SELECT count(*) FROM items")) or 0

        async def raw() -> object:
            return (await session.execute(text(stats.RAW))).all()

        baseline = await stats.best_of(RUNS, raw)

    async def summary() -> object:
        async with services.readers() as session:
            built = await build_summary(session, services, stats.NOW, days=1)
        return await asyncio.to_thread(chart, built, tmp / "daily.png", t)

    await summary()  # the first one pays for imports (matplotlib) and the page cache
    seconds = await stats.best_of(RUNS, summary)
    await engine.dispose()
    return count, seconds, baseline


def run(quick: bool, *, fresh: bool = False) -> list[Row]:
    path = dataset(QUICK if quick else FULL, fresh)
    with tempfile.TemporaryDirectory() as tmp:
        count, seconds, baseline = asyncio.run(measure(path, Path(tmp)))
    return [Row(measure=f"daily summary with its chart, {count:,} items",
                value=f"{seconds:.3f} s",
                baseline=f"raw indexed GROUP BY: {baseline * 1000:.0f} ms",
                ratio=seconds / baseline if baseline else None,
                goal=f"≤ {GOAL_SECONDS:g} s", met=seconds <= GOAL_SECONDS)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK:,} items")
    parser.add_argument("--fresh", action="store_true", help="build the dataset again")
    args = parser.parse_args()
    print(table(run(args.quick, fresh=args.fresh)))


if __name__ == "__main__":
    main()
