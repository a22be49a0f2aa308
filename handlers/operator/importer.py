"""File import: validated rows become routed items, in batches, with one summary per head.

Idempotent by (channel, outside number): rows whose number is already in the database are
skipped, so importing the same export twice creates nothing. Each batch is one transaction
that takes a block of registration numbers, inserts citizens, items and their history, and
queues one summary message per head of each block concerned, instead of one card per item.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from handlers.context import Services
from handlers.items import NewItem
from handlers.operator.import_plan import ImportPlan, ImportRow
from handlers.registration import register_batch
from handlers.rules.calendar import WorkCalendar
from handlers.rules.lifecycle import Actor
from storage.models import Citizen, Item

log = logging.getLogger(__name__)

BATCH_SIZE = 500
# Core tables, not the ORM's bulk INSERT: that one drops None values and so splits rows with
# different empty columns into separate statements, one row each in the worst case.
CITIZENS = Citizen.__table__
LOOKUP_CHUNK = 500  # numbers per IN (...) when looking for those already registered


@dataclass
class ImportResult:
    created: int = 0
    already_present: int = 0
    messages: int = 0  # summary messages queued for heads and block groups


async def existing_numbers(session: AsyncSession, channel: str,
                           numbers: Iterable[str]) -> set[str]:
    wanted = list(numbers)
    found: set[str] = set()
    for start in range(0, len(wanted), LOOKUP_CHUNK):
        chunk = wanted[start:start + LOOKUP_CHUNK]
        found.update((await session.scalars(select(Item.external_number).where(
            Item.channel == channel, Item.external_number.in_(chunk)))).all())
    return found


async def count_present(sessions: async_sessionmaker[AsyncSession], plan: ImportPlan) -> int:
    """For a dry run: how many valid rows are already in the database (read only)."""
    async with sessions() as session:
        return len(await existing_numbers(session, plan.channel,
                                          [row.external for row in plan.rows]))


async def run_import(services: Services, plan: ImportPlan, *, source: str,
                     registered_by_id: int | None = None,
                     progress: Callable[[int], None] | None = None,
                     batch_size: int = BATCH_SIZE) -> ImportResult:
    result = ImportResult()
    calendar = services.calendar  # one for the whole file: it memoizes each year's holidays
    for start in range(0, len(plan.rows), batch_size):
        batch = plan.rows[start:start + batch_size]
        created, present, messages = await import_batch(services, calendar, plan.channel, batch,
                                                        source, registered_by_id)
        result.created += created
        result.already_present += present
        result.messages += messages
        if progress is not None:
            progress(len(batch))
    if result.messages:
        services.on_outbox()
    log.debug("import %s: %d created, %d already present", plan.channel, result.created,
             result.already_present)
    return result


async def import_batch(services: Services, calendar: WorkCalendar, channel: str,
                       batch: list[ImportRow], source: str,
                       registered_by_id: int | None) -> tuple[int, int, int]:
    """One transaction; returns (created, already present, summary messages)."""
    for attempt in range(2):
        try:
            async with services.sessions() as session, session.begin():
                present = await existing_numbers(session, channel, [r.external for r in batch])
                fresh = [row for row in batch if row.external not in present]
                citizen_ids = await insert_citizens(session, fresh, services.now())
                news = new_items(channel, fresh, citizen_ids, services.now(), registered_by_id)
                actor = Actor.OPERATOR if registered_by_id else Actor.SYSTEM
                items, messages = await register_batch(session, services, channel, news, actor,
                                                       source=source, calendar=calendar)
                return len(items), len(present), messages
        except IntegrityError:
            # An operator registered one of these numbers between the check and the insert;
            # the retry checks again and skips it.
            if attempt:
                raise
    raise AssertionError("unreachable")


def new_items(channel: str, rows: list[ImportRow], citizen_ids: dict[int, int],
              registered_at: datetime, registered_by_id: int | None) -> list[NewItem]:
    return [NewItem(
        kind=row.kind, channel=channel, topic=row.topic, text=row.text,
        received_at=row.received_at, registered_at=registered_at,
        citizen_id=citizen_ids.get(row.line), address=row.address, external_number=row.external,
        post_url=row.post_url, registered_by_id=registered_by_id, no_answer=row.no_answer,
        suggested_topic=row.suggested_topic, suggestion_score=row.suggestion_score)
        for row in rows]


PERSONAL = ("name", "phone", "email", "postal_address")


async def insert_citizens(session: AsyncSession, rows: list[ImportRow],
                          now: datetime) -> dict[int, int]:
    """Citizen rows of the rows that have personal data; row line → citizen id."""
    wanted = [row for row in rows if row.has_personal_data]
    if not wanted:
        return {}
    returned = await session.execute(
        insert(CITIZENS).returning(CITIZENS.c.id, *(CITIZENS.c[f] for f in PERSONAL),
                                   sort_by_parameter_order=False),
        [{**{f: getattr(row, f) for f in PERSONAL}, "created_at": now} for row in wanted])
    free: dict[tuple[str | None, ...], list[int]] = defaultdict(list)
    for citizen_id, *personal in returned:
        free[tuple(personal)].append(citizen_id)
    return {row.line: free[tuple(getattr(row, f) for f in PERSONAL)].pop() for row in wanted}
