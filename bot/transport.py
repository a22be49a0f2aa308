"""What the rest of the process needs from a messenger transport."""

from __future__ import annotations

from typing import Protocol

from handlers.events import Platform, Progress, Reply


class Transport(Protocol):
    platform: Platform

    async def start(self) -> None:
        """Start receiving updates (returns once receiving runs in the background)."""

    async def open_for_sending(self) -> None:
        """Only deliver, without receiving (a CLI flushing the outbox)."""

    async def stop(self) -> None: ...

    async def send(self, chat_id: str, reply: Reply, *, dedupe_id: int | None = None,
                   progress: Progress | None = None) -> None:
        """Deliver one neutral reply, resuming after `progress.start` parts; raise
        handlers.events.DeliveryError on failure. `dedupe_id` (the outbox row) lets a
        messenger that supports it drop a repeat."""
