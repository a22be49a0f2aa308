"""What the rest of the process needs from a messenger transport."""

from __future__ import annotations

from typing import Protocol

from handlers.events import Platform, Reply


class Transport(Protocol):
    platform: Platform

    async def start(self) -> None:
        """Start receiving updates (returns once receiving runs in the background)."""

    async def stop(self) -> None: ...

    async def send(self, chat_id: str, reply: Reply, *, dedupe_id: int | None = None) -> None:
        """Deliver one neutral reply; raise handlers.events.DeliveryError on failure.
        `dedupe_id` (the outbox row) lets a messenger that supports it drop a repeat."""
