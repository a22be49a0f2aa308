"""Outbox claims with several senders on one database (SQLite and PostgreSQL; on PostgreSQL a
sweep claims chat heads with FOR UPDATE SKIP LOCKED): every row once, each chat in order, a
held row never blocking a due one, a row waiting for its retry keeping the later ones behind."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from handlers.clock import ManualClock
from handlers.context import Services
from scheduler.limits import DEFAULT_LIMITS, RateLimiter
from scheduler.outbox import OutboxSender
from tests.conftest import make_services
from tests.test_outbox_order import Recording, queue, rows


def unlimited() -> RateLimiter:
    """No limits for Telegram: they are not what these tests look at."""
    return RateLimiter(limits={"vk": DEFAULT_LIMITS["vk"]})


class Yielding(Recording):
    """Gives the other sender a turn inside every send, as a network request would."""

    async def send(self, chat_id, reply, *, dedupe_id=None, progress=None):  # type: ignore[no-untyped-def]
        await asyncio.sleep(0)
        await super().send(chat_id, reply, dedupe_id=dedupe_id, progress=progress)
        await asyncio.sleep(0)


@pytest.fixture
async def shared(db_url: str, tmp_path: Path, clock: ManualClock) -> AsyncIterator[Services]:
    services = await make_services(db_url, tmp_path / "data", clock)
    yield services
    await services.sessions.kw["bind"].dispose()


async def test_two_senders_send_every_row_once_and_each_chat_in_order(shared: Services) -> None:
    for n in range(5):
        for chat in range(30):
            await queue(shared, f"c{chat}", f"c{chat} row {n}")
    transport = Yielding()
    senders = [OutboxSender(shared, {"telegram": transport}, limiter=unlimited())
               for _ in range(2)]
    for _ in range(10):  # both sweep at once, again and again, until nothing is left
        if not sum(await asyncio.gather(*(s.sweep() for s in senders))):
            break
    by_chat: dict[str, list[str]] = defaultdict(list)
    for chat, text in transport.parts:
        by_chat[chat].append(text)
    assert len(transport.parts) == 150
    assert all(texts == [f"{chat} row {n}" for n in range(5)] for chat, texts in by_chat.items())
    assert {row.status for row in await rows(shared)} == {"sent"}
    assert all(row.claimed_until is None for row in await rows(shared))


async def test_a_chat_served_by_one_sender_is_skipped_by_the_other(shared: Services) -> None:
    """A reply delivered right after a turn (another process) never overtakes the row a
    sweep is sending to the same chat."""
    transport = Yielding()
    sweeping = OutboxSender(shared, {"telegram": transport}, limiter=unlimited())
    replying = OutboxSender(shared, {"telegram": transport}, limiter=unlimited())
    await queue(shared, "7", "card")
    await queue(shared, "7", "reply", audience="reply")
    await asyncio.gather(sweeping.sweep(), replying.deliver_chat("telegram", "7"))
    await replying.deliver_chat("telegram", "7")
    assert transport.parts == [("7", "card"), ("7", "reply")]


async def test_held_and_retried_rows_keep_their_places(shared: Services,
                                                       clock: ManualClock) -> None:
    transport = Recording()
    sender = OutboxSender(shared, {"telegram": transport}, limiter=unlimited())
    await queue(shared, "7", "escalation at 09:00", not_before=clock.now() + timedelta(hours=9))
    await queue(shared, "7", "new card")
    assert await sender.sweep() == 1
    transport.fail_at = "first"
    await queue(shared, "8", "first")
    await queue(shared, "8", "second")
    assert await sender.sweep() == 0  # the first failed; the second must not overtake it
    clock.advance(minutes=1)
    assert await sender.sweep() == 2
    clock.advance(hours=9)
    assert await sender.sweep() == 1
    assert transport.parts == [("7", "new card"), ("8", "first"), ("8", "second"),
                               ("7", "escalation at 09:00")]
