"""The per-item sweeps as they were before they became set-based: the oracle that
tests/test_sweeps_setbased.py compares the set-based ones with.

A frozen copy of handlers/sweeps.py, the recipient look-ups of handlers/recipients.py and the
`tell` / `enqueue_once` path of handlers/messaging.py and handlers/outbox.py at the time:
one item at a time through the ORM, recipients read per item, one SAVEPOINT per message.
Do not optimise it; it is slow on purpose (it is what the new code must agree with).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from handlers.context import Services
from handlers.events import Reply
from handlers.formatting import local_datetime
from handlers.i18n import translator
from handlers.org import Organisation, Role
from handlers.rules.deadlines import Kind
from handlers.rules.lifecycle import OPEN_STATES, WAITING_TO_BE_TAKEN
from storage.models import Account, Item, OutboxMessage, Staff

OPEN = [str(s) for s in OPEN_STATES]


# --- handlers/recipients.py ------------------------------------------------------------------

async def staff_ids_with_role(session: AsyncSession, role: Role,
                              block_id: str | None = None) -> list[int]:
    query = select(Staff.id).where(Staff.role == str(role), Staff.revoked_at.is_(None))
    if block_id is not None:
        query = query.where(Staff.block_id == block_id)
    return list((await session.scalars(query.order_by(Staff.id))).all())


async def block_leader_ids(session: AsyncSession, org: Organisation, block_id: str) -> list[int]:
    block = org.block_by_id.get(block_id)
    if block is not None and block.head_role == "head":
        heads = await staff_ids_with_role(session, Role.HEAD, block_id)
        if heads:
            return heads
    return await staff_ids_with_role(session, Role.CHAIRMAN)


async def assignee_ids(session: AsyncSession, org: Organisation, item: Item) -> list[int]:
    if item.executor_id is not None:
        return [item.executor_id]
    if item.taken_by_id is not None:
        return [item.taken_by_id]
    return await block_leader_ids(session, org, item.block_id)


async def staff_accounts(session: AsyncSession, staff_ids: Iterable[int]) -> list[Account]:
    ids = list(dict.fromkeys(staff_ids))
    if not ids:
        return []
    rows = await session.scalars(select(Account).where(Account.staff_id.in_(ids))
                                 .order_by(Account.id))
    return list(rows.all())


# --- handlers/outbox.py enqueue_once and handlers/messaging.py tell ------------------------

async def enqueue_once(session: AsyncSession, account: Account, reply: Reply, *, key: str,
                       now: datetime, item_id: int, not_before: datetime) -> bool:
    try:
        async with session.begin_nested():
            session.add(OutboxMessage(
                platform=account.platform, chat_id=account.chat_id, audience="staff",
                payload=reply.to_json(), status="pending", attempts=0, created_at=now,
                not_before=not_before, next_attempt_at=not_before, item_id=item_id,
                dedupe_key=key[:200]))
    except IntegrityError:
        return False
    return True


async def notify_staff_once(session: AsyncSession, services: Services, staff_ids: list[int],
                            item: Item, key: str, text_key: str, now: datetime,
                            **values: object) -> int:
    queued = 0
    not_before = services.calendar.next_working_moment(now)
    for account in await staff_accounts(session, staff_ids):
        t = translator(account.locale or services.default_locale)
        reply = Reply(t(text_key, number=item.number, **values), title=None, photos=[],
                      buttons=[])
        if await enqueue_once(session, account, reply,
                              key=f"{key}:{account.platform}:{account.chat_id}", now=now,
                              item_id=item.id, not_before=not_before):
            queued += 1
    return queued


# --- handlers/sweeps.py ------------------------------------------------------------------------

def _due_key(item: Item) -> str:
    assert item.answer_due is not None
    return item.answer_due.strftime("%Y%m%d%H%M")


async def send_reminders(session: AsyncSession, services: Services, now: datetime) -> int:
    calendar, org, tz = services.calendar, services.org, services.tz
    items = (await session.scalars(
        select(Item).where(Item.status.in_(OPEN), Item.answer_due > now,
                           Item.answer_due <= now + timedelta(days=21))
        .order_by(Item.answer_due))).all()
    queued = 0
    for item in items:
        assert item.answer_due is not None
        due_day = calendar.to_local(item.answer_due).date()
        moments: list[tuple[str, datetime]] = []
        if org.reminders.before_working_days > 0:
            day = due_day
            for _ in range(org.reminders.before_working_days):
                day = calendar.previous_working_day(day)
            moments.append((f"left{org.reminders.before_working_days}",
                            calendar.working_hours_start(day)))
        if org.reminders.due_day_morning and calendar.is_working_day(due_day):
            moments.append(("dueday", calendar.working_hours_start(due_day)))
        due_now = [(name, moment) for name, moment in moments if moment <= now]
        if not due_now:
            continue
        name, _ = max(due_now, key=lambda pair: pair[1])
        recipients = await assignee_ids(session, org, item)
        queued += await notify_staff_once(
            session, services, recipients, item, f"remind:{name}:{item.id}:{_due_key(item)}",
            f"sweep.reminder.{name.rstrip('0123456789')}", now,
            due=local_datetime(item.answer_due, tz))
    return queued


async def send_escalations(session: AsyncSession, services: Services, now: datetime) -> int:
    org, tz, calendar = services.org, services.tz, services.calendar
    chairmen = await staff_ids_with_role(session, Role.CHAIRMAN)
    curators = await staff_ids_with_role(session, Role.CURATOR)
    queued = 0
    overdue = (await session.scalars(
        select(Item).where(Item.status.in_(OPEN), Item.answer_due < now)
        .order_by(Item.answer_due))).all()
    today = calendar.to_local(now).date()
    for item in overdue:
        assert item.answer_due is not None
        leaders = await block_leader_ids(session, org, item.block_id)
        due = local_datetime(item.answer_due, tz)
        late = calendar.working_days_between(calendar.to_local(item.answer_due).date(), today)
        queued += await notify_staff_once(
            session, services, list(dict.fromkeys([*leaders, *chairmen])), item,
            f"overdue:{item.id}:{_due_key(item)}", "sweep.overdue", now, due=due,
            block=org.block_by_id[item.block_id].title)
        if late >= org.escalation.curator_after_working_days:
            queued += await notify_staff_once(
                session, services, curators, item, f"overdue_long:{item.id}:{_due_key(item)}",
                "sweep.overdue_long", now, due=due, days=late,
                block=org.block_by_id[item.block_id].title)
    not_taken = (await session.scalars(
        select(Item).where(Item.status.in_([str(s) for s in WAITING_TO_BE_TAKEN]),
                           Item.first_reaction_at.is_(None), Item.first_reaction_due < now))
        ).all()
    for item in not_taken:
        queued += await notify_staff_once(
            session, services, chairmen, item, f"not_taken:{item.id}:{item.first_reaction_due}",
            "sweep.not_taken", now, due=local_datetime(item.first_reaction_due, tz),
            block=org.block_by_id[item.block_id].title)
    late_appeals = (await session.scalars(
        select(Item).where(Item.kind == str(Kind.APPEAL), Item.registration_due.is_not(None),
                           Item.registered_at > Item.registration_due,
                           Item.created_at > now - timedelta(days=30)))).all()
    for item in late_appeals:
        queued += await notify_staff_once(
            session, services, chairmen, item, f"late_registration:{item.id}",
            "sweep.late_registration", now, due=local_datetime(item.registration_due, tz),
            registered=local_datetime(item.registered_at, tz))
    return queued
