"""What the rest of the process needs from a messenger transport, and what every transport
shares: the channel into the core, the per-user lanes, the outbox that delivers replies."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol, TypeVar

from aiohttp import web

from bot import errors
from bot.channel import Channel
from bot.lanes import Lanes
from handlers.capabilities import Capabilities
from handlers.core import Core
from handlers.events import Platform, Progress, Reply
from scheduler.outbox import OutboxSender

STOP_GRACE = 10.0  # seconds granted to the turns under way on stop()
Part = TypeVar("Part")


class Transport(Protocol):
    platform: Platform
    capabilities: Capabilities

    async def start(self) -> None:
        """Start receiving updates (returns once receiving runs in the background)."""

    async def open_for_sending(self) -> None:
        """Only deliver, without receiving (a CLI flushing the outbox)."""

    async def start_webhook(self, app: web.Application) -> None:
        """Receive through routes on `app` (`mcu serve`) instead of polling; called before
        the application starts. Registration with the messenger runs in the background."""

    async def stop(self) -> None: ...

    async def send(self, chat_id: str, reply: Reply, *, dedupe_id: int | None = None,
                   progress: Progress | None = None) -> None:
        """Deliver one neutral reply; raise handlers.events.DeliveryError on failure.
        `dedupe_id` (the outbox row) lets a messenger that supports it drop a repeat;
        `progress` resumes after the parts already delivered and marks each new one."""


class Edge(ABC):
    """The shared half of a transport; a messenger's module adds receiving and `send`."""

    platform: Platform
    capabilities: Capabilities

    def __init__(self, core: Core, outbox: OutboxSender | None) -> None:
        self.core = core
        self.outbox = outbox or OutboxSender(core.services, {self.platform: self})
        self.channel = Channel(core, self.outbox, self.send)
        self.lanes = Lanes()

    @abstractmethod
    async def send(self, chat_id: str, reply: Reply, *, dedupe_id: int | None = None,
                   progress: Progress | None = None) -> None:
        """Render the reply and deliver its parts with `send_parts`."""

    async def drain(self, timeout: float = 5.0) -> bool:
        """Wait until the updates received so far are handled (tests; graceful stop)."""
        return await self.lanes.drain(timeout)


async def send_parts(parts: Sequence[Part], progress: Progress | None,
                     send: Callable[[int, Part], Awaitable[None]],
                     classify: errors.Classify) -> None:
    """Send the parts of one rendered reply that were not delivered yet, each in its rate
    limit slot and marked as it arrives, so a retry resumes after it; a failure is raised in
    the outbox's terms (bot/errors.py). The last part has no mark of its own: the caller's
    mark once this returns (the outbox's `sent`) is the one write after it."""
    progress = progress or Progress()
    for index in range(progress.start, len(parts)):
        try:
            async with progress.slot():
                await send(index, parts[index])
        except Exception as error:
            errors.reraise(error, classify)
        if progress.after_part is not None and index + 1 < len(parts):
            await progress.after_part(index + 1)
