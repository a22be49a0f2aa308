"""The rate limiter shared through the database (scheduler/shared_limits.py), on a simulated
clock: several limiters ("processes") on one real database (SQLite and PostgreSQL) never let
more than 28 sends into any one-second window, space a chat's messages by a second, keep a
group to 20 a minute, and share a 429's pause."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections import defaultdict
from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from scheduler.limits import (
    DEFAULT_LIMITS,
    IN_FLIGHT_MAX,
    chat_wait,
    complete,
    platform_wait,
    take,
)
from scheduler.shared_limits import SharedRateLimiter, deployment_limiter
from storage.db import create_engine, session_factory
from storage.migrate import upgrade_async

TELEGRAM = DEFAULT_LIMITS["telegram"]
REQUEST = 0.05  # simulated seconds a send takes


class VirtualTime:
    """A clock that moves only when every participant sleeps: then it jumps to the earliest
    wake-up. Database work takes no simulated time, so what a test sees is exact."""

    def __init__(self, participants: int, start: float = 1_000_000.0) -> None:
        self.now = start
        self.active = participants
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        future = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + max(seconds, 0.0), next(self._order), future))
        self.active -= 1
        self._advance()
        await future

    def leave(self) -> None:
        self.active -= 1
        self._advance()

    def _advance(self) -> None:
        if self.active > 0 or not self._sleepers:
            return
        self.now = max(self.now, self._sleepers[0][0])
        while self._sleepers and self._sleepers[0][0] <= self.now:
            _, _, future = heapq.heappop(self._sleepers)
            self.active += 1
            future.set_result(None)


def most_in(moments: list[float], window: float) -> int:
    times, best, start = sorted(moments), 0, 0
    for end, moment in enumerate(times):
        while moment - times[start] >= window - 1e-9:
            start += 1
        best = max(best, end - start + 1)
    return best


@pytest.fixture
async def sessions(db_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    await upgrade_async(db_url)
    engine = create_engine(db_url)
    yield session_factory(engine)
    await engine.dispose()


def dialect_of(sessions: async_sessionmaker[AsyncSession]) -> str:
    return sessions.kw["bind"].dialect.name


async def test_processes_sharing_the_database_keep_one_window(sessions) -> None:  # type: ignore[no-untyped-def]
    """Four processes send 60 notifications each to distinct chats, one sends five to one
    chat, one 25 to a group: never more than 28 sends in any one second, a chat's messages a
    second apart, a group's 20 a minute, and no needless waiting."""
    time = VirtualTime(participants=6)
    arrivals: list[float] = []
    by_chat: dict[str, list[float]] = defaultdict(list)

    async def process(chats: list[str], group: bool = False) -> None:
        limiter = SharedRateLimiter(sessions, dialect=dialect_of(sessions), clock=time.clock,
                                    sleep=time.sleep)
        try:
            for chat in chats:
                async with limiter.slot("telegram", chat, group=group):
                    arrivals.append(time.now)
                    by_chat[chat].append(time.now)
                    await time.sleep(REQUEST)
        finally:
            time.leave()

    started = time.now
    await asyncio.gather(*(process([f"{p}-{n}" for n in range(60)]) for p in range(4)),
                         process(["one-chat"] * 5), process(["group"] * 25, group=True))
    notified = max(t for chat, moments in by_chat.items() if chat != "group"
                   for t in moments) - started

    assert len(arrivals) == 4 * 60 + 5 + 25
    assert most_in(arrivals, 1.0) <= TELEGRAM.per_second
    gaps = [b - a for a, b in itertools.pairwise(by_chat["one-chat"])]
    assert min(gaps) >= TELEGRAM.per_chat_interval - 1e-6
    assert most_in(by_chat["group"], 60.0) <= TELEGRAM.group_per_minute
    assert by_chat["group"][20] - by_chat["group"][0] >= 60.0 - 1e-6
    # Not slower than the window allows: 270 sends at 28 per (1 s + a request) or so; the
    # group's last five wait for its minute.
    assert notified < 270 / TELEGRAM.per_second * (1 + REQUEST) + 3
    assert max(arrivals) == by_chat["group"][-1]


async def test_a_pause_after_429_holds_every_process(sessions) -> None:  # type: ignore[no-untyped-def]
    time = VirtualTime(participants=1)
    dialect = dialect_of(sessions)
    first = SharedRateLimiter(sessions, dialect=dialect, clock=time.clock, sleep=time.sleep)
    second = SharedRateLimiter(sessions, dialect=dialect, clock=time.clock, sleep=time.sleep)
    async with first.slot("telegram", "a"):
        pass
    first.pause("telegram", 7)
    await asyncio.gather(*first._background)  # the pause is written for the others
    paused_at = time.now
    async with second.slot("telegram", "b"):
        assert time.now >= paused_at + 7
    time.leave()


def test_the_window_counts_a_send_until_a_second_after_it_completed() -> None:
    now = 100.0
    state: dict = {}
    for n in range(28):
        state, _, _ = take(state, {}, TELEGRAM, now, f"t{n}", group=False)
    assert platform_wait(state, TELEGRAM, now) > 0  # full, all still under way
    state = complete(state, "t0", now + 0.3)
    assert platform_wait(state, TELEGRAM, now + 0.5) == pytest.approx(0.8)
    assert platform_wait(state, TELEGRAM, now + 1.3) <= 0
    # A send whose process died stops counting after IN_FLIGHT_MAX.
    assert platform_wait(state, TELEGRAM, now + IN_FLIGHT_MAX + 1.01) <= 0


def test_a_chat_waits_a_second_a_group_a_minute_a_reply_not_at_all() -> None:
    _, chat, expires = take({}, {}, TELEGRAM, 10.0, "x", group=False)
    assert chat_wait(chat, TELEGRAM, 10.4, group=False, direct=False) == pytest.approx(0.6)
    assert chat_wait(chat, TELEGRAM, 10.4, group=False, direct=True) <= 0
    assert expires == pytest.approx(11.0)
    group: dict = {}
    for n in range(20):
        _, group, _ = take({}, group, TELEGRAM, 10.0 + n, "g", group=True)
    assert chat_wait(group, TELEGRAM, 31.0, group=True, direct=True) == pytest.approx(39.0)


@pytest.mark.parametrize("url", ["sqlite+aiosqlite:///unused.sqlite3",
                                 "postgresql+asyncpg://mcu@127.0.0.1:1/unused"])
def test_telegrams_total_is_the_setting_and_the_rest_stays(url: str) -> None:
    """MCU_TELEGRAM_MESSAGES_PER_SECOND reaches the limiter of either kind; nothing else
    changes (the per-chat spacing, the group minute, VK)."""
    limiter = deployment_limiter(async_sessionmaker(), url, telegram_per_second=12)
    telegram = limiter.limits["telegram"]
    assert telegram.per_second == 12
    assert telegram.per_chat_interval == DEFAULT_LIMITS["telegram"].per_chat_interval
    assert telegram.group_per_minute == DEFAULT_LIMITS["telegram"].group_per_minute
    assert limiter.limits["vk"] == DEFAULT_LIMITS["vk"]
    assert deployment_limiter(async_sessionmaker(), url).limits["telegram"].per_second == 28
