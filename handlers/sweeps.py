"""What is due now for staff: reminders before deadlines and escalations after them.

Each sweep is idempotent: every notification carries a dedupe key (item, deadline, recipient),
so running it again, after downtime or from a second process, never sends anything twice.
Staff messages wait for working hours: nobody gets woken at 02:00.

The sweeps are set-based, so that a backlog of 100,000 open items costs seconds: staff and
their accounts are read once per sweep (StaffDirectory), items are streamed with only the
columns a notification needs, and the messages are written in batches (BulkOutbox: one look-up
of the keys queued before, one `INSERT … ON CONFLICT DO NOTHING`). They queue exactly the rows
the per-item version did (tests/test_sweeps_setbased.py holds that version as the oracle).
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from handlers.context import Services
from handlers.formatting import local_datetime
from handlers.messaging import BulkOutbox, Note, notice, tell
from handlers.org import Role
from handlers.recipients import StaffDirectory
from handlers.rules.calendar import WorkCalendar
from handlers.rules.deadlines import Kind
from handlers.rules.lifecycle import OPEN_STATES, WAITING_TO_BE_TAKEN
from storage.models import Item

OPEN = [str(s) for s in OPEN_STATES]
# Rows fetched from the database at a time: memory stays flat in the number of items.
STREAM_BATCH = 2000
# Messages looked up and inserted at a time.
NOTIFY_BATCH = 2000
# Reminders look this far ahead at most.
REMINDER_HORIZON = timedelta(days=21)


async def notify_staff_once(session: AsyncSession, services: Services, staff_ids: list[int],
                            item: Item, key: str, text_key: str, now: datetime,
                            **values: object) -> int:
    """One message per staff member and key, delivered within working hours."""
    return await tell(session, services, staff_ids,
                      notice(text_key, number=item.number, **values), item_id=item.id,
                      not_before=services.calendar.next_working_moment(now), once_key=key, now=now)


def _due_key(due: datetime) -> str:
    return due.strftime("%Y%m%d%H%M")


async def _stream(session: AsyncSession, query: Select):  # type: ignore[no-untyped-def,type-arg]
    result = await session.stream(query.execution_options(yield_per=STREAM_BATCH))
    async for rows in result.partitions():
        for row in rows:
            yield row


def _reminder_due(services: Services, due_day: date, now: datetime) -> str | None:
    """Which reminder of an answer due on `due_day` (local) is due at `now`: only the latest,
    so that after downtime one message goes, not two; None when none is due yet."""
    calendar, settings = services.calendar, services.org.reminders
    moments: list[tuple[str, datetime]] = []
    if settings.before_working_days > 0:
        day = due_day
        for _ in range(settings.before_working_days):
            day = calendar.previous_working_day(day)
        moments.append((f"left{settings.before_working_days}", calendar.working_hours_start(day)))
    if settings.due_day_morning and calendar.is_working_day(due_day):
        moments.append(("dueday", calendar.working_hours_start(due_day)))
    due_now = [(name, moment) for name, moment in moments if moment <= now]
    if not due_now:
        return None
    return max(due_now, key=lambda pair: pair[1])[0]


async def send_reminders(session: AsyncSession, services: Services, now: datetime) -> int:
    """The assignee is reminded when one working day is left and on the morning of the due day."""
    calendar, tz = services.calendar, services.tz
    horizon = now + REMINDER_HORIZON
    # The decision depends on the local due day alone: made once per day of the horizon. The
    # days past the last one with a reminder due are not read at all.
    first_day, last_day = calendar.to_local(now).date(), calendar.to_local(horizon).date()
    plan = {first_day + timedelta(days=i): _reminder_due(services, first_day + timedelta(days=i),
                                                         now)
            for i in range((last_day - first_day).days + 1)}
    days_with_reminders = [day for day, name in plan.items() if name is not None]
    if not days_with_reminders:
        return 0
    until = min(horizon, _local_midnight(calendar, max(days_with_reminders) + timedelta(days=1))
                - timedelta(microseconds=1))
    directory = await StaffDirectory.load(session, services.org)
    outbox = BulkOutbox(session, services, now=now,
                        not_before=calendar.next_working_moment(now), batch=NOTIFY_BATCH)
    async for item_id, number, block_id, due, executor_id, taken_by_id in _stream(session, (
            select(Item.id, Item.number, Item.block_id, Item.answer_due, Item.executor_id,
                   Item.taken_by_id)
            .where(Item.status.in_(OPEN), Item.answer_due > now, Item.answer_due <= until)
            .order_by(Item.answer_due))):
        name = plan.get(calendar.to_local(due).date())
        if name is None:
            continue
        note = Note(f"sweep.reminder.{name.rstrip('0123456789')}",
                    {"number": number, "due": local_datetime(due, tz)}, item_id)
        await outbox.tell_once(directory.accounts(directory.assignees(executor_id, taken_by_id,
                                                                      block_id)),
                               note, f"remind:{name}:{item_id}:{_due_key(due)}")
    return await outbox.flush()


async def send_escalations(session: AsyncSession, services: Services, now: datetime) -> int:
    """Overdue: the block's leaders and the chairmen; long overdue: the curators too; not
    taken in time, and appeals registered late (59-ФЗ): the chairmen."""
    org, tz, calendar = services.org, services.tz, services.calendar
    directory = await StaffDirectory.load(session, org)
    chairmen = directory.accounts(directory.with_role(Role.CHAIRMAN))
    curators = directory.accounts(directory.with_role(Role.CURATOR))
    outbox = BulkOutbox(session, services, now=now,
                        not_before=calendar.next_working_moment(now), batch=NOTIFY_BATCH)
    today = calendar.to_local(now).date()
    long_after = org.escalation.curator_after_working_days
    titles = {block.id: block.title for block in org.blocks}
    overdue_to = {block_id: directory.accounts(dict.fromkeys(
        [*directory.block_leaders(block_id), *directory.with_role(Role.CHAIRMAN)]))
        for block_id in titles}
    last_due: datetime | None = None
    async for item_id, number, block_id, due in _stream(session, (
            select(Item.id, Item.number, Item.block_id, Item.answer_due)
            .where(Item.status.in_(OPEN), Item.answer_due < now).order_by(Item.answer_due))):
        if due != last_due:  # in deadline order: items share their deadline's figures
            last_due, shown, key = due, local_datetime(due, tz), _due_key(due)
            late = calendar.working_days_between(calendar.to_local(due).date(), today)
        values = {"number": number, "due": shown, "block": titles[block_id]}
        await outbox.tell_once(overdue_to[block_id], Note("sweep.overdue", values, item_id),
                               f"overdue:{item_id}:{key}")
        if late >= long_after:
            await outbox.tell_once(curators, Note("sweep.overdue_long", {**values, "days": late},
                                                  item_id),
                                   f"overdue_long:{item_id}:{key}")
    async for item_id, number, block_id, due in _stream(session, (
            select(Item.id, Item.number, Item.block_id, Item.first_reaction_due)
            .where(Item.status.in_([str(s) for s in WAITING_TO_BE_TAKEN]),
                   Item.first_reaction_at.is_(None), Item.first_reaction_due < now))):
        await outbox.tell_once(chairmen, Note("sweep.not_taken", {
            "number": number, "due": local_datetime(due, tz), "block": titles[block_id]},
            item_id), f"not_taken:{item_id}:{due}")
    async for item_id, number, due, registered in _stream(session, (
            select(Item.id, Item.number, Item.registration_due, Item.registered_at)
            .where(Item.kind == str(Kind.APPEAL), Item.registration_due.is_not(None),
                   Item.registered_at > Item.registration_due,
                   Item.created_at > now - timedelta(days=30)))):
        await outbox.tell_once(chairmen, Note("sweep.late_registration", {
            "number": number, "due": local_datetime(due, tz),
            "registered": local_datetime(registered, tz)}, item_id),
            f"late_registration:{item_id}")
    return await outbox.flush()


def _local_midnight(calendar: WorkCalendar, day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=calendar.tz)
