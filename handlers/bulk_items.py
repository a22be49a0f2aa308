"""Registering many items at once: multi-row INSERTs instead of the ORM's row-by-row flush."""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import defaultdict
from datetime import datetime, timedelta

from sqlalchemy import insert, inspect, select
from sqlalchemy.ext.asyncio import AsyncSession

from handlers.analytics.clusters import normalise_address, track_and_alert
from handlers.context import Services
from handlers.items import NewItem, build_item, reserve_numbers
from handlers.rules.calendar import WorkCalendar
from handlers.rules.lifecycle import Action, Actor, Status, check
from storage.models import Item, ItemEvent

# Core tables, not the ORM's bulk INSERT: that one drops None values and so splits rows with
# different empty columns into separate statements, one row each in the worst case.
ITEMS, EVENTS = Item.__table__, ItemEvent.__table__
LOOKUP_CHUNK = 500  # values per IN (...)


async def insert_items(session: AsyncSession, services: Services, calendar: WorkCalendar,
                       news: list[NewItem], actor: Actor, source: str) -> list[Item]:
    """One round trip per table. RETURNING rows come back in no guaranteed order, so they are
    matched by the unique registration number."""
    if not news:
        return []
    now = services.now()
    numbers = await reserve_numbers(session, services.local(now).year, len(news))
    # Routing is the same as for one registration: by topic, straight after registering.
    routed = check(Action.ROUTE, Status.REGISTERED, Actor.SYSTEM)
    items = []
    for new, number in zip(news, numbers, strict=True):
        item = build_item(services, new, number, calendar)
        item.status = str(routed)
        item.place_key = normalise_address(new.address)  # what clusters compare
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
    await session.execute(insert(EVENTS), [event for item in items for event in history(
        item, actor, now, source, item.registered_by_id)])
    return items


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
    """Many new items join the clusters of repeated problems like any registered item.

    Joining costs a few queries per item, so only the items that have a neighbour go through
    it. Imports carry no coordinates, so a neighbour shares the topic and the normalised
    address (set at insert) and was received within the cluster window: one query finds them
    for the whole batch.
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
