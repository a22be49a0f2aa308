"""Queue outbound messages in the caller's transaction; the sender delivers them later."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from handlers.events import ChatRef, Reply
from storage.models import OutboxMessage


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
    return message


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
