"""The scheduler's sweeps over a big backlog: `python bench/sweeps.py [--quick] [--reference]`.

Builds 100,000 open items (`--quick`: 10,000) in a migrated SQLite file, cached under
bench/.data/ between runs: spread over every block and topic, a fifth overdue (up to 60 days,
so many are long overdue), a tenth due within two days, the rest due later; some never taken,
some appeals registered late; a head per block, three executors per block, the chairman (two
accounts, two languages) and the curator. Then, on a fresh copy of that file, it runs the
`reminders` and `escalations` jobs as the scheduler does (`scheduler.jobs.run_job`), a first
pass and a steady (second) pass each, and measures:

- wall time of each pass (best of `--runs`), and the CPU time of the process (every thread,
  the database driver's included), which the other processes of a shared machine inflate
  less;
- peak memory growth of each pass: the process's peak resident set (VmHWM, reset through
  /proc/self/clear_refs just before the pass) minus the resident set at that moment. It counts
  everything the process touches, SQLite's page cache and the driver's buffers included, not
  only Python objects (the largest of the runs);
- the baseline in the same run: the indexed count of overdue items
  (`SELECT count(*) FROM items WHERE status IN (open) AND answer_due < now`), best of 3.

Goals: ≤ 2 s and ≤ 50 MB per pass. `--reference` runs the per-item sweeps of before
(tests/support/sweeps_reference.py) instead, for the before/after. Not part of the tests.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from common import DATA_DIR, Row, analyze, loading_items, table  # noqa: E402
from sqlalchemy import func, select  # noqa: E402
from synthetic import CHANNELS, TOPICS  # noqa: E402

from bot.settings import DEFAULT_ORG_FILE  # noqa: E402
from handlers.clock import ManualClock  # noqa: E402
from handlers.context import Services  # noqa: E402
from handlers.files import FileStore  # noqa: E402
from handlers.org import Organisation, load_organisation  # noqa: E402
from handlers.rules.lifecycle import OPEN_STATES  # noqa: E402
from storage.db import create_engine, session_factory  # noqa: E402
from storage.migrate import upgrade  # noqa: E402
from storage.models import Item  # noqa: E402

TZ = ZoneInfo("Asia/Sakhalin")
NOW = datetime(2026, 12, 9, 10, 0, tzinfo=TZ)  # a Wednesday morning, working hours
FULL, QUICK = 100_000, 10_000
GOAL_SECONDS, GOAL_MB = 2.0, 50.0
OPEN = sorted(str(s) for s in OPEN_STATES)  # sorted: the same dataset in every process
WAITING = ("assigned", "redirected")


def stamp(moment: datetime) -> str:
    """A datetime as SQLAlchemy stores it in SQLite: naive UTC ISO text."""
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ",
                                                                  timespec="microseconds")


def staff_rows(org: Organisation) -> list[tuple[str, str | None, str | None]]:
    """(role, block, locale) of every staff member; accounts follow in `build`."""
    rows: list[tuple[str, str | None, str | None]] = [("chairman", None, "ru"),
                                                      ("curator", None, "ru")]
    for block in org.blocks:
        if block.head_role == "head":
            rows.append(("head", block.id, "ru"))
        rows += [("executor", block.id, "en" if i == 2 else "ru") for i in range(3)]
    return rows


def item_rows(org: Organisation, count: int, executors: dict[str, list[int]]) -> Any:
    rng = random.Random(11)
    topics, weights = list(TOPICS), list(TOPICS.values())
    channels, channel_weights = list(CHANNELS), list(CHANNELS.values())
    for number in range(1, count + 1):
        topic = rng.choices(topics, weights)[0]
        channel = rng.choices(channels, channel_weights)[0]
        block = org.block_of_topic[topic].id
        kind = ("incident" if channel == "incident_management"
                else "appeal" if channel in ("letter", "visit") else "message")
        share = rng.random()
        if share < 0.2:  # overdue, up to 60 days
            due = NOW - timedelta(days=rng.uniform(0, 60))
        elif share < 0.3:  # due within two days: reminders
            due = NOW + timedelta(days=rng.uniform(0, 2))
        else:
            due = NOW + timedelta(days=rng.uniform(2, 30))
        # Deadlines are the end of a local day, mostly.
        if rng.random() < 0.8:
            due = datetime.combine(due.astimezone(TZ).date(), datetime.max.time(),
                                   TZ).replace(microsecond=0)
        received = due - timedelta(days=14)
        status = rng.choice(OPEN)
        reaction = None if status in WAITING and rng.random() < 0.6 else received + timedelta(
            hours=3)
        first_due = received + timedelta(days=rng.uniform(0.5, 25))
        registration_due = registered = None
        if kind == "appeal":
            registration_due = received + timedelta(days=3)
        registered = received + timedelta(days=rng.choice([0, 1, 2, 4, 6])
                                          if kind == "appeal" else 0)
        staff = executors.get(block, [])
        executor = rng.choice(staff) if staff and rng.random() < 0.6 else None
        yield (f"B-{number:07d}", kind, channel, status, topic, block, "Синтетическое сообщение",
               0, stamp(received), stamp(registered), stamp(registered), stamp(registered),
               0, 0, stamp(due), stamp(first_due), None if reaction is None else stamp(reaction),
               None if registration_due is None else stamp(registration_due), executor)


ITEM_COLUMNS = ("number", "kind", "channel", "status", "topic", "block_id", "text", "no_answer",
                "received_at", "registered_at", "created_at", "updated_at", "extension_count",
                "reopened_count", "answer_due", "first_reaction_due", "first_reaction_at",
                "registration_due", "executor_id")


def build(path: Path, org: Organisation, count: int) -> None:
    """The dataset in a migrated SQLite file: bulk insert with the items' indexes dropped."""
    url = f"sqlite+aiosqlite:///{path}"
    upgrade(url)
    with loading_items(path) as connection:
        created = stamp(NOW - timedelta(days=400))
        connection.execute("BEGIN")
        executors: dict[str, list[int]] = {}
        account = 0
        for staff_id, (role, block, locale) in enumerate(staff_rows(org), start=1):
            connection.execute("INSERT INTO staff (id, role, block_id, name, created_at) "
                               "VALUES (?, ?, ?, ?, ?)", (staff_id, role, block, role, created))
            if role == "executor" and block:
                executors.setdefault(block, []).append(staff_id)
            platforms = [("telegram", locale)] + ([("vk", "en")] if role == "chairman" else [])
            for platform, language in platforms:
                account += 1
                connection.execute(
                    "INSERT INTO accounts (platform, user_id, chat_id, locale, staff_id, "
                    "created_at) VALUES (?, ?, ?, ?, ?, ?)",
                    (platform, str(7_000_000 + account), str(7_000_000 + account), language,
                     staff_id, created))
        insert = (f"INSERT INTO items ({', '.join(ITEM_COLUMNS)}) "
                  f"VALUES ({', '.join('?' for _ in ITEM_COLUMNS)})")
        connection.executemany(insert, item_rows(org, count, executors))
        connection.execute("COMMIT")
    analyze(path)


