"""Saying something to somebody outside the current turn: the one way the core queues a message.

Everything goes into the outbox inside the caller's transaction, so a message exists exactly
when the change it reports was committed; the sender delivers it after the commit. Staff hear
things in their own language: `tell` renders the message once per recipient's account.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import datetime
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession

from handlers.context import Services
from handlers.events import Button, ChatRef, OutgoingPhoto, Reply
from handlers.i18n import Translator, translator
from handlers.outbox import enqueue, enqueue_once
from handlers.recipients import chat_of, staff_accounts
from storage.models import Account

# What one recipient is sent, rendered in their language; the account says who they are.
Message = Callable[[Translator, Account], Awaitable[Sequence[Reply]]]


async def queue(session: AsyncSession, services: Services, chat: ChatRef, reply: Reply, *,
                audience: str, item_id: int | None = None, not_before: datetime | None = None,
                once_key: str | None = None, now: datetime | None = None) -> bool:
    """Queue one message. With `once_key`, a key queued before (by this or another process)
    makes it a no-op: that is what keeps the scheduler's sweeps idempotent. `now` is the
    sweep's moment when it runs "as if" at another time. Returns whether it was queued."""
    now = now or services.now()
    if once_key is None:
        enqueue(session, chat, reply, audience=audience, now=now, item_id=item_id,
                not_before=not_before)
        return True
    return await enqueue_once(session, chat, reply, key=once_key, audience=audience, now=now,
                              item_id=item_id, not_before=not_before)


def notice(key: str, *, title: str | None = None, photos: Sequence[Path] = (),
         buttons: Callable[[Translator], list[list[Button]]] | None = None,
         **values: object) -> Message:
    """The common message: one translated text, optionally a title, photos and buttons."""

    async def render(t: Translator, account: Account) -> Sequence[Reply]:
        return [Reply(t(key, **values), title=t(title) if title else None,
                      photos=[OutgoingPhoto(path) for path in photos],
                      buttons=buttons(t) if buttons else [])]

    return render


async def tell(session: AsyncSession, services: Services, recipients: Iterable[int],
               message: Message, *, item_id: int | None = None,
               not_before: datetime | None = None, once_key: str | None = None,
               now: datetime | None = None) -> int:
    """The message to each of these staff members (by staff id), in their own language.

    With `once_key`, each recipient's chat gets it at most once: the key is extended with the
    chat, so a new account of the same person is still told. Returns the messages queued.
    """
    queued = 0
    for account in await staff_accounts(session, recipients):
        t = translator(account.locale or services.default_locale)
        key = f"{once_key}:{account.platform}:{account.chat_id}" if once_key else None
        for reply in await message(t, account):
            if await queue(session, services, chat_of(account), reply, audience="staff",
                           item_id=item_id, not_before=not_before, once_key=key, now=now):
                queued += 1
    return queued
