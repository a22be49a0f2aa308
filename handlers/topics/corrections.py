"""Labelled examples that real use produces, for retraining the suggester.

The strongest are a head's corrections: a head moved the item to another block and named its
topic (storage TopicCorrection). Weaker ones are the choices of citizens and operators who
picked a topic other than the one suggested: `with_choices` adds them. Anonymised items
(a citizen withdrew consent) have no text left and are skipped.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from handlers.erasure import ERASED_TEXT
from storage.models import Item, TopicCorrection


@dataclass(frozen=True)
class LabelledItem:
    number: str  # the item's readable number: the id column of the TSV
    topic: str  # the right topic
    text: str
    previous: str  # the topic it had, or the one suggested
    source: str  # "redirect" (a head's correction) or "choice" (suggestion not taken)


async def labelled_items(session: AsyncSession, *, with_choices: bool = False
                         ) -> list[LabelledItem]:
    rows = await session.execute(
        select(Item.number, TopicCorrection.to_topic, Item.text, TopicCorrection.from_topic)
        .join(Item, Item.id == TopicCorrection.item_id)
        .order_by(TopicCorrection.id))
    latest: dict[str, LabelledItem] = {}
    for number, topic, text, previous in rows.all():
        # A later correction of the same item wins; the first previous topic is kept.
        first = latest.get(number)
        latest[number] = LabelledItem(number, topic, text, first.previous if first else previous,
                                      "redirect")
    found = [row for row in latest.values() if row.topic != row.previous]
    if with_choices:
        choices = await session.execute(
            select(Item.number, Item.topic, Item.text, Item.suggested_topic)
            .where(Item.suggested_topic.is_not(None), Item.suggested_topic != Item.topic)
            .order_by(Item.id))
        found += [LabelledItem(number, topic, text, suggested or "", "choice")
                  for number, topic, text, suggested in choices.all() if number not in latest]
    return [row for row in found if row.text and row.text != ERASED_TEXT]
