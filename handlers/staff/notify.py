"""Task cards for staff: what a card shows to whom, and the card sent to several people."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from handlers.context import Services
from handlers.events import Button, Reply
from handlers.formatting import local_datetime
from handlers.i18n import Translator, translator
from handlers.messaging import queue, tell
from handlers.org import Role
from handlers.recipients import block_leader_ids, group_chats
from handlers.staff.buttons import card_buttons
from handlers.staff.cards import item_card
from handlers.staff.digest import digestible, entry_for
from storage.models import Account, Attachment, Citizen, Item, Staff

# Roles that may see a citizen's name and contacts (59-ФЗ art. 6: the chain of responsibility
# and the МЦУ leadership).
PERSONAL_DATA_ROLES = frozenset({Role.CURATOR, Role.CHAIRMAN, Role.IM_COORDINATOR, Role.HEAD,
                                 Role.EXECUTOR, Role.OPERATOR})
ButtonsFor = Callable[[Translator, Item, Staff | None], list[list[Button]]]


async def card_for(session: AsyncSession, services: Services, item: Item, account: Account,
                   staff: Staff | None, buttons_for: ButtonsFor | None = None,
                   lead: str | None = None) -> list[Reply]:
    attachments = list((await session.scalars(
        select(Attachment).where(Attachment.item_id == item.id,
                                 Attachment.purpose.in_(("report", "answer")))
        .order_by(Attachment.id))).all())  # answer photos: the head approves what they see
    citizen = (await session.get(Citizen, item.citizen_id)
               if item.citizen_id is not None else None)
    show = staff is not None and Role(staff.role) in PERSONAL_DATA_ROLES
    t = translator(account.locale)
    buttons = buttons_for(t, item, staff) if buttons_for is not None else None
    reply_account = (await session.get(Account, item.reply_account_id)
                     if item.reply_account_id is not None else None)
    blocked = reply_account is not None and reply_account.blocked_bot_at is not None
    return item_card(services, t, item, attachments, citizen, show_personal=show,
                     buttons=buttons, citizen_blocked=blocked, lead=lead)


async def send_card(session: AsyncSession, services: Services, item: Item,
                    staff_ids: list[int], *, lead_key: str | None = None,
                    buttons_for: ButtonsFor | None = None, digest: bool = False,
                    **values: object) -> int:
    """The item's card to each of these staff members, with the buttons they may use.
    With `digest`, cards due together in one chat may be merged into one digest."""

    async def render(t: Translator, account: Account) -> Sequence[Reply]:
        staff = await session.get(Staff, account.staff_id)
        lead = t(lead_key, **values) if lead_key else None
        card = await card_for(session, services, item, account, staff, buttons_for, lead)
        return digestible(card, entry_for(services, t, item)) if digest else card

    return await tell(session, services, staff_ids, render, item_id=item.id)


async def announce_new_item(session: AsyncSession, services: Services, item: Item) -> None:
    """The task card goes to the block's leaders and to the block's group chat."""
    leaders = await block_leader_ids(session, services.org, item.block_id)
    await send_card(session, services, item, leaders, lead_key="card.new_item",
                    buttons_for=card_buttons, digest=True)
    for chat in await group_chats(session, "block", item.block_id):
        t = translator(services.default_locale)
        card = item_card(services, t, item, [], None, show_personal=False,
                         lead=t("card.new_item"))
        for reply in digestible(card, entry_for(services, t, item, openable=False)):
            await queue(session, services, chat, reply, audience="group", item_id=item.id)


async def announce_batch(session: AsyncSession, services: Services, channel: str,
                         items: list[Item]) -> int:
    """Many new items (a file import): one summary per head and per bound block group, not a
    card per item. Returns the messages queued."""
    by_block: dict[str, list[Item]] = defaultdict(list)
    for item in items:
        by_block[item.block_id].append(item)
    queued = 0
    for block_id, block_items in by_block.items():
        dues = [item.answer_due for item in block_items if item.answer_due is not None]
        values = {"count": len(block_items), "block": services.org.block_by_id[block_id].title,
                  "due": local_datetime(min(dues) if dues else None, services.tz)}

        def summary(t: Translator, values: dict[str, object] = values) -> Reply:
            return Reply(t("import.summary", channel=t(f"channel.{channel}"), **values))

        async def render(t: Translator, account: Account,
                         summary: Callable[[Translator], Reply] = summary) -> Sequence[Reply]:
            return [summary(t)]

        leaders = await block_leader_ids(session, services.org, block_id)
        queued += await tell(session, services, leaders, render)
        for chat in await group_chats(session, "block", block_id):
            await queue(session, services, chat, summary(translator(services.default_locale)),
                        audience="group")
            queued += 1
    return queued
