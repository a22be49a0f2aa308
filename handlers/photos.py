"""Photos that come with a message, kept as attachments of whatever the dialog is building
(a citizen's report, a comment, an operator's registration, a staff answer)."""

from __future__ import annotations

from sqlalchemy import select

from handlers.events import IncomingMessage
from handlers.limits import MAX_PHOTOS
from handlers.turn import Turn
from storage.models import Attachment


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


async def discard_unsent(turn: Turn, photo_ids: list[int]) -> None:
    """Attachments kept for something that will not be sent (a cancelled report, registration
    or answer): the rows go now, the files after the commit."""
    if not photo_ids:
        return
    rows = (await turn.session.scalars(select(Attachment).where(
        Attachment.id.in_(photo_ids), Attachment.item_id.is_(None)))).all()
    for row in rows:
        turn.delete_file_after_commit(row.path)
        await turn.session.delete(row)
