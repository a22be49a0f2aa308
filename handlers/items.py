"""Registering items and moving them through the lifecycle, with the append-only history."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from handlers.context import Services
from handlers.rules.calendar import WorkCalendar
from handlers.rules.deadlines import Kind, compute_deadlines
from handlers.rules.lifecycle import Action, Actor, Status, check
from storage.models import Attachment, Item, ItemEvent, RegistrationCounter


async def next_number(session: AsyncSession, year: int) -> str:
    """The next readable number of the year, like 2026-000123 (sequential, never reused)."""
    return (await reserve_numbers(session, year, 1))[0]


async def reserve_numbers(session: AsyncSession, year: int, count: int) -> list[str]:
    """`count` consecutive numbers of the year with one UPDATE (a file import takes a block
    per batch instead of one round trip per row)."""
    if count < 1:
        return []
    for _ in range(3):
        result = await session.execute(
            update(RegistrationCounter)
            .where(RegistrationCounter.year == year)
            .values(last_value=RegistrationCounter.last_value + count)
        )
        if result.rowcount:  # type: ignore[attr-defined]
            last = await session.scalar(
                select(RegistrationCounter.last_value).where(RegistrationCounter.year == year))
            assert last is not None
            return [f"{year}-{value:06d}" for value in range(last - count + 1, last + 1)]
        try:
            async with session.begin_nested():
                session.add(RegistrationCounter(year=year, last_value=0))
        except IntegrityError:
            pass  # another transaction created the year's row first; update it instead
    raise RuntimeError("could not allocate a registration number")


@dataclass
class NewItem:
    kind: Kind
    channel: str
    topic: str
    text: str
    received_at: datetime
    registered_at: datetime | None = None
    citizen_id: int | None = None
    reply_account_id: int | None = None
    address: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    external_number: str | None = None
    post_url: str | None = None
    registered_by_id: int | None = None
    no_answer: bool = False
    attachment_ids: tuple[int, ...] = ()
    # What the topic suggester proposed (handlers/topics), kept to measure its use.
    suggested_topic: str | None = None
    suggestion_score: float | None = None


def build_item(services: Services, new: NewItem, number: str,
               calendar: WorkCalendar | None = None) -> Item:
    """The Item row of a new registration, with its deadlines and block, not yet routed.

    A caller building many items passes one `calendar`: it memoizes each year's holidays,
    which are slow to compute again for every item.
    """
    now = services.now()
    registered_at = new.registered_at or new.received_at
    org = services.org
    block = org.block_of_topic[new.topic]
    deadlines = compute_deadlines(new.kind, org.policy(new.kind, new.topic),
                                  calendar or services.calendar, new.received_at, registered_at)
    return Item(
        number=number, kind=str(new.kind), channel=new.channel,
        external_number=new.external_number, status=str(Status.REGISTERED), topic=new.topic,
        block_id=block.id, text=new.text, address=new.address, latitude=new.latitude,
        longitude=new.longitude, post_url=new.post_url, citizen_id=new.citizen_id,
        reply_account_id=new.reply_account_id, registered_by_id=new.registered_by_id,
        no_answer=new.no_answer, suggested_topic=new.suggested_topic,
        suggestion_score=new.suggestion_score, received_at=new.received_at,
        registered_at=registered_at,
        created_at=now, updated_at=now, registration_due=deadlines.registration_due,
        forward_due=deadlines.forward_due, first_reaction_due=deadlines.first_reaction_due,
        answer_due=deadlines.answer_due, original_answer_due=deadlines.answer_due,
        extension_count=0, reopened_count=0,
    )


async def register_item(session: AsyncSession, services: Services, new: NewItem,
                        actor: Actor) -> Item:
    """Register, compute the deadlines and route to the block in the caller's transaction."""
    registered_at = new.registered_at or new.received_at
    number = await next_number(session, services.local(registered_at).year)
    item = build_item(services, new, number)
    session.add(item)
    await session.flush()
    session.add(ItemEvent(item_id=item.id, at=services.now(), actor=str(actor), action="register",
                          from_status=None, to_status=item.status,
                          actor_staff_id=new.registered_by_id))
    if new.attachment_ids:
        await session.execute(update(Attachment).where(Attachment.id.in_(new.attachment_ids))
                              .values(item_id=item.id))
    # Routing by topic is automatic, whoever registered the item.
    await transition(session, services, item, Action.ROUTE, Actor.SYSTEM, comment=item.block_id)
    return item


async def transition(
    session: AsyncSession,
    services: Services,
    item: Item,
    action: Action,
    actor: Actor,
    *,
    staff_id: int | None = None,
    account_id: int | None = None,
    comment: str | None = None,
) -> Status:
    """Apply one lifecycle transition (raises TransitionError) and record it in the history."""
    before = Status(item.status)
    after = check(action, before, actor)
    now = services.now()
    item.status = str(after)
    item.updated_at = now
    session.add(ItemEvent(item_id=item.id, at=now, actor=str(actor), action=str(action),
                          from_status=str(before), to_status=str(after), comment=comment,
                          actor_staff_id=staff_id, actor_account_id=account_id))
    return after


async def record_note(session: AsyncSession, services: Services, item: Item, action: str,
                      actor: Actor, *, comment: str | None = None, staff_id: int | None = None,
                      account_id: int | None = None) -> None:
    """A history entry that does not change the state (a comment, a delivered answer...)."""
    session.add(ItemEvent(item_id=item.id, at=services.now(), actor=str(actor), action=action,
                          from_status=item.status, to_status=item.status, comment=comment,
                          actor_staff_id=staff_id, actor_account_id=account_id))
