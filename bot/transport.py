"""What the rest of the process needs from a messenger transport."""

from __future__ import annotations

from typing import Protocol

from handlers.events import Platform, Reply


class Transport(Protocol):
    platform: Platform

    async def start(self) -> None:
        """Start receiving updates (returns once receiving runs in the background)."""

    async def stop(self) -> None: ...

    async def send(self, chat_id: str, reply: Reply) -> None:
        """Deliver one neutral reply; raise handlers.events.DeliveryError on failure."""
