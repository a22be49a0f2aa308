"""Saying something to somebody outside the current turn: the one way the core queues a message.

Everything goes into the outbox inside the caller's transaction, so a message exists exactly
when the change it reports was committed; the sender delivers it after the commit. Staff hear
things in their own language: `tell` renders the message once per recipient's account.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, DateTime, bindparam, select
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.types import TypeDecorator

from handlers.context import Services
from handlers.events import Button, ChatRef, OutgoingPhoto, Reply
from handlers.i18n import Translator, translator
from handlers.outbox import enqueue, enqueue_once
from handlers.recipients import StaffChat, chat_of, staff_accounts
from storage.models import Account, OutboxMessage
from storage.sqlfuncs import on_conflict_insert

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

# A text-only Reply as the payload column stores it, `json.dumps(Reply(text).to_json())`, cut
# around the text: the text is the only part to serialise per message.
_BEFORE_TEXT, _AFTER_TEXT = json.dumps(Reply("\0").to_json()).split('"\\u0000"')


@dataclass(slots=True)
class Note:
    """One notification for several staff members: a text key and its values, rendered once
    per language (what `notice(key, **values)` renders per account), as the JSON text the
    payload column stores (what the JSON type would write for it, serialised once)."""

    key: str
    values: dict[str, object]
    item_id: int | None = None
    _payloads: dict[str, str] = field(default_factory=dict)

    def payload(self, t: Translator) -> str:
        payload = self._payloads.get(t.locale)
        if payload is None:
            payload = self._payloads[t.locale] = (
                _BEFORE_TEXT + json.dumps(t(self.key, **self.values)) + _AFTER_TEXT)
        return payload


class BulkOutbox:
    """Notifications of one sweep, each to a staff chat at most once (by its dedupe key).

    `tell_once` collects; every `batch` messages the keys are looked up in one query (a
    steady pass renders and inserts nothing), the new ones rendered and written with
    `INSERT … ON CONFLICT (dedupe_key) DO NOTHING` (one statement per batch on PostgreSQL,
    the driver's executemany on SQLite): a concurrent sweep that queued the same key first
    wins, silently, with no SAVEPOINT per row. The rows are those `tell` writes:
    same payload, audience, moments, item and key (`once_key:platform:chat_id`, cut at 200).
    The moments, the same for every row, are converted for the database once, and each
    payload serialised once: a row costs no type conversion.
    """

    def __init__(self, session: AsyncSession, services: Services, *, now: datetime,
                 not_before: datetime, audience: str = "staff", batch: int = 1000) -> None:
        self.session, self.services, self.batch = session, services, batch
        self.queued = 0
        self._pending: list[tuple[str, StaffChat, Note]] = []
        self._translators: dict[str | None, Translator] = {}
        dialect = session.get_bind().dialect
        stored = _stored(dialect)
        self._constants = (audience, "pending", 0, 0, stored(now), stored(not_before),
                           stored(not_before))
        self._sqlite = dialect.name == "sqlite"
        self._insert = _insert_ignoring_duplicates(dialect.name)

    async def tell_once(self, chats: Iterable[StaffChat], note: Note, once_key: str) -> None:
        pending = self._pending
        for chat in chats:
            pending.append((f"{once_key}:{chat.platform}:{chat.chat_id}"[:200], chat, note))
        if len(pending) >= self.batch:
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
        keys = list(dict.fromkeys(key for key, _, _ in pending))
        queued_before = set((await self.session.execute(_QUEUED_BEFORE, {"keys": keys}))
                            .scalars().all())
        rows: list[tuple[Any, ...]] = []
        constants = self._constants
        for key, chat, note in pending:
            if key in queued_before:
                continue
            queued_before.add(key)  # the same key twice in a batch: the first one
            rows.append((*constants, chat.platform, chat.chat_id,
                         note.payload(self._translator(chat.locale)), note.item_id, key))
        if rows:
            self.queued += await self._insert_rows(rows)

    async def _insert_rows(self, rows: list[tuple[Any, ...]]) -> int:
        """Rows in the order of _COLUMNS; a key already queued is skipped by the insert
        itself. Returns how many were inserted."""
        if self._sqlite:
            return await _insert_sqlite(self.session, rows)
        result = await self.session.execute(
            self._insert, [dict(zip(_COLUMNS, row, strict=True)) for row in rows])
        return len(result.all())


# The keys of a batch queued before: Core, one expanding parameter (no per-key objects).
_QUEUED_BEFORE = (select(OutboxMessage.__table__.c.dedupe_key)
                  .where(OutboxMessage.__table__.c.dedupe_key.in_(
                      bindparam("keys", expanding=True))))
# The order of a row's values in BulkOutbox._write (the names of _insert's parameters).
_COLUMNS = ("audience", "status", "attempts", "parts_sent", "created", "not_before",
            "next_attempt", "platform", "chat_id", "payload_json", "item_id", "dedupe_key")
_SQLITE_INSERT = (
    "INSERT INTO outbox (audience, status, attempts, parts_sent, created_at, not_before, "
    "next_attempt_at, platform, chat_id, payload, item_id, dedupe_key) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (dedupe_key) DO NOTHING")


async def _insert_sqlite(session: AsyncSession, rows: list[tuple[Any, ...]]) -> int:
    """The rows through the driver's own executemany, in the session's transaction: SQLite
    runs it in C, several times faster than a statement per batch built in Python. Returns
    the rows inserted (SQLite counts the changes of the connection)."""
    connection = await (await session.connection()).get_raw_connection()
    driver = connection.driver_connection  # aiosqlite.Connection
    assert driver is not None
    before = driver.total_changes
    await driver.executemany(_SQLITE_INSERT, rows)
    return int(driver.total_changes - before)


class _StoredJSON(TypeDecorator[str]):
    """JSON text serialised beforehand: bound as is (PostgreSQL still sees a json value)."""

    impl = JSON
    cache_ok = True

    def bind_processor(self, dialect: Dialect) -> None:
        return None


class _StoredDateTime(TypeDecorator[Any]):
    """A moment already in the database's form (see `_stored`): bound as is."""

    impl = DateTime
    cache_ok = True

    def bind_processor(self, dialect: Dialect) -> None:
        return None


def _stored(dialect: Dialect) -> Callable[[datetime], Any]:
    """What the outbox's datetime columns store for a moment, in this dialect."""
    column = OutboxMessage.__table__.c.created_at.type
    process = column.dialect_impl(dialect).bind_processor(dialect)
    return process if process is not None else (lambda moment: moment)


@lru_cache(maxsize=4)
def _insert_ignoring_duplicates(dialect: str) -> Any:
    """`INSERT INTO outbox … ON CONFLICT (dedupe_key) DO NOTHING RETURNING id` in the
    dialect (SQLite and PostgreSQL both have it), for rows made by BulkOutbox._write."""
    table = OutboxMessage.__table__
    return (on_conflict_insert(dialect)(table)
            .values(payload=bindparam("payload_json", type_=_StoredJSON()),
                    created_at=bindparam("created", type_=_StoredDateTime()),
                    not_before=bindparam("not_before", type_=_StoredDateTime()),
                    next_attempt_at=bindparam("next_attempt", type_=_StoredDateTime()))
            .on_conflict_do_nothing(index_elements=["dedupe_key"])
            .returning(table.c.id))
