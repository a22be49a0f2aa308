"""Messenger rate limits for the deployment as a whole: shared through the database.

Telegram's limits are per bot, not per process: about 30 messages/s in total (we let 28 through
in any one-second window), about 1/s per chat, 20/min per group. With several processes that
send (`mcu worker` copies delivering the outbox, `mcu serve` copies delivering replies right
after a turn), a per-process limiter would let N × 28 through.

Why a limiter shared through the database rather than explicit shares (MCU_WORKER_SHARE):
- a share wastes what an idle or dead process does not use: two workers at 14/s each still
  send at 14/s when one of them is down, and a burst of replies in one `mcu serve` cannot use
  the workers' quiet capacity;
- the per-chat (1/s) and per-group (20/min) limits cannot be divided at all: the next message
  to a chat may be sent by another process than the last one;
- every process that sends already shares the database, so nothing new is deployed.

How: a row per platform holds the recent sends as [token, let through at, completed at]
entries, a real sliding window with the same rule as the in-memory limiter (scheduler/
limits.py): a message occupies the window from the moment it is let through until one second
after its request completed, so no one-second window at the messenger's side can hold more
than 28. A send is let through in a tiny transaction that locks the platform's row
(SELECT … FOR UPDATE; on SQLite the transaction's write lock does the same), reads the clock
after taking the lock (so entries are ordered as the transactions are), and appends its entry;
its completion is written in another tiny transaction. A chat's spacing is kept in a short-lived
row of its own (its last send, and a group's sends of the last minute), locked after the
platform's row (one order, so no deadlocks). Chat rows are keyed by a digest of the chat id,
hold no content, and are deleted by the first send that comes once they constrain nothing
any more (a second after a chat's message, a minute after a group's). A 429 (or VK
error 6) pauses the platform for every process: the pause is written into the platform's row.

One transaction per process and platform asks at a time (a local lock); while the window is
full, that one waits and asks again, so the database sees a few small transactions per
message, not a poll per waiting task. A chat that must wait sleeps without holding that turn,
so it does not hold up the other chats. A send whose process died before completing it stops
counting after IN_FLIGHT_MAX seconds.

Clocks: the wall clock of each host (time.time); hosts sharing a database must be NTP-synced.
The two messages of margin (28 of 30) cover a skew of tens of milliseconds.

`mcu run` on SQLite keeps the in-memory limiter (one process; nothing to share). PostgreSQL
deployments use this one in every process (`deployment_limiter`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from scheduler.limits import (
    DEFAULT_LIMITS,
    Limits,
    RateLimiter,
    State,
    chat_wait,
    complete,
    platform_wait,
    take,
)
from storage.db import is_sqlite
from storage.models import RateWindow
from storage.sqlfuncs import on_conflict_insert

log = logging.getLogger(__name__)

PLATFORM_RECHECK = 1.0  # longest sleep before asking the database again (a pause may change)
CHAT_RECHECK = 5.0
PRUNE_EVERY = 10.0  # seconds between deletions of chat rows that constrain nothing any more
FAR = 10.0 ** 12  # a platform row never expires

def chat_key(platform: str, chat_id: str) -> str:
    """A chat's row: a digest, so the table holds no messenger ids."""
    digest = hashlib.sha256(f"{platform}:{chat_id}".encode()).hexdigest()[:40]
    return f"{platform}:c:{digest}"


# ---------------------------------------------------------------------------------------------
# The limiter


@dataclass(frozen=True)
class _Decision:
    token: str | None
    platform_wait: float = 0.0
    chat_wait: float = float("-inf")


