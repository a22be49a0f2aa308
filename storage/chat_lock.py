"""One chat's turns, one at a time across processes.

Several `mcu serve` processes may receive two updates of one chat at once (Telegram spreads a
webhook's requests over the workers behind the proxy). At the start of the turn's transaction
the turn takes a PostgreSQL advisory transaction lock keyed by (platform, chat): the second
turn waits until the first has committed, then sees what it wrote; the processed-update
marks drop a repeat. The lock is released by the commit or rollback itself, so a crashed
process never leaves it held. SQLite runs one process and its write lock already serialises
every transaction: there this is a no-op.
"""

from __future__ import annotations

import hashlib

from sqlalchemy import BigInteger, bindparam, text
from sqlalchemy.ext.asyncio import AsyncSession

_LOCK = text("SELECT pg_advisory_xact_lock(:key)").bindparams(bindparam("key", type_=BigInteger))


def chat_lock_key(platform: str, chat_id: str) -> int:
    """A stable signed 64-bit key for (platform, chat); the same in every process."""
    digest = hashlib.blake2b(f"chat:{platform}:{chat_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


async def lock_chat(session: AsyncSession, platform: str, chat_id: str) -> None:
    """Wait for (and hold until the transaction ends) the chat's lock; no-op on SQLite."""
    if session.get_bind().dialect.name != "postgresql":
        return
    await session.execute(_LOCK, {"key": chat_lock_key(platform, chat_id)})
