"""Messenger rate limits, so that notifications are not lost exactly when load peaks.

Telegram: about 30 messages/s in total, about 1/s per chat, 20/min per group; VK: a community
token allows 20 requests/s.

A sliding window, taken only when a message may go now (never reserved ahead, so a stalled
event loop cannot release a burst of overdue reservations). A message occupies the window
from the moment it is let through until one second after its request completed: the
messenger receives it somewhere in between, so however the network delays requests, no
one-second window at the messenger's side holds more than `per_second` messages. A chat that
must wait does not hold up the other chats.

The platform's total is shared first come, first served: a message whose chat may receive it
joins the platform's line and gets a slot of the window in its turn. Without the line, the
waiters that woke first took the slots, and a head's card could wait behind every citizen's
receipt of a burst.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Limits:
    per_second: float  # messages in any one-second window
    per_chat_interval: float  # seconds between two messages to one chat
    group_per_minute: int  # messages to one group chat in any 60 s


DEFAULT_LIMITS = {
    "telegram": Limits(per_second=28, per_chat_interval=1.0, group_per_minute=20),
    "vk": Limits(per_second=20, per_chat_interval=0.0, group_per_minute=1000),
}
WINDOW = 1.0
GROUP_WINDOW = 60.0
IN_FLIGHT_MAX = 60.0  # seconds: a send not completed by then (its process died) stops counting
IN_FLIGHT_POLL = 0.05  # seconds: the window is full of sends still under way; look again soon
CHATS_KEPT = 10_000  # chats remembered in memory before those that constrain nothing are dropped

Entry = list[Any]  # [token, let through at, completed at | None]
State = dict[str, Any]


class RateLimiter:
    """The limits of one process, its state in memory (`mcu run`); scheduler/shared_limits.py
    keeps the same state in the database for a deployment of several processes."""

    def __init__(self, limits: dict[str, Limits] | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.limits = limits or DEFAULT_LIMITS
        self._clock = clock
        self._sleep = sleep
        self._platforms: dict[str, State] = {}
        # Each chat's state, with when it stops constraining anything.
        self._chats: dict[tuple[str, str], tuple[State, float]] = {}
        self._lines: dict[str, asyncio.Lock] = {}  # asyncio.Lock wakes its waiters in order
        self._tokens = itertools.count()

    def pause(self, platform: str, seconds: float) -> None:
        """After a 429 / error 6: nothing goes to this platform for `seconds`."""
        state = self._platforms.setdefault(platform, {})
        state["paused_until"] = max(float(state.get("paused_until", 0.0)),
                                    self._clock() + seconds)

    @contextlib.asynccontextmanager
    async def slot(self, platform: str, chat_id: str, *, group: bool = False,
                   direct: bool = False) -> AsyncIterator[None]:
        """Hold a slot for one request: wait until it may go, and count it until a second
        after it completed. `direct` answers the user who just wrote: it keeps the totals
        but not the per-chat spacing, meant for messages nobody asked for."""
        token = await self._acquire(platform, chat_id, group=group, direct=direct)
        try:
            yield
        finally:
            if token is not None:
                self._platforms[platform] = complete(self._platforms[platform], token,
                                                     self._clock())

    async def _acquire(self, platform: str, chat_id: str, *, group: bool,
                       direct: bool) -> str | None:
        limits = self.limits.get(platform)
        if limits is None:
            return None
        line = self._lines.setdefault(platform, asyncio.Lock())
        while True:
            # The chat's own limits are waited out of the line: they hold up no other chat.
            own = self.chat_wait(platform, chat_id, group=group, direct=direct)
            if own > 0:
                await self._sleep(own)
                continue
            async with line:
                while True:
                    if self.chat_wait(platform, chat_id, group=group, direct=direct) > 0:
                        break  # another message to this chat went first: out of the line
                    now = self._clock()
                    wait = platform_wait(self._platforms.get(platform, {}), limits, now)
                    if wait <= 0:
                        return self._take(platform, chat_id, limits, now, group)
                    await self._sleep(wait)

    def chat_wait(self, platform: str, chat_id: str, *, group: bool = False,
                  direct: bool = False) -> float:
        """Seconds until this chat's own limits (its spacing, a group's minute) let a
        message go; a pause and the platform's total are left to `slot`. A sender that
        would wait longer serves other chats meanwhile and comes back to this one."""
        limits = self.limits.get(platform)
        seen = self._chats.get((platform, chat_id))
        if limits is None or seen is None:
            return 0.0
        return max(chat_wait(seen[0], limits, self._clock(), group=group, direct=direct), 0.0)

    def _take(self, platform: str, chat_id: str, limits: Limits, now: float,
              group: bool) -> str:
        token = str(next(self._tokens))
        seen = self._chats.get((platform, chat_id))
        self._platforms[platform], chat, expires = take(
            self._platforms.get(platform, {}), seen[0] if seen else {}, limits, now, token,
            group=group)
        self._chats[(platform, chat_id)] = (chat, expires)
        if len(self._chats) > CHATS_KEPT:  # memory stays bounded
            self._chats = {key: kept for key, kept in self._chats.items() if kept[1] > now}
        return token


# ---------------------------------------------------------------------------------------------
# The window's rules, on plain state: kept in memory here, in the database by
# scheduler/shared_limits.py (tested on a simulated clock)


def _completed(entry: Entry, now: float) -> float | None:
    _, started, completed = entry
    if completed is None and now - started > IN_FLIGHT_MAX:
        return float(started) + IN_FLIGHT_MAX
    return None if completed is None else float(completed)


def live_sends(state: State, now: float) -> list[Entry]:
    """The sends that still occupy the window at `now`."""
    live = []
    for entry in state.get("sent", []):
        completed = _completed(entry, now)
        if completed is None or completed > now - WINDOW:
            live.append(entry)
    return live


def platform_wait(state: State, limits: Limits, now: float) -> float:
    """Seconds until one more send may go to the platform (<= 0: now)."""
    wait = float(state.get("paused_until", 0.0)) - now
    live = live_sends(state, now)
    if len(live) >= limits.per_second:
        ends = [c for c in (_completed(e, now) for e in live) if c is not None]
        # Nothing completed yet: look again shortly (requests are under way).
        wait = max(wait, min(ends) + WINDOW - now if ends else IN_FLIGHT_POLL)
    return wait


def chat_wait(state: State, limits: Limits, now: float, *, group: bool, direct: bool) -> float:
    """Seconds until one more message may go to this chat (<= 0: now). `direct` answers the
    user who just wrote: no per-chat spacing, meant for messages nobody asked for."""
    wait = float("-inf")
    last = state.get("last")
    if not direct and last is not None:
        wait = float(last) + limits.per_chat_interval - now
    if group:
        recent = [t for t in state.get("group", []) if t > now - GROUP_WINDOW]
        if len(recent) >= limits.group_per_minute:
            wait = max(wait, min(recent) + GROUP_WINDOW - now)
    return wait


def take(platform_state: State, chat_state: State, limits: Limits, now: float, token: str, *,
         group: bool) -> tuple[State, State, float]:
    """The states after letting one send through; and until when the chat's row matters."""
    sent = [*live_sends(platform_state, now), [token, now, None]]
    platform = {"sent": sent, "paused_until": platform_state.get("paused_until", 0.0)}
    recent = [t for t in chat_state.get("group", []) if t > now - GROUP_WINDOW]
    if group:
        recent.append(now)
    chat = {"last": now, "group": recent}
    expires = max([now + limits.per_chat_interval, *(t + GROUP_WINDOW for t in recent)])
    return platform, chat, expires


def complete(platform_state: State, token: str, now: float) -> State:
    """The platform's state after the send `token` completed at `now`."""
    sent = []
    for entry in live_sends(platform_state, now):
        if entry[0] == token and entry[2] is None:
            entry = [entry[0], entry[1], now]
        sent.append(entry)
    return {"sent": sent, "paused_until": platform_state.get("paused_until", 0.0)}
