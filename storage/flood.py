"""The shared flood counter: one upsert per message, the same on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from sqlalchemy import bindparam, case, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from storage.models import FloodCounter, UTCDateTime
from storage.sqlfuncs import on_conflict_insert


async def bump(connection: AsyncConnection, platform: str, user_id: str, now: datetime,
               window: timedelta) -> tuple[int, bool, datetime]:
    """Count one message in the user's current window (a new window starts when the old one
    is over); returns the count, whether the user was already warned in this window, and the
    window's start. One statement: run it on an autocommit connection (storage.db.autocommit)
    and it is its own transaction."""
    statement = _bump_statement(connection.dialect.name)
    parameters = {"platform": platform, "user_id": user_id, "now": now,
                  "expired_before": now - window}
    count, warned, window_start = (await connection.execute(statement, parameters)).one()
    return int(count), bool(warned), window_start


@lru_cache(maxsize=2)
def _bump_statement(dialect: str) -> Any:
    """The upsert of `bump`, built once per dialect (building it each time cost more than
    running it); the values are bound at execution."""
    now = bindparam("now", type_=UTCDateTime())
    expired = FloodCounter.window_start <= bindparam("expired_before", type_=UTCDateTime())
    statement = on_conflict_insert(dialect)(FloodCounter).values(
        platform=bindparam("platform"), user_id=bindparam("user_id"), window_start=now,
        count=1, warned=False)
    return statement.on_conflict_do_update(
        index_elements=[FloodCounter.platform, FloodCounter.user_id],
        set_={
            "count": case((expired, 1), else_=FloodCounter.count + 1),
            "warned": case((expired, False), else_=FloodCounter.warned),
            "window_start": case((expired, now), else_=FloodCounter.window_start),
        },
    ).returning(FloodCounter.count, FloodCounter.warned, FloodCounter.window_start)


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
