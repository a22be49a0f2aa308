"""Queue outbound messages in the caller's transaction; the sender delivers them later."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from handlers.events import ChatRef, Reply
from storage.models import OutboxMessage

QUEUED_CHATS = "queued_chats"  # session.info key, see `enqueue`


def enqueue(
    session: AsyncSession,
    chat: ChatRef,
    reply: Reply,
    *,
    audience: str,
    now: datetime,
    item_id: int | None = None,
    not_before: datetime | None = None,
    dedupe_key: str | None = None,
) -> OutboxMessage:
    message = OutboxMessage(
        platform=str(chat.platform),
        chat_id=chat.chat_id,
        audience=audience,
        payload=reply.to_json(),
        status="pending",
        attempts=0,
        created_at=now,
        not_before=not_before or now,
        next_attempt_at=not_before or now,
        item_id=item_id,
        dedupe_key=dedupe_key,
    )
    session.add(message)
    # The chats this transaction queued for: read by the core after a turn (is anything
    # queued beyond the reply chat the channel delivers?) and by `mcu serve` after a commit.
    session.info.setdefault(QUEUED_CHATS, set()).add((message.platform, message.chat_id))
    return message


def queued_chats(session: AsyncSession) -> set[tuple[str, str]]:
    """(platform, chat_id) of every chat this session's transaction queued a message for."""
    chats: set[tuple[str, str]] = session.info.get(QUEUED_CHATS, set())
    return chats


async def enqueue_once(session: AsyncSession, chat: ChatRef, reply: Reply, *, key: str,
                       audience: str, now: datetime, item_id: int | None = None,
                       not_before: datetime | None = None) -> bool:
    """Queue unless a message with this key was queued before (by this or another process).

    The unique dedupe key is the mark that makes scheduler sweeps idempotent: a restart, a
    catch-up or a second scheduler process never queues the same notification twice.
    """
    try:
        async with session.begin_nested():
            enqueue(session, chat, reply, audience=audience, now=now, item_id=item_id,
                    not_before=not_before, dedupe_key=key[:200])
    except IntegrityError:
        return False
    return True


# ---------------------------------------------------------------------------------------------
# Retention: what a message said is kept only while it may still be delivered.

# Rows that will never be sent: their text is kept this long, for staff to see what failed.
FAILED_RETENTION = timedelta(days=7)
FINAL_FAILURES = ("failed", "undeliverable", "cancelled")


def redacted_payload(text: str = "", buttons: list[Any] | None = None) -> dict[str, Any]:
    """A payload with the content removed; still a valid Reply, marked so it is done once."""
    payload: dict[str, Any] = Reply(text).to_json()
    payload["buttons"] = buttons or []
    payload["redacted"] = True
    return payload


async def redact_stale_outbox(session: AsyncSession, now: datetime,
                              older_than: timedelta = FAILED_RETENTION) -> int:
    """Empty the payloads of rows that failed for good (failed, undeliverable, cancelled)
    more than `older_than` ago. Delivered rows are redacted by the sender as soon as every
    part is out. Returns how many rows were redacted now."""
    rows = (await session.execute(
        select(OutboxMessage.id, OutboxMessage.payload)
        .where(OutboxMessage.status.in_(FINAL_FAILURES),
               OutboxMessage.created_at < now - older_than))).all()
    ids = [row_id for row_id, payload in rows if not (payload or {}).get("redacted")]
    for start in range(0, len(ids), 500):
        await session.execute(update(OutboxMessage)
                              .where(OutboxMessage.id.in_(ids[start:start + 500]))
                              .values(payload=redacted_payload()))
    return len(ids)
