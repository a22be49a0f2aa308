"""Messages the core sends to a citizen on its own initiative (staff actions, the scheduler).

They are rendered by the transport of the item's channel: the account the citizen wrote from.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from handlers.accounts import IDLE, Dialog
from handlers.citizen.payloads import AnswerQuestion
from handlers.citizen.states import ItemState
from handlers.context import Services
from handlers.events import Button, ChatRef, OutgoingDocument, OutgoingPhoto, Platform, Reply
from handlers.i18n import Translator, translator
from handlers.messaging import queue
from storage.models import Account, Attachment, Item


async def citizen_chat(session: AsyncSession, item: Item) -> tuple[ChatRef, Translator] | None:
    """Where the citizen of this item can be reached, or None (outside channel, withdrawn
    consent, blocked bot)."""
    if item.reply_account_id is None:
        return None
    account = await session.get(Account, item.reply_account_id)
    if account is None or account.blocked_bot_at is not None:
        return None
    return ChatRef(Platform(account.platform), account.chat_id), translator(account.locale)


async def _queue(session: AsyncSession, services: Services, chat: ChatRef, reply: Reply,
                 item: Item) -> None:
    # The caller's commit wakes the sender (Core does it after every turn).
    await queue(session, services, chat, reply, audience="citizen", item_id=item.id)


async def ask_citizen(session: AsyncSession, services: Services, item: Item,
                      question: str) -> bool:
    """The question goes to the citizen; their next message becomes the clarification."""
    target = await citizen_chat(session, item)
    if target is None:
        return False
    chat, t = target
    reply = Reply(t("clarify.question", number=item.number, question=question),
                  title=t("clarify.question.title", number=item.number),
                  buttons=[[Button(t("button.answer_question"),
                                   AnswerQuestion(item.id).pack())]])
    await _queue(session, services, chat, reply, item)
    # An idle citizen's next message becomes the clarification; one in the middle of another
    # dialog keeps it and answers with the button.
    dialog = await Dialog.load(session, item.reply_account_id, services.now())
    if dialog.state == IDLE:
        dialog.set(ItemState.CLARIFY, {"item_id": item.id}, now=services.now())
    return True


async def deliver_answer(session: AsyncSession, services: Services, item: Item,
                         photos: list[Attachment] | None = None, *,
                         to_item: Item | None = None) -> bool:
    """The answer of `item` goes to the citizen of `to_item` (itself, or a duplicate of it)."""
    recipient = to_item or item
    target = await citizen_chat(session, recipient)
    if target is None:
        return False
    chat, t = target
    reply = Reply(t("answer.to_citizen", number=recipient.number, answer=item.answer_text or ""),
                  title=t("answer.to_citizen.title", number=recipient.number),
                  photos=[OutgoingPhoto(services.files.path(p.path)) for p in photos or []
                          if p.kind == "photo"])
    await _queue(session, services, chat, reply, recipient)
    for document in (p for p in photos or [] if p.kind == "document"):
        await _queue(session, services, chat, Reply("", document=OutgoingDocument(
            services.files.path(document.path), document.filename or "document")), recipient)
    return True


async def notify_citizen(session: AsyncSession, services: Services, item: Item, key: str,
                         **values: object) -> bool:
    """A plain notice about the item (an extension, a forwarding, a redirect)."""
    target = await citizen_chat(session, item)
    if target is None:
        return False
    chat, t = target
    await _queue(session, services, chat, Reply(t(key, number=item.number, **values)), item)
    return True
