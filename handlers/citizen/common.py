"""Pieces of the citizen dialog shared by its modules."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from handlers.events import Reply
from handlers.turn import Turn
from storage.models import Item


def main_menu(turn: Turn) -> list[list[str]]:
    t = turn.t
    return [[t("menu.report")], [t("menu.my_items"), t("menu.help")]]


def menu_reply(turn: Turn, key: str, **values: object) -> Reply:
    return Reply(turn.t(key, **values), menu=main_menu(turn))


async def own_item(turn: Turn, item_id: int | None) -> Item | None:
    """An item of this citizen, or None: a forged id never reveals somebody else's item."""
    if item_id is None or turn.account.citizen_id is None:
        return None
    return await turn.session.scalar(
        select(Item).options(selectinload(Item.attachments))
        .where(Item.id == item_id, Item.citizen_id == turn.account.citizen_id))
