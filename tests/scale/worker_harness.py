"""`mcu worker` processes on a real PostgreSQL against the fake Bot API (real HTTP).

Built on the drills' harness (tests/drills/harness.py): the processes are started, SIGKILLed
and read from outside; what a test asserts is what the fake Bot API recorded and what the
database holds.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from bot.settings import DEFAULT_ORG_FILE
from handlers.clock import SystemClock
from handlers.context import Services
from handlers.events import Reply
from handlers.files import FileStore
from handlers.org import load_organisation
from storage.db import create_engine, session_factory
from storage.models import OutboxMessage
from tests.conftest import SAKHALIN
from tests.drills.harness import Drill, McuProcess, eventually
from tests.fakes.telegram_api import FakeTelegramServer

WORKER_READY = "worker is running"
LEADER = re.compile(r"scheduler leadership taken by this process")
TELEGRAM_PER_SECOND = 30  # what the real Bot API allows; the fake answers 429 past it
ADVISORY_KEY_SQL = ("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                    "AND granted")


@pytest.fixture(name="tg")
async def limited_tg_fixture() -> AsyncIterator[FakeTelegramServer]:
    """The fake Bot API with Telegram's per-bot limit: a send past 30/s gets 429. It replaces
    the plain fake of tests/scale/conftest.py, whose `world` then runs against it."""
    async with FakeTelegramServer(max_per_second=TELEGRAM_PER_SECOND) as server:
        yield server


async def start_worker(drill: Drill, name: str, timeout: float = 60) -> McuProcess:
    worker = drill.process("worker", name=name)
    await worker.start(wait_ready=False)
    await eventually(lambda: _ready(worker), timeout, f"{name} running")
    return worker


def _ready(worker: McuProcess) -> bool:
    if worker.process is not None and worker.process.returncode is not None:
        raise AssertionError(f"{worker.name} exited:\n{worker.log()[-3000:]}")
    return WORKER_READY in worker.log()


def leaders(workers: Iterable[McuProcess]) -> list[McuProcess]:
    """The live workers whose log says they lead the scheduler."""
    return [w for w in workers if w.alive and LEADER.search(w.log())]


async def advisory_locks(drill: Drill) -> int:
    """Advisory locks granted on the server: the scheduler's leadership."""
    async with drill.sessions() as session:
        return int(await session.scalar(text(ADVISORY_KEY_SQL)) or 0)


# ---------------------------------------------------------------------------------------------
# Time: an organisation whose working hours are the whole day, every day near today


def all_day_org(tmp_path: Path, today: date | None = None) -> Path:
    """The shipped organisation file with working hours 00:00–23:59:59 on every day around
    today (holidays included), so that staff messages and reminders follow the real clock
    whenever the test runs."""
    today = today or datetime.now(SAKHALIN).date()
    days = ", ".join(f'"{today + timedelta(days=d)}"' for d in (-1, 0, 1, 2))
    source = DEFAULT_ORG_FILE.read_text(encoding="utf-8")
    source = re.sub(r'\[working_hours\]\nstart = "09:00"\nend = "18:00"\n(#.*\n)?weekdays = .*\n',
                    '[working_hours]\nstart = "00:00"\nend = "23:59:59"\n'
                    'weekdays = [1, 2, 3, 4, 5, 6, 7]\n', source)
    source = re.sub(r"extra_workdays = \[\]", f"extra_workdays = [{days}]", source)
    assert "23:59:59" in source and days in source, "the org file's layout changed"
    path = tmp_path / "org-all-day.toml"
    path.write_text(source, encoding="utf-8")
    return path


def services_for(drill: Drill, org_file: Path) -> Services:
    """The test's own services on the drill's database (real clock), to seed like production."""
    engine = create_engine(drill.database_url)
    return Services(sessions=session_factory(engine, tz=SAKHALIN),
                    org=load_organisation(org_file), clock=SystemClock(),
                    files=FileStore(drill.tmp_path / "seed-data"), tz=SAKHALIN)


# ---------------------------------------------------------------------------------------------
# The outbox


async def queue_notifications(drill: Drill, chats: Sequence[int | str], text_of: str,
                              audience: str = "staff", first: int = 1) -> None:
    """One due notification per entry of `chats` (a chat may repeat: its rows keep the
    order given), as the core queues them."""
    now = datetime.now(UTC)
    async with drill.sessions() as session, session.begin():
        session.add_all(OutboxMessage(
            platform="telegram", chat_id=str(chat), audience=audience,
            payload=Reply(text_of.format(n=n, chat=chat)).to_json(), status="pending",
            attempts=0, created_at=now, not_before=now, next_attempt_at=now)
            for n, chat in enumerate(chats, start=first))


def max_in_window(moments: Iterable[float], window: float = 1.0) -> int:
    """The most events inside any window of `window` seconds."""
    times = sorted(moments)
    best, start = 0, 0
    for end, moment in enumerate(times):
        while moment - times[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


async def wait_quiet(tg: FakeTelegramServer, quiet: float = 3.0, timeout: float = 30) -> None:
    """Until the fake has seen no call for `quiet` seconds (would anything come twice?)."""
    deadline = time.monotonic() + timeout
    seen, since = len(tg.sent) + len(tg.failed), time.monotonic()
    while time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        now_seen = len(tg.sent) + len(tg.failed)
        if now_seen != seen:
            seen, since = now_seen, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return

