"""Registering items: the use case behind the citizen's report, `/register` and file imports.

Whoever registers (a citizen in a chat, an operator, an import, a future API), the same steps
follow in the caller's transaction: the number and deadlines, routing to the block, the task
cards for the block's leaders, and the clusters of repeated problems. Nothing here needs a
chat turn.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from handlers.analytics.clusters import track_and_alert
from handlers.bulk_items import insert_items, track_clusters
from handlers.context import Services
from handlers.items import NewItem, register_item
from handlers.rules.calendar import WorkCalendar
from handlers.rules.lifecycle import Actor
from handlers.staff.notify import announce_batch, announce_new_item
from storage.models import Item


async def register(session: AsyncSession, services: Services, new: NewItem,
                   actor: Actor) -> Item:
    """One item: registered, routed, its card queued for the block, joined to its cluster."""
    item = await register_item(session, services, new, actor)
    await announce_new_item(session, services, item)
    await track_and_alert(session, services, item)
    return item


async def register_batch(session: AsyncSession, services: Services, channel: str,
                         news: list[NewItem], actor: Actor, *, source: str,
                         calendar: WorkCalendar | None = None) -> tuple[list[Item], int]:
    """Many items of one channel (a file import): the same steps, but one summary per head
    instead of a card per item. Returns the items and the number of summaries queued."""
    items = await insert_items(session, services, calendar or services.calendar, news, actor,
                               source)
    await track_clusters(session, services, items)
    return items, await announce_batch(session, services, channel, items)
