"""The shared flood counter: one upsert per message, the same on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import case, literal, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import FloodCounter, UTCDateTime


async def bump(session: AsyncSession, platform: str, user_id: str, now: datetime,
               window: timedelta) -> tuple[int, bool]:
    """Count one message in the user's current window (a new window starts when the old one
    is over); returns the count and whether the user was already warned in this window."""
    dialect = session.bind.dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    expired = FloodCounter.window_start <= literal(now - window, UTCDateTime())
    statement = insert(FloodCounter).values(
        platform=platform, user_id=user_id, window_start=now, count=1, warned=False)
    statement = statement.on_conflict_do_update(
        index_elements=[FloodCounter.platform, FloodCounter.user_id],
        set_={
            "count": case((expired, 1), else_=FloodCounter.count + 1),
            "warned": case((expired, False), else_=FloodCounter.warned),
            "window_start": case((expired, literal(now, UTCDateTime())),
                                 else_=FloodCounter.window_start),
        },
    ).returning(FloodCounter.count, FloodCounter.warned)
    count, warned = (await session.execute(statement)).one()
    return int(count), bool(warned)


async def mark_warned(session: AsyncSession, platform: str, user_id: str) -> None:
    await session.execute(update(FloodCounter).where(
        FloodCounter.platform == platform, FloodCounter.user_id == user_id).values(warned=True))
