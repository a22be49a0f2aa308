"""The shared flood counter: one upsert per message, the same on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import case, literal, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from storage.models import FloodCounter, UTCDateTime


async def bump(connection: AsyncConnection, platform: str, user_id: str, now: datetime,
               window: timedelta) -> tuple[int, bool, datetime]:
    """Count one message in the user's current window (a new window starts when the old one
    is over); returns the count, whether the user was already warned in this window, and the
    window's start. One statement: run it on an autocommit connection (storage.db.autocommit)
    and it is its own transaction."""
    insert = postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert
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
    ).returning(FloodCounter.count, FloodCounter.warned, FloodCounter.window_start)
    count, warned, window_start = (await connection.execute(statement)).one()
    return int(count), bool(warned), window_start


async def claim_warning(session: AsyncSession, platform: str, user_id: str,
                        window_start: datetime) -> bool:
    """Mark the window as warned; False when it already was (another process, a retry) or
    a new window began meanwhile. Runs in the transaction that queues the warning, so the
    warning and its mark are committed together."""
    result = await session.execute(update(FloodCounter).where(
        FloodCounter.platform == platform, FloodCounter.user_id == user_id,
        FloodCounter.window_start == window_start,
        FloodCounter.warned.is_(False)).values(warned=True))
    return bool(result.rowcount)  # type: ignore[attr-defined]
