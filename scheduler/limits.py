"""Messenger rate limits, so that notifications are not lost exactly when load peaks.

Telegram: about 30 messages/s in total, about 1/s per chat, 20/min per group; VK: a community
token allows 20 requests/s.

Sliding windows of the moments messages were actually let through: a slot is taken only
when the message may go now, never reserved ahead. A stalled event loop therefore cannot
release a burst of overdue reservations at once, and no one-second window ever holds more
than `per_second` messages. A chat that must wait does not hold up the other chats.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
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


class RateLimiter:
    def __init__(self, limits: dict[str, Limits] | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.limits = limits or DEFAULT_LIMITS
        self._clock = clock
        self._sleep = sleep
        self._sent: dict[str, deque[float]] = {}
        self._last_in_chat: dict[tuple[str, str], float] = {}
        self._group_sent: dict[tuple[str, str], deque[float]] = {}
        self._paused_until: dict[str, float] = {}
        self._lock = asyncio.Lock()

    def pause(self, platform: str, seconds: float) -> None:
        """After a 429 / error 6: nothing goes to this platform for `seconds`."""
        self._paused_until[platform] = max(self._paused_until.get(platform, 0.0),
                                           self._clock() + seconds)

    async def acquire(self, platform: str, chat_id: str, *, group: bool = False,
                      direct: bool = False) -> None:
        """Wait until one message may go. `direct` answers the user who just wrote: it keeps
        the totals but not the per-chat spacing, meant for messages nobody asked for."""
        limits = self.limits.get(platform)
        if limits is None:
            return
        while True:
            async with self._lock:
                now = self._clock()
                wait = self._wait(platform, (platform, chat_id), limits, now, group, direct)
                if wait <= 0:
                    self._take(platform, (platform, chat_id), now, group)
                    return
            await self._sleep(wait)

    def _wait(self, platform: str, chat: tuple[str, str], limits: Limits, now: float,
              group: bool, direct: bool) -> float:
        wait = self._paused_until.get(platform, 0.0) - now
        if not direct and chat in self._last_in_chat:
            wait = max(wait, self._last_in_chat[chat] + limits.per_chat_interval - now)
        if group:
            window = _pruned(self._group_sent.setdefault(chat, deque()), now - GROUP_WINDOW)
            if len(window) >= limits.group_per_minute:
                wait = max(wait, window[0] + GROUP_WINDOW - now)
        sent = _pruned(self._sent.setdefault(platform, deque()), now - WINDOW)
        if len(sent) >= limits.per_second:
            wait = max(wait, sent[0] + WINDOW - now)
        return wait

    def _take(self, platform: str, chat: tuple[str, str], now: float, group: bool) -> None:
        self._sent[platform].append(now)
        self._last_in_chat[chat] = now
        if group:
            self._group_sent[chat].append(now)
        if len(self._last_in_chat) > 10_000:  # forget idle chats so memory stays bounded
            self._last_in_chat = {k: v for k, v in self._last_in_chat.items() if v > now - 60}


def _pruned(window: deque[float], older_than: float) -> deque[float]:
    while window and window[0] <= older_than:
        window.popleft()
    return window
