"""Per-user flood control, shared by every process through the database.

Fixed one-minute windows: a user may send `limit` messages in a window; past that, messages
are dropped before anything is downloaded, and the user is told once per window.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from storage import flood

WINDOW = timedelta(minutes=1)


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    warn: bool = False  # refused, and the user has not been told yet in this window


async def count_message(session: AsyncSession, user: tuple[str, str], now: datetime,
                        limit: int) -> Verdict:
    platform, user_id = user
    count, warned = await flood.bump(session, platform, user_id, now, WINDOW)
    if count <= limit:
        return Verdict(allowed=True)
    if warned:
        return Verdict(allowed=False)
    await flood.mark_warned(session, platform, user_id)
    return Verdict(allowed=False, warn=True)