class SharedRateLimiter:
    """The same interface as scheduler.limits.RateLimiter (`slot`, `pause`), with its state in
    the database so that every process that sends counts against one window."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], *, dialect: str,
                 limits: dict[str, Limits] | None = None,
                 clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.sessions = sessions
        self.dialect = dialect
        self.limits = limits or DEFAULT_LIMITS
        self._clock = clock
        self._sleep = sleep
        self._turns: dict[str, asyncio.Lock] = {}
        self._paused_until: dict[str, float] = {}  # known here before the database has it
        self._next_prune = 0.0
        self._background: set[asyncio.Task[None]] = set()
        # The chat rows this process wrote, with when they stop mattering: what `chat_wait`
        # knows without asking the database.
        self._chats_seen: dict[tuple[str, str], tuple[State, float]] = {}

    def pause(self, platform: str, seconds: float) -> None:
        """After a 429 / error 6: nothing goes to this platform for `seconds`, from any
        process (written to the database in the background; honoured here at once)."""
        until = self._clock() + seconds
        self._paused_until[platform] = max(self._paused_until.get(platform, 0.0), until)
        task = asyncio.get_running_loop().create_task(self._store_pause(platform, until))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def chat_wait(self, platform: str, chat_id: str, *, group: bool = False,
                  direct: bool = False) -> float:
        """Seconds until this chat's own limits let a message go, as far as this process
        knows (its own sends); a send from another process is still waited for in `slot`.
        The sender serves other chats meanwhile (scheduler/outbox.py)."""
        limits = self.limits.get(platform)
        seen = self._chats_seen.get((platform, chat_id))
        if limits is None or seen is None:
            return 0.0
        return max(chat_wait(seen[0], limits, self._clock(), group=group, direct=direct), 0.0)

    @contextlib.asynccontextmanager
    async def slot(self, platform: str, chat_id: str, *, group: bool = False,
                   direct: bool = False) -> AsyncIterator[None]:
        token = await self._acquire(platform, chat_id, group=group, direct=direct)
        try:
            yield
        finally:
            if token is not None:
                await self._release(platform, token)

    async def _acquire(self, platform: str, chat_id: str, *, group: bool,
                       direct: bool) -> str | None:
        limits = self.limits.get(platform)
        if limits is None:
            return None
        turn = self._turns.setdefault(platform, asyncio.Lock())
        while True:
            async with turn:
                decision = await self._try_take(platform, chat_id, limits, group, direct)
                if decision.token is not None:
                    return decision.token
                if decision.platform_wait >= decision.chat_wait:
                    # Every chat here waits for the platform: keep the turn while waiting.
                    await self._sleep(min(decision.platform_wait, PLATFORM_RECHECK))
                    continue
            await self._sleep(min(decision.chat_wait, CHAT_RECHECK))

    async def _try_take(self, platform: str, chat_id: str, limits: Limits, group: bool,
                        direct: bool) -> _Decision:
        async with self.sessions() as session, session.begin():
            platform_state = await self._locked(session, platform)
            now = self._clock()  # after the lock: entries follow the transactions' order
            wait = max(platform_wait(platform_state, limits, now),
                       self._paused_until.get(platform, 0.0) - now)
            if wait > 0:
                return _Decision(None, platform_wait=wait)
            if now >= self._next_prune:
                self._next_prune = now + PRUNE_EVERY
                await session.execute(delete(RateWindow).where(
                    RateWindow.key.like(f"{platform}:c:%"), RateWindow.expires < now))
            key = chat_key(platform, chat_id)
            chat_state = await self._locked(session, key)
            wait = chat_wait(chat_state, limits, now, group=group, direct=direct)
            if wait > 0:
                return _Decision(None, chat_wait=wait)
            token = uuid.uuid4().hex[:12]
            new_platform, new_chat, expires = take(platform_state, chat_state, limits, now,
                                                   token, group=group)
            await session.execute(update(RateWindow).where(RateWindow.key == platform)
                                  .values(state=new_platform, expires=FAR))
            await session.execute(update(RateWindow).where(RateWindow.key == key)
                                  .values(state=new_chat, expires=expires))
        self._remember_chat((platform, chat_id), new_chat, expires, now)
        return _Decision(token)

    def _remember_chat(self, chat: tuple[str, str], state: State, expires: float,
                       now: float) -> None:
        if len(self._chats_seen) > 1000:  # keep it small: forget the rows that expired
            self._chats_seen = {k: v for k, v in self._chats_seen.items() if v[1] > now}
        self._chats_seen[chat] = (state, expires)

    async def _release(self, platform: str, token: str) -> None:
        """The send completed: it counts for one more second, then frees its place. A failure
        here must not turn a delivered message into a failed one: the entry then stops
        counting after IN_FLIGHT_MAX."""
        try:
            async with self.sessions() as session, session.begin():
                state = await self._locked(session, platform)
                await session.execute(update(RateWindow).where(RateWindow.key == platform)
                                      .values(state=complete(state, token, self._clock())))
        except Exception as error:
            log.warning("rate window: completion not recorded (%s)", type(error).__name__)

    async def _store_pause(self, platform: str, until: float) -> None:
        try:
            async with self.sessions() as session, session.begin():
                state = await self._locked(session, platform)
                state = {**state, "paused_until": max(float(state.get("paused_until", 0.0)),
                                                      until)}
                await session.execute(update(RateWindow).where(RateWindow.key == platform)
                                      .values(state=state))
        except Exception as error:
            log.warning("rate window: pause not shared (%s)", type(error).__name__)

    async def _locked(self, session: AsyncSession, key: str) -> State:
        """The row's state, locked until the transaction ends (created when missing)."""
        await session.execute(self._insert_missing(key))
        state = await session.scalar(select(RateWindow.state).where(RateWindow.key == key)
                                     .with_for_update())
        return dict(state or {})

    def _insert_missing(self, key: str) -> Any:
        return (on_conflict_insert(self.dialect)(RateWindow)
                .values(key=key, state={}, expires=0.0)
                .on_conflict_do_nothing(index_elements=["key"]))


def deployment_limiter(sessions: async_sessionmaker[AsyncSession], database_url: str, *,
                       telegram_per_second: float | None = None
                       ) -> RateLimiter | SharedRateLimiter:
    """The limiter of a process that sends: in memory for the one-process SQLite default,
    shared through the database on PostgreSQL, where several processes send.
    `telegram_per_second` replaces Telegram's total (MCU_TELEGRAM_MESSAGES_PER_SECOND)."""
    limits = dict(DEFAULT_LIMITS)
    if telegram_per_second is not None:
        limits["telegram"] = replace(limits["telegram"], per_second=telegram_per_second)
    if is_sqlite(database_url):
        return RateLimiter(limits)
    return SharedRateLimiter(sessions, dialect="postgresql", limits=limits)
