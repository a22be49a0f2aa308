"""What is due now for staff: reminders before deadlines and escalations after them.

Each sweep is idempotent: every notification carries a dedupe key (item, deadline, recipient),
so running it again, after downtime or from a second process, never sends anything twice.
Staff messages wait for working hours: nobody gets woken at 02:00.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from handlers.context import Services
from handlers.formatting import local_datetime
from handlers.messaging import notice, tell
from handlers.org import Role
from handlers.recipients import (
    assignee_ids,
    block_leader_ids,
    staff_ids_with_role,
)
from handlers.rules.deadlines import Kind
from handlers.rules.lifecycle import OPEN_STATES, WAITING_TO_BE_TAKEN
from storage.models import Item

OPEN = [str(s) for s in OPEN_STATES]


async def notify_staff_once(session: AsyncSession, services: Services, staff_ids: list[int],
                            item: Item, key: str, text_key: str, now: datetime,
                            **values: object) -> int:
    """One message per staff member and key, delivered within working hours."""
    return await tell(session, services, staff_ids,
                      notice(text_key, number=item.number, **values), item_id=item.id,
                      not_before=services.calendar.next_working_moment(now), once_key=key, now=now)


def _due_key(item: Item) -> str:
    assert item.answer_due is not None
    return item.answer_due.strftime("%Y%m%d%H%M")


async def send_reminders(session: AsyncSession, services: Services, now: datetime) -> int:
    """The assignee is reminded when one working day is left and on the morning of the due day."""
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
        # Only the latest reminder that is due: after downtime, one message, not two.
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
