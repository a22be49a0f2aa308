"""Per-user flood control, shared by every process through the database.

Fixed one-minute windows: a user may send `limit` messages in a window; past that, messages
are dropped before anything is downloaded, and the user is told once per window.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from storage import flood
from storage.db import autocommit

WINDOW = timedelta(minutes=1)


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    warn: bool = False  # refused, and the user has not been told yet in this window
    window_start: datetime | None = None


async def count_message(engine: AsyncEngine, user: tuple[str, str], now: datetime,
                        limit: int) -> Verdict:
    """One statement in its own transaction (no BEGIN, no COMMIT round trip): the count is
    committed at once, so the limit holds across processes."""
    platform, user_id = user
    async with autocommit(engine) as connection:
        count, warned, window_start = await flood.bump(connection, platform, user_id, now,
                                                       WINDOW)
    if count <= limit:
        return Verdict(allowed=True)
    return Verdict(allowed=False, warn=not warned, window_start=window_start)


async def claim_warning(session: AsyncSession, user: tuple[str, str], verdict: Verdict) -> bool:
    """Whether this refusal is the one that tells the user (once per window, whichever
    process gets there first)."""
    assert verdict.window_start is not None
    return await flood.claim_warning(session, *user, verdict.window_start)
