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
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass


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
IN_FLIGHT_POLL = 0.02  # seconds


class RateLimiter:
    def __init__(self, limits: dict[str, Limits] | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.limits = limits or DEFAULT_LIMITS
        self._clock = clock
        self._sleep = sleep
        # Per platform: [let through at, completed at (None while in flight)].
        self._sent: dict[str, list[list[float | None]]] = {}
        self._last_in_chat: dict[tuple[str, str], float] = {}
        self._group_sent: dict[tuple[str, str], deque[float]] = {}
        self._paused_until: dict[str, float] = {}
        self._lines: dict[str, asyncio.Lock] = {}  # asyncio.Lock wakes its waiters in order

    def pause(self, platform: str, seconds: float) -> None:
        """After a 429 / error 6: nothing goes to this platform for `seconds`."""
        self._paused_until[platform] = max(self._paused_until.get(platform, 0.0),
                                           self._clock() + seconds)

    @contextlib.asynccontextmanager
    async def slot(self, platform: str, chat_id: str, *, group: bool = False,
                   direct: bool = False) -> AsyncIterator[None]:
        """Hold a slot for one request: wait until it may go, and count it until a second
        after it completed. `direct` answers the user who just wrote: it keeps the totals
        but not the per-chat spacing, meant for messages nobody asked for."""
        entry = await self._acquire(platform, chat_id, group=group, direct=direct)
        try:
            yield
        finally:
            if entry is not None:
                entry[1] = self._clock()

    async def _acquire(self, platform: str, chat_id: str, *, group: bool,
                       direct: bool) -> list[float | None] | None:
        limits = self.limits.get(platform)
        if limits is None:
            return None
        chat = (platform, chat_id)
        line = self._lines.setdefault(platform, asyncio.Lock())
        while True:
            # The chat's own limits are waited out of the line: they hold up no other chat.
            own = self.chat_wait(platform, chat_id, group=group, direct=direct)
            if own > 0:
                await self._sleep(own)
                continue
            async with line:
                while True:
                    now = self._clock()
                    if self.chat_wait(platform, chat_id, group=group, direct=direct) > 0:
                        break  # another message to this chat went first: out of the line
                    wait = self._wait(platform, chat, limits, now, group, direct)
                    if wait <= 0:
                        return self._take(platform, chat, now, group)
                    await self._sleep(wait)

    def chat_wait(self, platform: str, chat_id: str, *, group: bool = False,
                  direct: bool = False) -> float:
        """Seconds until this chat's own limits (its spacing, a group's minute) let a
        message go; a pause and the platform's total are left to `slot`. A sender that
        would wait longer serves other chats meanwhile and comes back to this one."""
        limits = self.limits.get(platform)
        if limits is None:
            return 0.0
        now = self._clock()
        chat = (platform, chat_id)
        wait = 0.0
        if not direct and chat in self._last_in_chat:
            wait = max(wait, self._last_in_chat[chat] + limits.per_chat_interval - now)
        if group and chat in self._group_sent:
            window = _pruned(self._group_sent[chat], now - GROUP_WINDOW)
            if len(window) >= limits.group_per_minute:
                wait = max(wait, window[0] + GROUP_WINDOW - now)
        return max(wait, 0.0)

    def _wait(self, platform: str, chat: tuple[str, str], limits: Limits, now: float,
              group: bool, direct: bool) -> float:
        wait = self._paused_until.get(platform, 0.0) - now
        if not direct and chat in self._last_in_chat:
            wait = max(wait, self._last_in_chat[chat] + limits.per_chat_interval - now)
        if group:
            window = _pruned(self._group_sent.setdefault(chat, deque()), now - GROUP_WINDOW)
            if len(window) >= limits.group_per_minute:
                wait = max(wait, window[0] + GROUP_WINDOW - now)
        sent = self._sent[platform] = [e for e in self._sent.get(platform, [])
                                       if e[1] is None or e[1] > now - WINDOW]
        if len(sent) >= limits.per_second:
            completed = [e[1] for e in sent if e[1] is not None]
            # Nothing completed yet: look again shortly (a request is under way).
            wait = max(wait, min(completed) + WINDOW - now if completed else IN_FLIGHT_POLL)
        return wait

    def _take(self, platform: str, chat: tuple[str, str], now: float,
              group: bool) -> list[float | None]:
        entry: list[float | None] = [now, None]
        self._sent[platform].append(entry)
        self._last_in_chat[chat] = now
        if group:
            self._group_sent[chat].append(now)
        if len(self._last_in_chat) > 10_000:  # forget idle chats so memory stays bounded
            self._last_in_chat = {k: v for k, v in self._last_in_chat.items() if v > now - 60}
        return entry


def _pruned(window: deque[float], older_than: float) -> deque[float]:
    while window and window[0] <= older_than:
        window.popleft()
    return window
