"""What a citizen sends about an existing item: a clarification or a comment."""

from __future__ import annotations

from sqlalchemy import select

from handlers.citizen.common import main_menu, own_item
from handlers.events import IncomingMessage, Reply
from handlers.items import record_note, transition
from handlers.limits import TEXT_MAX
from handlers.messaging import notice, tell
from handlers.photos import store_photos
from handlers.recipients import assignee_ids
from handlers.rules.lifecycle import OPEN_STATES, Action, Actor, Status
from handlers.turn import Turn
from storage.models import Attachment, Item, ItemEvent


async def _attach(turn: Turn, message: IncomingMessage, item_id: int,
                  purpose: str) -> list[Attachment]:
    if not message.photos:
        return []
    turn.dialog.update(turn.now, photos=[])
    await store_photos(turn, message)
    ids = turn.dialog.data.get("photos", [])
    attachments = list((await turn.session.scalars(
        select(Attachment).where(Attachment.id.in_(ids)))).all())
    for attachment in attachments:
        attachment.item_id = item_id
        attachment.purpose = purpose
    return attachments


def _content_ok(turn: Turn, message: IncomingMessage) -> bool:
    text = (message.text or "").strip()
    if not text and not message.photos:
        turn.say("item.comment.need_content")
        return False
    if len(text) > TEXT_MAX:
        turn.say("report.text_too_long", max=TEXT_MAX, length=len(text))
        return False
    return True


async def apply_clarification(turn: Turn, message: IncomingMessage) -> None:
    item = await own_item(turn, turn.dialog.data.get("item_id"))
    if item is None or item.status != Status.WAITING_CITIZEN:
        turn.dialog.reset(turn.now)
        turn.reply(Reply(turn.t("clarify.not_needed"), menu=main_menu(turn)))
        return
    if not _content_ok(turn, message):
        return
    text = (message.text or "").strip()
    photos = await _attach(turn, message, item.id, "clarification")
    asked = await turn.session.scalar(
        select(ItemEvent).where(ItemEvent.item_id == item.id,
                                ItemEvent.action == str(Action.ASK_CITIZEN))
        .order_by(ItemEvent.id.desc()).limit(1))
    await transition(turn.session, turn.services, item, Action.CITIZEN_REPLIED, Actor.CITIZEN,
                     account_id=turn.account.id, comment=text or None)
    # The reply goes back to whoever asked, or to the assignee when the asker left.
    targets = [asked.actor_staff_id] if asked and asked.actor_staff_id else []
    targets = targets or await assignee_ids(turn.session, turn.services.org, item)
    await pass_on(turn, item, targets, "staff.clarification_received", text, photos,
                  thanks="clarify.thanks")


async def apply_comment(turn: Turn, message: IncomingMessage) -> None:
    item = await own_item(turn, turn.dialog.data.get("item_id"))
    if item is None or item.status not in OPEN_STATES:
        turn.dialog.reset(turn.now)
        turn.reply(Reply(turn.t("item.comment.closed"), menu=main_menu(turn)))
        return
    if not _content_ok(turn, message):
        return
    text = (message.text or "").strip()
    photos = await _attach(turn, message, item.id, "comment")
    await record_note(turn.session, turn.services, item, "citizen_comment", Actor.CITIZEN,
                      comment=text or None, account_id=turn.account.id)
    targets = await assignee_ids(turn.session, turn.services.org, item)
    await pass_on(turn, item, targets, "staff.comment_received", text, photos,
                  thanks="item.comment.sent")


async def pass_on(turn: Turn, item: Item, staff_ids: list[int], key: str, text: str,
                  photos: list[Attachment], *, thanks: str) -> None:
    """What the citizen wrote goes to these staff members; the citizen is thanked."""
    paths = [turn.services.files.path(photo.path) for photo in photos]
    await tell(turn.session, turn.services, staff_ids, notice(
        key, photos=paths, number=item.number, text=text or "—"), item_id=item.id)
    turn.dialog.reset(turn.now)
    turn.reply(Reply(turn.t(thanks, number=item.number), menu=main_menu(turn)))
