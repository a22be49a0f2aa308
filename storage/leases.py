"""Named leases: one process at a time holds a role (polling a bot, leading the scheduler).

A lease is taken when it is free or expired, renewed by its holder, and taken over by another
process once its holder stops renewing it (crashed, frozen, cut off from the database).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, or_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.models import Lease


async def take(sessions: async_sessionmaker[AsyncSession], name: str, holder: str,
               now: datetime, ttl: timedelta) -> bool:
    """Take or renew the lease; True when `holder` has it until now + ttl."""
    async with sessions() as session, session.begin():
        result = await session.execute(
            update(Lease).where(Lease.name == name,
                                or_(Lease.holder == holder, Lease.expires_at < now))
            .values(holder=holder, expires_at=now + ttl))
        if result.rowcount:  # type: ignore[attr-defined]
            return True
    try:
        async with sessions() as session, session.begin():
            session.add(Lease(name=name, holder=holder, expires_at=now + ttl))
    except IntegrityError:
        return False  # somebody holds it
    return True


async def release(sessions: async_sessionmaker[AsyncSession], name: str, holder: str) -> None:
    async with sessions() as session, session.begin():
        await session.execute(delete(Lease).where(Lease.name == name, Lease.holder == holder))
