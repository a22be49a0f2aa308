"""What both polling loops share: the lease that makes one process the poller, the back-off
while the messenger cannot be reached, and telling a cancellation from a failure."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from bot.channel import failure
from bot.lease import run_while_holding
from handlers.context import Services

log = logging.getLogger(__name__)

PAUSE_MIN, PAUSE_MAX = 0.5, 5.0  # seconds between attempts while polling fails


class Backoff:
    """The pause before the next poll: doubles on each failure, resets on a success."""

    def __init__(self, what: str, low: float = PAUSE_MIN, high: float = PAUSE_MAX) -> None:
        self.what = what
        self.low, self.high = low, high
        self.pause = low

    def succeeded(self) -> None:
        self.pause = self.low

    async def failed(self, error: Exception, retry_after: float | None = None) -> None:
        """Log the failure and wait; a cancellation that the HTTP client turned into a
        timeout or a connection error is raised as the cancellation it is."""
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise asyncio.CancelledError from error
        wait = retry_after or self.pause
        log.warning("%s failed (%s); retrying in %.1fs", self.what, type(error).__name__, wait)
        await asyncio.sleep(wait)
        self.pause = min(self.pause * 2, self.high)


def start_polling(services: Services, lease: str, poll: Callable[[], Awaitable[None]],
                  name: str) -> asyncio.Task[None]:
    """Poll in the background while this process holds `lease` (a messenger serves one
    consumer per bot, and one poller keeps each user's updates in order)."""
    task = asyncio.create_task(run_while_holding(services, lease, poll), name=name)

    def ended(done: asyncio.Task[None]) -> None:
        if not done.cancelled() and done.exception() is not None:
            log.error("%s stopped: %s", name, failure(done.exception()))  # type: ignore[arg-type]

    task.add_done_callback(ended)
    return task


async def stop_polling(task: asyncio.Task[None] | None) -> None:
    if task is not None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
