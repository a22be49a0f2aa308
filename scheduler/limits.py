"""Messenger rate limits, so that notifications are not lost exactly when load peaks.

Telegram: about 30 messages/s in total (we keep 25), about 1/s per chat, 20/min per group.
VK: a community token allows 20 requests/s.

Slots are reserved under a lock and waited for outside it, so a chat that must wait a second
never holds up the other chats.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
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
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.limits = limits or DEFAULT_LIMITS
        self._clock = clock
        self._sleep = sleep
        self._next_free: dict[str, float] = {}
        self._next_in_chat: dict[tuple[str, str], float] = {}
        self._group_sent: dict[tuple[str, str], deque[float]] = {}
        self._paused_until: dict[str, float] = {}
        self._lock = asyncio.Lock()

    def pause(self, platform: str, seconds: float) -> None:
        """After a 429 / error 6: nothing goes to this platform for `seconds`."""
        self._paused_until[platform] = max(self._paused_until.get(platform, 0.0),
                                           self._clock() + seconds)

    async def _wait_until(self, moment: float) -> None:
        delay = moment - self._clock()
        if delay > 0:
            await self._sleep(delay)

    async def acquire(self, platform: str, chat_id: str, *, group: bool = False) -> None:
        limits = self.limits.get(platform)
        if limits is None:
            return
        key = (platform, chat_id)
        async with self._lock:  # this chat's own slot
            moment = max(self._clock(), self._next_in_chat.get(key, 0.0))
            if group:
                sent = self._group_sent.setdefault(key, deque())
                while sent and sent[0] <= moment - 60.0:
                    sent.popleft()
                if len(sent) >= limits.group_per_minute:
                    moment = max(moment, sent[0] + 60.0)
                sent.append(moment)
            self._next_in_chat[key] = moment + limits.per_chat_interval
        await self._wait_until(moment)
        async with self._lock:  # then a slot of the platform's total rate
            slot = max(self._clock(), self._next_free.get(platform, 0.0),
                       self._paused_until.get(platform, 0.0))
            self._next_free[platform] = slot + 1.0 / limits.per_second
        await self._wait_until(slot)
