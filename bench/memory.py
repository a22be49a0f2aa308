"""Idle memory of `mcu run`: `python bench/memory.py [--quick] [--code DIR]`.

The subject is `mcu run` as a real process with both transports, against the fake Telegram
and VK servers of the tests (tests/fakes), a fresh SQLite file (migrated before the start, as
after the first run) and a data directory whose topic model cache is kept between runs. Its
resident memory (VmRSS) is read once both pollers wait and the process has gone quiet (the
topic model loaded). The baseline is a process that only imports aiogram and vkbottle.
`--code DIR` runs another checkout of the code as the subject (the figure before a change).
`--breakdown` also prints where the difference goes: RSS after each group of imports and
each start-up step, in a separate process, in the order `mcu run` takes them.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from itertools import pairwise
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import DATA_DIR, Row, stop, table  # noqa: E402
from bench.dialog import settle  # noqa: E402

GOAL = 1.1
BASELINE = "import sys, time, aiogram, vkbottle; print('ready', flush=True); time.sleep(3600)"
VK_GROUP, VK_TOKEN = 4242, "vk-bench-token"
# Steps of the breakdown, each (label, code) run in one process in this order; the code may
# use `cache` (the subject's topic model cache).
STEPS = (
    ("aiogram + vkbottle (the baseline)", "import aiogram, vkbottle"),
    ("sqlalchemy, its asyncio extension, aiosqlite",
     "import sqlalchemy, sqlalchemy.orm, sqlalchemy.ext.asyncio, aiosqlite"),
    ("storage (models, db)", "import storage.models, storage.db"),
    ("handlers (core)", "import handlers.core"),
    ("scheduler, bootstrap, transports, cli",
     "import scheduler.runner, scheduler.outbox, bot.bootstrap, bot.telegram, bot.vk, bot.cli"),
    ("production calendar (its data file)",
     "from datetime import date; from zoneinfo import ZoneInfo; "
     "from handlers.rules.calendar import WorkCalendar; "
     "WorkCalendar(ZoneInfo('Asia/Sakhalin')).is_working_day(date(2026, 1, 5))"),
    ("topic dictionaries (pymorphy3)",
     "from handlers.topics.text import load_dictionaries; load_dictionaries()"),
    ("topic model (from the cache)",
     "from bot.settings import DEFAULT_ORG_FILE; from handlers.org import load_organisation; "
     "from handlers.topics.suggester import LinearTopicSuggester; "
     "LinearTopicSuggester(load_organisation(DEFAULT_ORG_FILE), cache_dir=cache).warm_up()"),
    ("freed heap returned (gc, malloc_trim)",
     "from bot.bootstrap import release_free_memory; release_free_memory()"),
)
BREAKDOWN = """
import sys
from pathlib import Path
cache = Path(sys.argv[1])
def rss():
    for line in open('/proc/self/status'):
        if line.startswith('VmRSS:'):
            return int(line.split()[1]) / 1024
print(f'{rss():.1f}', flush=True)
for code in sys.argv[2:]:
    exec(code)
    print(f'{rss():.1f}', flush=True)
"""


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def subject_rss(code: Path) -> float:
    from storage.migrate import upgrade_async
    from tests.fakes.telegram_api import FakeTelegramServer
    from tests.fakes.vk_api import FakeVKServer

    work = DATA_DIR / "memory"
    (work / "data").mkdir(parents=True, exist_ok=True)
    database = work / "bench.sqlite3"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{database}{suffix}").unlink(missing_ok=True)
    url = f"sqlite+aiosqlite:///{database}"
    await upgrade_async(url)
    async with FakeTelegramServer(token="42:BENCH") as tg, \
            FakeVKServer(group_id=VK_GROUP, token=VK_TOKEN) as vk:
        env = {**os.environ, "PYTHONPATH": str(code), "MCU_DATABASE_URL": url,
               "MCU_DATA_DIR": str(work / "data"), "MCU_LOG_LEVEL": "WARNING",
               "MCU_TELEGRAM_TOKEN": "42:BENCH", "MCU_TELEGRAM_API_URL": tg.base_url,
               "MCU_VK_TOKEN": VK_TOKEN, "MCU_VK_GROUP_ID": str(VK_GROUP),
               "MCU_VK_API_URL": vk.api_url}
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot.cli", "run", cwd=work, env=env,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        try:
            await tg.wait_polling(timeout=60)
            await vk.wait_for_poller(timeout=60)
            await settle(process.pid)
            await asyncio.sleep(1)
            return rss_mb(process.pid)
        finally:
            await stop(process)


async def baseline_rss() -> float:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", BASELINE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL)
    try:
        assert process.stdout is not None
        await asyncio.wait_for(process.stdout.readline(), 120)
        await settle(process.pid)
        return rss_mb(process.pid)
    finally:
        await stop(process)


def run(quick: bool, code: Path = ROOT) -> list[Row]:
    return result(*measure(code))


def measure(code: Path) -> tuple[float, float]:
    """The idle RSS of `mcu run` from `code` and of the baseline, in MB."""
    return asyncio.run(subject_rss(code)), asyncio.run(baseline_rss())


def result(subject: float, baseline: float) -> list[Row]:
    ratio = subject / baseline
    return [Row(measure="idle RSS of `mcu run`, Telegram + VK",
                value=f"{subject:,.0f} MB",
                baseline=f"aiogram + vkbottle imported {baseline:,.0f} MB",
                ratio=ratio, goal=f"≤ {GOAL}×", met=ratio <= GOAL)]


def breakdown(code: Path, subject: float) -> list[str]:
    """RSS after each step of STEPS in one process, then what only the running process adds
    (the libraries' first use, pools, caches): the subject's idle RSS minus the last step."""
    import subprocess

    cache = DATA_DIR / "memory" / "data" / "cache"
    done = subprocess.run([sys.executable, "-c", BREAKDOWN, str(cache),
                           *(step for _, step in STEPS)], cwd=code, check=True,
                          capture_output=True, text=True, env={**os.environ,
                                                               "PYTHONPATH": str(code)})
    figures = [float(line) for line in done.stdout.split()]
    lines = [f"  {'python itself':52} {figures[0]:6.0f} MB"]
    for (label, _), (before, after) in zip(STEPS, pairwise(figures), strict=True):
        lines.append(f"  {label:52} {after:6.0f} MB  {after - before:+5.1f}")
    lines.append(f"  {'running: first use of the libraries, pools, caches':52} {subject:6.0f} MB"
                 f"  {subject - figures[-1]:+5.1f}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--code", type=Path, default=ROOT,
                        help="the checkout `mcu run` runs from (default: this one)")
    parser.add_argument("--breakdown", action="store_true",
                        help="also print the RSS after each import group and start-up step")
    args = parser.parse_args()
    subject, baseline = measure(args.code.resolve())
    print(table(result(subject, baseline)))
    if args.breakdown:
        print("\nwhere it goes (RSS after each step, one process):")
        print("\n".join(breakdown(args.code.resolve(), subject)))


if __name__ == "__main__":
    main()
