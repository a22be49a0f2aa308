"""Notifications to staff, queued in the outbox inside the caller's transaction."""

from __future__ import annotations

from sqlalchemy import select

from handlers.events import OutgoingPhoto, Reply
from handlers.i18n import translator
from handlers.org import Role
from handlers.staff.buttons import card_buttons
from handlers.staff.cards import item_card
from handlers.staff.recipients import (
    block_leader_ids,
    chat_of,
    group_chats,
    staff_accounts,
)
from handlers.turn import Turn
from storage.models import Account, Attachment, Citizen, Item, Staff

# Roles that may see a citizen's name and contacts (59-ФЗ art. 6: the chain of responsibility
# and the МЦУ leadership).
PERSONAL_DATA_ROLES = frozenset({Role.CURATOR, Role.CHAIRMAN, Role.IM_COORDINATOR, Role.HEAD,
                                 Role.EXECUTOR, Role.OPERATOR})


async def card_for(turn: Turn, item: Item, account: Account, staff: Staff | None,
                   buttons_for: object = None, lead: str | None = None) -> list[Reply]:
    attachments = list((await turn.session.scalars(
        select(Attachment).where(Attachment.item_id == item.id,
                                 Attachment.purpose.in_(("report", "answer")))
        .order_by(Attachment.id))).all())  # answer photos: the head approves what they see
    citizen = (await turn.session.get(Citizen, item.citizen_id)
               if item.citizen_id is not None else None)
    show = staff is not None and Role(staff.role) in PERSONAL_DATA_ROLES
    t = translator(account.locale)
    buttons = buttons_for(t, item, staff) if callable(buttons_for) else None
    reply_account = (await turn.session.get(Account, item.reply_account_id)
                     if item.reply_account_id is not None else None)
    blocked = reply_account is not None and reply_account.blocked_bot_at is not None
    return item_card(turn.services, t, item, attachments, citizen, show_personal=show,
                     buttons=buttons, citizen_blocked=blocked, lead=lead)


async def send_card(turn: Turn, item: Item, staff_ids: list[int], *, lead_key: str | None = None,
                    buttons_for: object = None, **values: object) -> None:
    for account in await staff_accounts(turn.session, staff_ids):
        staff = await turn.session.get(Staff, account.staff_id)
        lead = translator(account.locale)(lead_key, **values) if lead_key else None
        for reply in await card_for(turn, item, account, staff, buttons_for, lead):
            turn.send(chat_of(account), reply, audience="staff", item_id=item.id)


async def notify_new_item(turn: Turn, item: Item) -> None:
    """The task card goes to the block's leaders and to the block's group chat."""
    leaders = await block_leader_ids(turn.session, turn.services.org, item.block_id)
    await send_card(turn, item, leaders, lead_key="card.new_item", buttons_for=card_buttons)
    for chat in await group_chats(turn.session, "block", item.block_id):
        t = translator(turn.services.default_locale)
        for reply in item_card(turn.services, t, item, [], None, show_personal=False,
                               lead=t("card.new_item")):
            turn.send(chat, reply, audience="group", item_id=item.id)


async def tell_staff(turn: Turn, staff_ids: list[int], key: str, item: Item | None = None,
                     *, photos: list[Attachment] | None = None, **values: object) -> None:
    """A short text to each of these staff members, in their own language."""
    for account in await staff_accounts(turn.session, staff_ids):
        t = translator(account.locale)
        reply = Reply(t(key, **values))
        if photos:
            reply.photos = [OutgoingPhoto(turn.services.files.path(p.path)) for p in photos]
        turn.send(chat_of(account), reply, audience="staff",
                  item_id=item.id if item is not None else None)
