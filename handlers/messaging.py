"""Saying something to somebody outside the current turn: the one way the core queues a message.

Everything goes into the outbox inside the caller's transaction, so a message exists exactly
when the change it reports was committed; the sender delivers it after the commit. Staff hear
things in their own language: `tell` renders the message once per recipient's account.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from handlers.context import Services
from handlers.events import Button, ChatRef, OutgoingPhoto, Reply
from handlers.i18n import Translator, translator
from handlers.outbox import enqueue, enqueue_once
from handlers.recipients import StaffChat, chat_of, staff_accounts
from storage.models import Account, OutboxMessage

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


# ---------------------------------------------------------------------------------------------
# The bulk path of the sweeps: the same rows `tell(..., once_key=...)` queues, many at a time.

# A text-only Reply as stored: `Reply(text).to_json()` with the text left out.
_TEXT_ONLY = Reply("").to_json()


@dataclass(slots=True)
class Note:
    """One notification for several staff members: a text key and its values, rendered once
    per language (what `notice(key, **values)` renders per account)."""

    key: str
    values: dict[str, object]
    item_id: int | None = None
    _payloads: dict[str, dict[str, Any]] = field(default_factory=dict)

    def payload(self, t: Translator) -> dict[str, Any]:
        payload = self._payloads.get(t.locale)
        if payload is None:
            payload = self._payloads[t.locale] = {**_TEXT_ONLY, "text": t(self.key, **self.values)}
        return payload


@dataclass(slots=True)
class _Pending:
    key: str
    chat: StaffChat
    note: Note


class BulkOutbox:
    """Notifications of one sweep, each to a staff chat at most once (by its dedupe key).

    `tell_once` collects; every `batch` messages the keys are looked up in one query (a
    steady pass renders and inserts nothing), the new ones rendered and written in one
    `INSERT … ON CONFLICT (dedupe_key) DO NOTHING`: a concurrent sweep that queued the same
    key first wins, silently, with no SAVEPOINT per row. The rows are those `tell` writes:
    same payload, audience, moments, item and key (`once_key:platform:chat_id`, cut at 200).
    """

    def __init__(self, session: AsyncSession, services: Services, *, now: datetime,
                 not_before: datetime, audience: str = "staff", batch: int = 1000) -> None:
        self.session, self.services, self.audience = session, services, audience
        self.now, self.not_before, self.batch = now, not_before, batch
        self.queued = 0
        self._pending: list[_Pending] = []
        self._translators: dict[str | None, Translator] = {}
        self._insert = _insert_ignoring_duplicates(session)

    async def tell_once(self, chats: Iterable[StaffChat], note: Note, once_key: str) -> None:
        for chat in chats:
            key = f"{once_key}:{chat.platform}:{chat.chat_id}"[:200]
            self._pending.append(_Pending(key, chat, note))
        if len(self._pending) >= self.batch:
            await self._write()

    async def flush(self) -> int:
        """Write what is collected; returns every message queued by this outbox."""
        if self._pending:
            await self._write()
        return self.queued

    def _translator(self, locale: str | None) -> Translator:
        t = self._translators.get(locale)
        if t is None:
            t = self._translators[locale] = translator(locale or self.services.default_locale)
        return t

    async def _write(self) -> None:
        pending, self._pending = self._pending, []
        keys = list(dict.fromkeys(p.key for p in pending))
        queued_before = set((await self.session.scalars(
            select(OutboxMessage.dedupe_key).where(OutboxMessage.dedupe_key.in_(keys)))).all())
        rows: list[dict[str, Any]] = []
        for p in pending:
            if p.key in queued_before:
                continue
            queued_before.add(p.key)  # the same key twice in a batch: the first one
            rows.append({
                "platform": p.chat.platform, "chat_id": p.chat.chat_id,
                "audience": self.audience,
                "payload": p.note.payload(self._translator(p.chat.locale)),
                "status": "pending", "attempts": 0, "parts_sent": 0, "created_at": self.now,
                "not_before": self.not_before, "next_attempt_at": self.not_before,
                "item_id": p.note.item_id, "dedupe_key": p.key})
        if rows:
            result = await self.session.execute(self._insert, rows)
            self.queued += len(result.all())


def _insert_ignoring_duplicates(session: AsyncSession) -> Any:
    """`INSERT INTO outbox … ON CONFLICT (dedupe_key) DO NOTHING RETURNING id` in the
    session's dialect (SQLite and PostgreSQL both have it)."""
    table = OutboxMessage.__table__
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    return (dialect_insert(table).on_conflict_do_nothing(index_elements=["dedupe_key"])
            .returning(table.c.id))
