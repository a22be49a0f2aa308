"""The set-based sweeps queue exactly the rows the per-item sweeps queued.

tests/support/sweeps_reference.py is the per-item version as it was (one item at a time
through the ORM, recipients per item, a SAVEPOINT per message). On a seeded set that covers
every rule (reminders one working day before and on the due day, over weekends and the 4
November holiday; overdue to block leaders and chairmen, long overdue to curators, not taken
to chairmen, late registration of appeals to chairmen; blocks with heads, without one, with a
revoked one, the chairman's own block; executors, revoked executors, taken items; staff with
two accounts and other languages; closed items that must be skipped), at several moments, the
reference runs first and is rolled back, then the new sweep runs and is committed: the new
rows must equal the reference's, and a second pass at the same moment queues nothing. On
SQLite and PostgreSQL, with small batches so that streaming and batching are crossed.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Text, cast, func, select
from sqlalchemy.ext.asyncio import AsyncSession

import handlers.sweeps as sweeps
from handlers.clock import ManualClock
from handlers.context import Services
from handlers.rules.calendar import WorkCalendar, _russia
from storage.models import Account, Item, OutboxMessage, Staff
from tests.conftest import SAKHALIN, make_services
from tests.support import sweeps_reference as reference

Sweep = Callable[[AsyncSession, Services, datetime], Awaitable[int]]
COLUMNS = ("platform", "chat_id", "audience", "payload", "status", "attempts", "created_at",
           "not_before", "next_attempt_at", "claimed_until", "sent_at", "last_error",
           "item_id", "dedupe_key", "parts_sent")


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=SAKHALIN)


@pytest.fixture
async def services(db_url: str, tmp_path: Path) -> AsyncIterator[Services]:
    services = await make_services(db_url, tmp_path / "data", ManualClock(at(2026, 10, 20, 10)))
    yield services
    await services.sessions.kw["bind"].dispose()


async def seed(services: Services) -> None:
    """Staff in every situation and ~200 items around the November holidays of 2026."""
    created = at(2026, 10, 1, 10)
    async with services.sessions() as session, session.begin():
        def staff(role: str, block: str | None = None, *, revoked: bool = False) -> Staff:
            row = Staff(role=role, block_id=block, name=f"{role} {block}", created_at=created,
                        revoked_at=created if revoked else None)
            session.add(row)
            return row

        chairman, chairman2 = staff("chairman"), staff("chairman")
        curator = staff("curator")
        housing_head, housing_head2 = staff("head", "housing"), staff("head", "housing")
        staff("head", "education", revoked=True)  # education falls back to the chairmen
        staff("head", "architecture")  # a head with no account: nobody hears
        executor = staff("executor", "housing")
        gone = staff("executor", "culture_sport", revoked=True)  # still assigned to items
        staff("press")
        staff("chairman", revoked=True)
        await session.flush()
        accounts = [(chairman, "telegram", "ru"), (chairman, "vk", "en"),
                    (chairman2, "telegram", None), (curator, "telegram", "en"),
                    (housing_head, "telegram", "ru"), (housing_head2, "vk", None),
                    (executor, "telegram", "en"), (gone, "vk", "ru")]
        for n, (person, platform, locale) in enumerate(accounts, start=1):
            session.add(Account(platform=platform, user_id=str(9000 + n),
                                chat_id=str(9000 + n), locale=locale, staff_id=person.id,
                                created_at=created))
        rng = random.Random(12)
        blocks = ["housing", "mcu", "culture_sport", "education", "architecture", "property"]
        topics = {"housing": "roads", "mcu": "other", "culture_sport": "culture",
                  "education": "education", "architecture": "construction",
                  "property": "land"}
        open_states = ["assigned", "in_progress", "waiting_citizen", "redirected", "extended",
                       "on_approval", "rework", "reopened", "registered"]
        done_states = ["closed", "answered", "rejected", "duplicate", "forwarded"]
        number = 0

        def item(**fields: Any) -> None:
            nonlocal number
            number += 1
            block = fields.pop("block_id", rng.choice(blocks))
            values: dict[str, Any] = dict(
                number=f"2026-{number:06d}", kind="message", channel="telegram",
                status="in_progress", topic=topics[block], block_id=block, text="Текст",
                received_at=created, registered_at=created, created_at=created,
                updated_at=created, extension_count=0, reopened_count=0, no_answer=False)
            values.update(fields)
            session.add(Item(**values))

        # Answer deadlines from 20 October to 20 November, at the end of a local day, in the
        # evening, and just after a local midnight (the previous day in UTC).
        day = date(2026, 10, 20)
        while day <= date(2026, 11, 20):
            for hour, minute, second in ((23, 59, 59), (17, 30, 0), (0, 30, 0)):
                due = datetime(day.year, day.month, day.day, hour, minute, second,
                               tzinfo=SAKHALIN)
                assignment = rng.choice([{}, {"executor_id": executor.id},
                                         {"executor_id": gone.id},
                                         {"taken_by_id": housing_head2.id},
                                         {"taken_by_id": curator.id, "executor_id": None}])
                item(answer_due=due, status=rng.choice(open_states), **assignment)
                if rng.random() < 0.3:
                    item(answer_due=due, status=rng.choice(done_states), closed_at=due,
                         **assignment)
            day += timedelta(days=1)
        for block in blocks:  # every block has overdue and due-soon items
            item(block_id=block, answer_due=at(2026, 11, 5, 23, 59, 59), status="assigned")
            item(block_id=block, answer_due=at(2026, 10, 26, 23, 59, 59), status="reopened")
        # Not taken: waiting (assigned, redirected) with no first reaction, and others.
        for hours in range(0, 24 * 14, 7):
            due = at(2026, 10, 30, 9) + timedelta(hours=hours)
            item(status=rng.choice(["assigned", "redirected", "in_progress", "closed"]),
                 first_reaction_due=due, answer_due=due + timedelta(days=30),
                 first_reaction_at=due if rng.random() < 0.2 else None)
        # Appeals registered late (and in time), in the last 30 days and before.
        for days in range(0, 50, 2):
            received = at(2026, 9, 25, 15) + timedelta(days=days)
            registered = received + timedelta(days=rng.choice([1, 2, 4, 5, 9]))
            item(kind="appeal", channel="letter", received_at=received,
                 registered_at=registered, created_at=registered,
                 registration_due=received + timedelta(days=3),
                 status=rng.choice(["assigned", "closed", "in_progress"]),
                 answer_due=registered + timedelta(days=30))


async def rows_after(session: AsyncSession, last_id: int) -> list[tuple[Any, ...]]:
    table = OutboxMessage.__table__
    # The payload as the stored JSON text, byte for byte, not parsed.
    result = await session.execute(select(*(cast(table.c[name], Text)
                                            if name == "payload" else table.c[name]
                                            for name in COLUMNS))
                                   .where(table.c.id > last_id))
    return sorted(tuple(row) for row in result.all())


async def run(services: Services, sweep: Sweep, now: datetime, *,
              keep: bool) -> tuple[int, list[tuple[Any, ...]]]:
    async with services.sessions() as session:
        transaction = await session.begin()
        last_id = await session.scalar(select(func.coalesce(func.max(OutboxMessage.id), 0)))
        queued = await sweep(session, services, now)
        rows = await rows_after(session, last_id or 0)
        await (transaction.commit() if keep else transaction.rollback())
    return queued, rows


MOMENTS = [
    at(2026, 10, 30, 8, 0),  # Friday before working hours
    at(2026, 10, 30, 9, 0),  # Friday 09:00: reminders for Monday's deadlines
    at(2026, 11, 3, 10, 0),  # Tuesday before the 4 November holiday: Thursday's too
    at(2026, 11, 4, 12, 0),  # the holiday itself
    at(2026, 11, 7, 3, 0),  # Saturday night: held until Monday 09:00
    at(2026, 11, 9, 9, 30),
    at(2026, 11, 13, 18, 30),  # Friday evening
    at(2026, 11, 20, 11, 0),
]


async def test_set_based_sweeps_queue_what_the_per_item_sweeps_queued(services, monkeypatch):
    monkeypatch.setattr(sweeps, "STREAM_BATCH", 7)
    monkeypatch.setattr(sweeps, "NOTIFY_BATCH", 5)
    await seed(services)
    pairs: list[tuple[str, Sweep, Sweep]] = [
        ("reminders", reference.send_reminders, sweeps.send_reminders),
        ("escalations", reference.send_escalations, sweeps.send_escalations)]
    seen: dict[str, int] = {}
    for now in MOMENTS:
        for name, old, new in pairs:
            expected_count, expected = await run(services, old, now, keep=False)
            count, rows = await run(services, new, now, keep=True)
            assert rows == expected, (name, now)
            assert count == expected_count == len(rows), (name, now)
            # A second pass at the same moment, and its reference, queue nothing new.
            assert await run(services, old, now, keep=False) == (0, [])
            assert await run(services, new, now, keep=True) == (0, [])
            for row in rows:
                kind = row[COLUMNS.index("dedupe_key")].split(":")[0]
                if kind == "remind":
                    kind += ":" + row[COLUMNS.index("dedupe_key")].split(":")[1]
                seen[kind] = seen.get(kind, 0) + 1
    # The seeded set did exercise every rule, in both languages.
    assert set(seen) == {"remind:left1", "remind:dueday", "overdue", "overdue_long",
                         "not_taken", "late_registration"}, seen
    assert min(seen.values()) >= 5, seen
    async with services.sessions() as session:
        texts = [payload["text"] for payload in (await session.scalars(
            select(OutboxMessage.payload))).all()]
    assert any("Overdue" in text or "overdue" in text for text in texts)
    assert any("Просроч" in text for text in texts)


@pytest.mark.parametrize("extra", [
    {},
    {"extra_holidays": frozenset({date(2026, 12, 28), date(2027, 1, 11)}),
     "extra_workdays": frozenset({date(2026, 12, 26), date(2027, 2, 21)})},
    {"workdays": frozenset({0, 1, 2, 3, 4, 5})},
])
def test_calendar_tables_agree_with_counting_day_by_day(extra):
    calendar = WorkCalendar(SAKHALIN, **extra)
    workdays = calendar.workdays

    def working(d: date) -> bool:
        if d in calendar.extra_holidays:
            return False
        if d in calendar.extra_workdays:
            return True
        data = _russia(d.year)
        if d in data.days_off:
            return False
        return d.weekday() in workdays or d in data.weekend_workdays

    rng = random.Random(3)
    first = date(2024, 1, 1)
    for offset in range(0, 5 * 366):
        d = first + timedelta(days=offset)
        assert calendar.is_working_day(d) == working(d), d
    for _ in range(300):
        start = first + timedelta(days=rng.randrange(5 * 366))
        end = start + timedelta(days=rng.randrange(-20, 800))
        count, d = 0, start
        while d < end:
            d += timedelta(days=1)
            count += working(d)
        assert calendar.working_days_between(start, end) == count, (start, end)
        previous = start - timedelta(days=1)
        while not working(previous):
            previous -= timedelta(days=1)
        assert calendar.previous_working_day(start) == previous
    # Equal calendars share their tables: a new instance per access costs no rebuild.
    assert WorkCalendar(SAKHALIN, **extra)._days is calendar._days


async def test_a_key_queued_between_look_up_and_insert_is_skipped_by_the_insert(services):
    """Two sweeps at once: the other one's row lands after this batch looked its keys up.
    The insert itself (ON CONFLICT DO NOTHING) skips it and the count says so."""
    from handlers.messaging import BulkOutbox, Note
    from handlers.recipients import StaffChat

    now = at(2026, 11, 24, 10)
    chats = [StaffChat(1, 1, "telegram", "5001", "ru"), StaffChat(2, 2, "vk", "5002", "en")]
    async with services.sessions() as session, session.begin():
        first = BulkOutbox(session, services, now=now, not_before=now)
        await first.tell_once(chats, Note("sweep.overdue", {"number": "1", "due": "—",
                                                              "block": "—"}), "race:1")
        assert await first.flush() == 2
    async with services.sessions() as session, session.begin():
        second = BulkOutbox(session, services, now=now, not_before=now)
        rows = [(*second._constants, "telegram", "5001", "{}", None, "race:1:telegram:5001"),
                (*second._constants, "telegram", "5003", "{}", None, "race:1:telegram:5003")]
        assert await second._insert_rows(rows) == 1
    async with services.sessions() as session:
        keys = (await session.scalars(select(OutboxMessage.dedupe_key)
                                      .order_by(OutboxMessage.id))).all()
    assert keys == ["race:1:telegram:5001", "race:1:vk:5002", "race:1:telegram:5003"]