def dataset(org: Organisation, count: int, fresh: bool = False) -> Path:
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    path = DATA_DIR / f"sweeps-{count}.sqlite3"
    if fresh or not path.exists():
        for leftover in path.parent.glob(path.name + "*"):
            leftover.unlink()
        started = time.perf_counter()
        partial = path.with_suffix(".partial")
        partial.unlink(missing_ok=True)
        build(partial, org, count)
        partial.rename(path)
        print(f"built {count:,} open items in {time.perf_counter() - started:.1f} s: {path}",
              file=sys.stderr)
    return path


Pass = tuple[float, float, float, int]  # wall s, CPU s, peak growth in MB, messages queued


def rss_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


async def measured(job: Callable[[], Awaitable[int]]) -> Pass:
    """(wall seconds, CPU seconds of the process, peak resident growth in MB, messages
    queued) of one pass."""
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
    before = rss_kb("VmRSS")
    started, cpu = time.perf_counter(), time.process_time()
    queued = await job()
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    return seconds, cpu, (rss_kb("VmHWM") - before) / 1024, queued




async def passes(path: Path, org: Organisation, use_reference: bool
                 ) -> tuple[dict[str, Pass], int, int, float]:
    """One run on a copy of the dataset: each sweep's first and steady pass, the number of
    items and of overdue ones, and the baseline's best time."""
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    services = Services(sessions=session_factory(engine, tz=TZ), org=org,
                        clock=ManualClock(NOW), files=FileStore(path.parent / "files"), tz=TZ)
    async with services.sessions() as session:
        items = await session.scalar(select(func.count()).select_from(Item)) or 0

        async def overdue() -> int:
            return await session.scalar(select(func.count()).select_from(Item).where(
                Item.status.in_(OPEN), Item.answer_due < NOW)) or 0

        overdue_count = await overdue()
        baseline = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            await overdue()
            baseline = min(baseline, time.perf_counter() - started)
    if use_reference:
        from tests.support import sweeps_reference as reference

        sweeps = {"reminders": reference.send_reminders,
                  "escalations": reference.send_escalations}
    else:
        from handlers import sweeps as current

        sweeps = {"reminders": current.send_reminders, "escalations": current.send_escalations}
    results: dict[str, Pass] = {}
    for name, sweep in sweeps.items():
        for phase in ("first", "steady"):
            async def job(sweep=sweep) -> int:  # type: ignore[no-untyped-def]
                async with services.sessions() as session, session.begin():
                    return await sweep(session, services, NOW)

            results[f"{name}, {phase} pass"] = await measured(job)
    await engine.dispose()
    return results, items, overdue_count, baseline


