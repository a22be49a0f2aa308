"""Durable delivery: the outbox sender.

Rows are claimed with a conditional UPDATE (a lease), so two processes never send the same row
at once; a row is marked sent right after the transport accepted it. A crash between the send
and the mark can repeat at most that one message after the lease expires (at-least-once), and
a per-chat order is kept by never sending a later row of a chat while an earlier one waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Mapping
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update

from handlers.context import Services
from handlers.events import DeliveryError, Reply
from scheduler.limits import RateLimiter
from storage.models import Account, OutboxMessage

log = logging.getLogger(__name__)

LEASE = timedelta(minutes=2)
RETRY_WINDOW = timedelta(hours=24)
BATCH = 500
CONCURRENT_CHATS = 16


def backoff(attempts: int) -> timedelta:
    """Exponential back-off with jitter: 2 s, 4 s, 8 s … capped at 15 minutes."""
    base = min(2 ** attempts, 900)
    return timedelta(seconds=base * random.uniform(0.5, 1.0))


class OutboxSender:
    def __init__(self, services: Services, transports: Mapping[str, object] | None = None,
                 limiter: RateLimiter | None = None, idle_interval: float = 5.0) -> None:
        self.services = services
        self.transports: Mapping[str, object] = transports or {}
        self.limiter = limiter or RateLimiter()
        self.idle_interval = idle_interval
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        self._wake.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="outbox-sender")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _loop(self) -> None:
        while True:
            # Cleared before the sweep: a wake-up that arrives during it is not lost.
            self._wake.clear()
            try:
                sent = await self.sweep()
            except Exception:  # keep delivering after a database hiccup
                log.exception("outbox sweep failed")
                sent = 0
            if sent:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.idle_interval)

    async def sweep(self, now: datetime | None = None) -> int:
        """Deliver what is due; returns how many messages were sent.

        Chats are served concurrently (the rate limiter keeps the totals), the messages of one
        chat strictly in order: a later one never overtakes an earlier one that must wait.
        """
        now = now or self.services.now()
        async with self.services.sessions() as session:
            rows = (await session.scalars(
                select(OutboxMessage)
                .where(OutboxMessage.status == "pending",
                       OutboxMessage.platform.in_(list(self.transports)))
                .order_by(OutboxMessage.id).limit(BATCH))).all()
        by_chat: dict[tuple[str, str], list[OutboxMessage]] = {}
        for row in rows:
            by_chat.setdefault((row.platform, row.chat_id), []).append(row)
        gate = asyncio.Semaphore(CONCURRENT_CHATS)

        async def serve_chat(chat_rows: list[OutboxMessage]) -> int:
            sent = 0
            async with gate:
                for row in chat_rows:
                    if row.next_attempt_at > now or row.not_before > now:
                        break
                    if not await self._claim(row.id, now) or not await self._deliver(row, now):
                        break
                    sent += 1
            return sent

        return sum(await asyncio.gather(*(serve_chat(r) for r in by_chat.values())))

    async def _claim(self, row_id: int, now: datetime) -> bool:
        async with self.services.sessions() as session, session.begin():
            result = await session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id == row_id, OutboxMessage.status == "pending",
                       or_(OutboxMessage.claimed_until.is_(None),
                           OutboxMessage.claimed_until < now))
                .values(claimed_until=now + LEASE))
            return bool(result.rowcount)  # type: ignore[attr-defined]

    async def _deliver(self, row: OutboxMessage, now: datetime) -> bool:
        transport = self.transports[row.platform]
        await self.limiter.acquire(row.platform, row.chat_id, group=row.audience == "group")
        try:
            await transport.send(row.chat_id, Reply.from_json(row.payload),  # type: ignore[attr-defined]
                                 dedupe_id=row.id)
        except DeliveryError as error:
            await self._failed(row, now, error)
            return False
        except Exception as error:  # a bug or an unexpected library error: retry later
            log.exception("unexpected delivery error for outbox row %s", row.id)
            await self._failed(row, now, DeliveryError(type(error).__name__))
            return False
        async with self.services.sessions() as session, session.begin():
            await session.execute(update(OutboxMessage).where(OutboxMessage.id == row.id)
                                  .values(status="sent", sent_at=self.services.now(),
                                          attempts=row.attempts + 1, claimed_until=None))
        return True

    async def _failed(self, row: OutboxMessage, now: datetime, error: DeliveryError) -> None:
        attempts = row.attempts + 1
        values: dict[str, object] = {"attempts": attempts, "claimed_until": None,
                                     "last_error": str(error)[:500]}
        if error.blocked:
            values["status"] = "undeliverable"
        elif error.permanent or now - row.created_at > RETRY_WINDOW:
            values["status"] = "failed"
        else:
            delay = (timedelta(seconds=error.retry_after) if error.retry_after is not None
                     else backoff(attempts))
            values["next_attempt_at"] = now + delay
            if error.retry_after is not None:
                self.limiter.pause(row.platform, error.retry_after)
        log.warning("delivery of outbox row %s failed (%s): %s", row.id,
                    values.get("status", "will retry"), error)
        async with self.services.sessions() as session, session.begin():
            await session.execute(update(OutboxMessage).where(OutboxMessage.id == row.id)
                                  .values(**values))
            if error.blocked:
                # The citizen blocked the bot: remember it, so staff see it on the card.
                await session.execute(
                    update(Account).where(Account.platform == row.platform,
                                          Account.chat_id == row.chat_id)
                    .values(blocked_bot_at=now))
