"""Messenger rate limits, so that notifications are not lost exactly when load peaks.

Telegram: about 30 messages/s in total (we keep 25), about 1/s per chat, 20/min per group.
VK: a community token allows 20 requests/s.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    per_second: float
    per_chat_interval: float
    group_per_minute: int


DEFAULT_LIMITS = {
    "telegram": Limits(per_second=25, per_chat_interval=1.0, group_per_minute=20),
    "vk": Limits(per_second=20, per_chat_interval=0.0, group_per_minute=1000),
}


class RateLimiter:
    def __init__(self, limits: dict[str, Limits] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits or DEFAULT_LIMITS
        self._clock = clock
        self._recent: dict[str, deque[float]] = {}
        self._last_in_chat: dict[tuple[str, str], float] = {}
        self._group_recent: dict[tuple[str, str], deque[float]] = {}
        self._paused_until: dict[str, float] = {}
        self._lock = asyncio.Lock()

    def pause(self, platform: str, seconds: float) -> None:
        """After a 429 / error 6: nothing goes to this platform for `seconds`."""
        self._paused_until[platform] = max(self._paused_until.get(platform, 0.0),
                                           self._clock() + seconds)

    def _delay(self, platform: str, chat_id: str, group: bool) -> float:
        limits = self.limits.get(platform)
        now = self._clock()
        delay = max(0.0, self._paused_until.get(platform, 0.0) - now)
        if limits is None:
            return delay
        recent = self._recent.setdefault(platform, deque())
        while recent and recent[0] <= now - 1.0:
            recent.popleft()
        if len(recent) >= limits.per_second:
            delay = max(delay, recent[0] + 1.0 - now)
        last = self._last_in_chat.get((platform, chat_id))
        if last is not None:
            delay = max(delay, last + limits.per_chat_interval - now)
        if group:
            sent = self._group_recent.setdefault((platform, chat_id), deque())
            while sent and sent[0] <= now - 60.0:
                sent.popleft()
            if len(sent) >= limits.group_per_minute:
                delay = max(delay, sent[0] + 60.0 - now)
        return delay

    async def acquire(self, platform: str, chat_id: str, *, group: bool = False) -> None:
        async with self._lock:
            while (delay := self._delay(platform, chat_id, group)) > 0:
                await asyncio.sleep(delay)
            now = self._clock()
            self._recent.setdefault(platform, deque()).append(now)
            self._last_in_chat[(platform, chat_id)] = now
            if group:
                self._group_recent.setdefault((platform, chat_id), deque()).append(now)