def run(quick: bool, *, reference: bool = False, fresh: bool = False,
        runs: int | None = None) -> list[Row]:
    """`runs` times on a fresh copy of the dataset (default 3, 1 with `reference`): the best
    time of each pass and the largest memory growth, so that the other processes of a shared
    machine weigh on the time as little as possible and on the memory not at all."""
    org = load_organisation(DEFAULT_ORG_FILE)
    source = dataset(org, QUICK if quick else FULL, fresh)
    work = source.with_name(source.stem + "-run.sqlite3")
    runs = runs or (1 if reference else 3)
    best: dict[str, Pass] = {}
    baseline = float("inf")
    for _ in range(runs):
        for leftover in work.parent.glob(work.name + "*"):
            leftover.unlink()
        shutil.copyfile(source, work)  # every run starts from the same empty outbox
        try:
            results, items, overdue, seconds = asyncio.run(passes(work, org, reference))
        finally:
            for leftover in work.parent.glob(work.name + "*"):
                leftover.unlink()
        baseline = min(baseline, seconds)
        for name, (taken, cpu, grown, queued) in results.items():
            old = best.get(name)
            best[name] = (taken, cpu, grown, queued) if old is None else (
                min(old[0], taken), min(old[1], cpu), max(old[2], grown), queued)
    label = " (per-item, before)" if reference else ""
    return [Row(
        measure=f"{name}, {items:,} open items{label}",
        value=f"{taken:.2f} s (CPU {cpu:.2f} s), +{grown:.0f} MB peak RSS, {queued:,} queued",
        baseline=f"indexed count of {overdue:,} overdue: {baseline * 1000:.1f} ms",
        ratio=taken / baseline if baseline else None,
        goal=f"≤ {GOAL_SECONDS:g} s, ≤ {GOAL_MB:g} MB",
        met=taken <= GOAL_SECONDS and grown <= GOAL_MB)
        for name, (taken, cpu, grown, queued) in best.items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK:,} items")
    parser.add_argument("--reference", action="store_true",
                        help="the per-item sweeps of before, for the before/after")
    parser.add_argument("--fresh", action="store_true", help="build the dataset again")
    parser.add_argument("--runs", type=int, help="runs on fresh copies (default 3; 1 with "
                                                 "--reference)")
    args = parser.parse_args()
    print(table(run(args.quick, reference=args.reference, fresh=args.fresh, runs=args.runs)))


if __name__ == "__main__":
    main()
