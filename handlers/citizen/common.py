"""Pieces of the citizen dialog shared by its modules."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from handlers.events import IncomingMessage, Reply
from handlers.turn import Turn
from storage.models import Attachment, Item

TEXT_MIN, TEXT_MAX = 10, 4000
MAX_PHOTOS = 5


def main_menu(turn: Turn) -> list[list[str]]:
    t = turn.t
    return [[t("menu.report")], [t("menu.my_items"), t("menu.help")]]


def menu_reply(turn: Turn, key: str, **values: object) -> Reply:
    return Reply(turn.t(key, **values), menu=main_menu(turn))


async def store_photos(turn: Turn, message: IncomingMessage) -> int:
    """Keep up to MAX_PHOTOS photos; returns how many were refused over the limit."""
    photos: list[int] = list(turn.dialog.data.get("photos", []))
    refused = 0
    # Written to disk before the turn's transaction (handlers/prepare), in this order.
    for photo, path in zip(message.photos, turn.prepared.photo_paths, strict=True):
        if len(photos) >= MAX_PHOTOS:
            refused += 1
            continue
        turn.keep_prepared(path)
        attachment = Attachment(
            purpose="report", kind="photo", path=path, mime=photo.mime, size=len(photo.data),
            width=photo.width, height=photo.height, source_platform=str(turn.account.platform),
            source_file_id=photo.source_id, created_at=turn.now)
        turn.session.add(attachment)
        await turn.session.flush()
        photos.append(attachment.id)
    turn.dialog.update(turn.now, photos=photos)
    return refused



async def own_item(turn: Turn, item_id: int | None) -> Item | None:
    """An item of this citizen, or None: a forged id never reveals somebody else's item."""
    if item_id is None or turn.account.citizen_id is None:
        return None
    return await turn.session.scalar(
        select(Item).options(selectinload(Item.attachments))
        .where(Item.id == item_id, Item.citizen_id == turn.account.citizen_id))
