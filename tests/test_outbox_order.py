"""The outbox sender's order and marks, with a transport that records what it was asked to
send (the real transports are exercised over HTTP in test_delivery and the drills)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from handlers.events import ChatRef, DeliveryError, Platform, Progress, Reply
from handlers.outbox import enqueue
from scheduler.outbox import OutboxSender
from storage.models import OutboxMessage


class Recording:
    """Every text line of a reply is one visible part; `fail_at` fails one part once."""

    def __init__(self) -> None:
        self.parts: list[tuple[str, str]] = []
        self.fail_at: str | None = None

    async def send(self, chat_id: str, reply: Reply, *, dedupe_id: int | None = None,
                   progress: Progress | None = None) -> None:
        progress = progress or Progress()
        lines = reply.text.split("\n")
        for index in range(progress.start, len(lines)):
            if lines[index] == self.fail_at:
                self.fail_at = None
                raise DeliveryError("HTTP 500")
            async with progress.slot():
                self.parts.append((chat_id, lines[index]))
            if progress.after_part is not None:
                await progress.after_part(index + 1)


async def queue(services, chat: str, text: str, *, audience: str = "staff",
                not_before=None) -> None:
    async with services.sessions() as session, session.begin():
        enqueue(session, ChatRef(Platform.TELEGRAM, chat), Reply(text), audience=audience,
                now=services.now(), not_before=not_before)


async def rows(services) -> list[OutboxMessage]:
    async with services.sessions() as session:
        return list((await session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))
                    .all())


async def test_a_held_row_never_blocks_a_due_one_in_the_same_chat(services, clock):
    transport = Recording()
    sender = OutboxSender(services, {"telegram": transport})
    await queue(services, "7", "escalation at 09:00", not_before=clock.now() + timedelta(hours=9))
    await queue(services, "7", "new card")
    assert await sender.sweep() == 1
    assert transport.parts == [("7", "new card")]
    clock.advance(hours=9)
    assert await sender.sweep() == 1
    assert transport.parts[-1] == ("7", "escalation at 09:00")


async def test_a_row_waiting_for_its_retry_keeps_the_later_ones_behind_it(services, clock):
    transport = Recording()
    transport.fail_at = "first"
    sender = OutboxSender(services, {"telegram": transport})
    await queue(services, "7", "first")
    await queue(services, "7", "second")
    assert await sender.sweep() == 0  # the first failed; the second must not overtake it
    assert transport.parts == []
    clock.advance(minutes=1)
    assert await sender.sweep() == 2
    assert transport.parts == [("7", "first"), ("7", "second")]


async def test_a_retry_resumes_after_the_parts_that_arrived(services, clock):
    transport = Recording()
    transport.fail_at = "text"
    sender = OutboxSender(services, {"telegram": transport})
    await queue(services, "7", "chart\ntext")  # e.g. the summary's chart, then its text
    assert await sender.sweep() == 0
    assert [row.parts_sent for row in await rows(services)] == [1]
    clock.advance(minutes=1)
    assert await sender.sweep() == 1
    assert transport.parts == [("7", "chart"), ("7", "text")]  # the chart once


async def test_a_delivered_row_keeps_no_content_and_no_citizen_chat(services):
    sender = OutboxSender(services, {"telegram": Recording()})
    await queue(services, "501", "Ваше сообщение 2026-000001 зарегистрировано",
                audience="citizen")
    await queue(services, "1001", "Новая карточка", audience="staff")
    await sender.sweep()
    citizen, staff = await rows(services)
    assert citizen.status == staff.status == "sent"
    assert citizen.payload["text"] == staff.payload["text"] == ""
    assert citizen.chat_id == "" and staff.chat_id == "1001"


async def test_after_an_outage_the_first_success_makes_waiting_rows_due(services, clock):
    transport = Recording()
    transport.fail_at = "a"
    sender = OutboxSender(services, {"telegram": transport})
    await queue(services, "1", "a")
    await sender.sweep()  # fails: back-off of a few seconds
    await queue(services, "2", "b")
    clock.advance(seconds=1)
    assert await sender.sweep() == 1  # chat 2 succeeds: the messenger is back
    assert await sender.sweep() == 1  # so chat 1 is retried now, not after its back-off
    assert transport.parts == [("2", "b"), ("1", "a")]
