"""Test harness for the Telegram transport: know when aiogram has finished an update."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from aiogram.types import TelegramObject, Update


class Processed:
    """Outer update middleware: counts the updates aiogram has finished handling."""

    def __init__(self) -> None:
        self.counts: Counter[int] = Counter()
        self._changed = asyncio.Condition()

    async def __call__(self, handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
                       event: TelegramObject, data: dict[str, Any]) -> Any:
        try:
            return await handler(event, data)
        finally:
            assert isinstance(event, Update)
            self.counts[event.update_id] += 1
            async with self._changed:
                self._changed.notify_all()

    async def wait(self, update_id: int, times: int = 1, timeout: float = 5) -> None:
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: self.counts[update_id] >= times)
