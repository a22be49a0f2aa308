"""What every benchmark of bench/ returns: one row per measure, as a ratio to a baseline
measured in the same run (`python bench/run.py` prints them as one table)."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from handlers.core import Core

DATA_DIR = Path(__file__).parent / ".data"  # cached datasets, not in git


@dataclass(frozen=True)
class Row:
    measure: str  # what was measured, e.g. "dialog updates/s"
    value: str  # the figure with its unit, e.g. "612 upd/s"
    baseline: str  # the baseline with its unit, e.g. "bare aiogram 1,020 upd/s"
    ratio: float | None  # value / baseline (or the reverse where smaller is better)
    goal: str  # e.g. "≥ 0.5×"
    met: bool

    def cells(self) -> list[str]:
        ratio = "—" if self.ratio is None else f"{self.ratio:.2f}×"
        return [self.measure, self.value, self.baseline, ratio, self.goal,
                "yes" if self.met else "NO"]


def table(rows: list[Row]) -> str:
    """A Markdown table, the same one that goes into the README."""
    head = ["measure", "value", "baseline (same run)", "ratio", "goal", "met"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row.cells()) + " |" for row in rows]
    return "\n".join(lines)


async def stop(process: asyncio.subprocess.Process) -> None:
    """SIGTERM, then SIGKILL after 30 s."""
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), 30)
        except TimeoutError:
            process.kill()
            await process.wait()


@asynccontextmanager
async def offline_core(url: str, data: Path) -> AsyncIterator[Core]:
    """The core on a freshly migrated database, without transports: a bench prepares its
    users with it, as their earlier updates would have. Nothing is left to deliver after."""
    from zoneinfo import ZoneInfo

    from sqlalchemy import update

    from bot.settings import DEFAULT_ORG_FILE
    from handlers.clock import SystemClock
    from handlers.context import Services
    from handlers.core import Core
    from handlers.files import FileStore
    from handlers.org import load_organisation
    from storage.db import create_engine, session_factory
    from storage.migrate import upgrade_async
    from storage.models import OutboxMessage

    await upgrade_async(url)
    engine = create_engine(url)
    tz = ZoneInfo("Asia/Sakhalin")
    services = Services(sessions=session_factory(engine, tz=tz),
                        org=load_organisation(DEFAULT_ORG_FILE), clock=SystemClock(),
                        files=FileStore(data), tz=tz)
    try:
        yield Core(services)
        async with services.sessions() as session, session.begin():
            await session.execute(update(OutboxMessage).values(status="sent"))
    finally:
        await engine.dispose()


@contextmanager
def loading_items(path: Path) -> Iterator[sqlite3.Connection]:
    """A connection that fills a dataset's SQLite file fast: no journal, no fsync, and the
    items' indexes dropped during the load and built again after it."""
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("PRAGMA journal_mode=OFF")
        connection.execute("PRAGMA synchronous=OFF")
        indexes = connection.execute(
            "SELECT name, sql FROM sqlite_master WHERE type='index' AND tbl_name='items' "
            "AND sql IS NOT NULL").fetchall()
        for name, _ in indexes:
            connection.execute(f'DROP INDEX "{name}"')
        yield connection
        for _, sql in indexes:
            connection.execute(sql)
    finally:
        connection.close()


def analyze(path: Path) -> None:
    """A loaded dataset ready for use: the planner's statistics, and WAL as the bot runs it."""
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("ANALYZE")
        connection.execute("PRAGMA journal_mode=WAL")
    finally:
        connection.close()
