"""File import: validated rows become routed items, in batches, with one summary per head.

Idempotent by (channel, outside number): rows whose number is already in the database are
skipped, so importing the same export twice creates nothing. Each batch is one transaction
that takes a block of registration numbers, inserts citizens, items and their history, and
queues one summary message per head of each block concerned, instead of one card per item.
"""

from __future__ import annotations

import logging
from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import insert, inspect, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from handlers.analytics.clusters import normalise_address, track_and_alert
from handlers.context import Services
from handlers.events import Reply
from handlers.formatting import local_datetime
from handlers.i18n import translator
from handlers.items import NewItem, build_item, reserve_numbers
from handlers.operator.import_plan import ImportPlan, ImportRow
from handlers.outbox import enqueue
from handlers.rules.calendar import WorkCalendar
from handlers.rules.lifecycle import Action, Actor, Status, check
from handlers.staff.recipients import block_leader_ids, chat_of, group_chats, staff_accounts
from storage.models import Citizen, Item, ItemEvent

log = logging.getLogger(__name__)

BATCH_SIZE = 500
# Core tables, not the ORM's bulk INSERT: that one drops None values and so splits rows with
# different empty columns into separate statements, one row each in the worst case.
ITEMS, CITIZENS, EVENTS = Item.__table__, Citizen.__table__, ItemEvent.__table__
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
                items = await insert_items(session, services, calendar, channel, fresh,
                                           source, registered_by_id)
                await track_clusters(session, services, items)
                messages = await notify_heads(session, services, channel, items)
                return len(items), len(present), messages
        except IntegrityError:
            # An operator registered one of these numbers between the check and the insert;
            # the retry checks again and skips it.
            if attempt:
                raise
    raise AssertionError("unreachable")


async def insert_items(session: AsyncSession, services: Services, calendar: WorkCalendar,
                       channel: str, rows: list[ImportRow], source: str,
                       registered_by_id: int | None) -> list[Item]:
    """Multi-row INSERTs (one round trip per table) instead of the ORM's row-by-row flush.

    RETURNING rows come back in no guaranteed order, so they are matched by content: an item
    by its unique registration number, a citizen by all of its columns (two identical citizen
    rows are interchangeable).
    """
    if not rows:
        return []
    now = services.now()
    numbers = await reserve_numbers(session, services.local(now).year, len(rows))
    citizen_ids = await insert_citizens(session, rows, now)
    # Routing is the same as for one registration: by topic, straight after registering.
    routed = check(Action.ROUTE, Status.REGISTERED, Actor.SYSTEM)
    items = []
    for row, number in zip(rows, numbers, strict=True):
        item = build_item(services, NewItem(
            kind=row.kind, channel=channel, topic=row.topic, text=row.text,
            received_at=row.received_at, registered_at=now, citizen_id=citizen_ids.get(row.line),
            address=row.address, external_number=row.external, post_url=row.post_url,
            registered_by_id=registered_by_id, no_answer=row.no_answer,
            suggested_topic=row.suggested_topic, suggestion_score=row.suggestion_score),
            number, calendar)
        item.status = str(routed)
        item.place_key = normalise_address(row.address)  # what clusters compare
        items.append(item)
    rows = [values_of(item) for item in items]
    # rollup_rows: the statistics rollup (storage/rollups.py) adds these rows in the same
    # transaction; a Core INSERT into items without it is refused.
    returned = await session.execute(
        insert(ITEMS).returning(ITEMS.c.id, ITEMS.c.number, sort_by_parameter_order=False),
        rows, execution_options={"rollup_rows": rows})
    ids = {number: item_id for item_id, number in returned}
    for item in items:
        item.id = ids[item.number]
    actor = Actor.OPERATOR if registered_by_id else Actor.SYSTEM
    await session.execute(insert(EVENTS), [event for item in items for event in history(
        item, actor, now, source, registered_by_id)])
    return items


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


def values_of(item: Item) -> dict[str, object]:
    """The attributes build_item set, as an INSERT parameter set (unset ones get defaults)."""
    return {key: value for key, value in inspect(item).dict.items() if not key.startswith("_")}


def history(item: Item, actor: Actor, now: datetime, source: str,
            staff_id: int | None) -> tuple[dict[str, object], dict[str, object]]:
    """The same two entries as register_item writes: registered, then routed to the block."""
    return ({"item_id": item.id, "at": now, "actor": str(actor), "action": "register",
             "from_status": None, "to_status": str(Status.REGISTERED), "comment": source,
             "actor_staff_id": staff_id},
            {"item_id": item.id, "at": now, "actor": str(Actor.SYSTEM),
             "action": str(Action.ROUTE), "from_status": str(Status.REGISTERED),
             "to_status": item.status, "comment": item.block_id, "actor_staff_id": None})


async def track_clusters(session: AsyncSession, services: Services, items: list[Item]) -> None:
    """Imported items join the clusters of repeated problems like any registered item.

    Joining costs a few queries per item, so only the items that have a neighbour go through
    it. Imports carry no coordinates, so a neighbour shares the topic and the normalised
    address (set at insert) and was received within the cluster window: one query finds them
    for the whole batch. The press alert needs a chat turn (analytics.clusters.alert_press),
    so a cluster an import completes is counted in the statistics but not announced.
    """
    keys = sorted({item.place_key for item in items if item.place_key})
    seen: dict[tuple[str, str], list[datetime]] = defaultdict(list)
    for start in range(0, len(keys), LOOKUP_CHUNK):
        rows = await session.execute(
            select(Item.topic, Item.place_key, Item.received_at)
            .where(Item.place_key.in_(keys[start:start + LOOKUP_CHUNK])))
        for topic, key, received in rows.all():
            seen[(topic, key)].append(received)
    for moments in seen.values():
        moments.sort()
    window = timedelta(days=services.org.analytics.cluster_window_days)

    def has_neighbour(item: Item) -> bool:
        moments = seen.get((item.topic, item.place_key or ""), [])
        near = bisect_right(moments, item.received_at + window) - bisect_left(
            moments, item.received_at - window)
        return near > 1  # the item itself is among them

    wanted = [item.id for item in items if item.place_key and has_neighbour(item)]
    for start in range(0, len(wanted), LOOKUP_CHUNK):
        rows = await session.scalars(select(Item).where(
            Item.id.in_(wanted[start:start + LOOKUP_CHUNK])).order_by(Item.id))
        for item in rows.all():
            await track_and_alert(session, services, item)


async def notify_heads(session: AsyncSession, services: Services, channel: str,
                       items: list[Item]) -> int:
    """One message per head (and per bound block group) for the whole batch."""
    by_block: dict[str, list[Item]] = defaultdict(list)
    for item in items:
        by_block[item.block_id].append(item)
    now, tz, org = services.now(), services.tz, services.org
    queued = 0
    for block_id, block_items in by_block.items():
        dues = [item.answer_due for item in block_items if item.answer_due is not None]
        values = {"count": len(block_items), "block": org.block_by_id[block_id].title,
                  "due": local_datetime(min(dues) if dues else None, tz)}
        leaders = await block_leader_ids(session, org, block_id)
        for account in await staff_accounts(session, leaders):
            t = translator(account.locale)
            enqueue(session, chat_of(account),
                    Reply(t("import.summary", channel=t(f"channel.{channel}"), **values)),
                    audience="staff", now=now)
            queued += 1
        for chat in await group_chats(session, "block", block_id):
            t = translator(services.default_locale)
            enqueue(session, chat, Reply(t("import.summary", channel=t(f"channel.{channel}"),
                                           **values)), audience="group", now=now)
            queued += 1
    return queued
