"""SQLite's write lock within one process: writers queue on the event loop, and the outbox's
one-statement marks and claims go before the turns already waiting."""

from __future__ import annotations

import asyncio

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.db import create_engine, session_factory, urgent_session_factory


async def test_a_mark_goes_before_the_turns_that_wait(sqlite_url: str) -> None:
    engine = create_engine(sqlite_url)
    sessions, urgent = session_factory(engine), urgent_session_factory(engine)
    order: list[str] = []

    async def write(factory: async_sessionmaker[AsyncSession], name: str) -> None:
        async with factory() as session, session.begin():
            await session.execute(text("SELECT 1"))
            order.append(name)

    try:
        async with sessions() as holder, holder.begin():
            await holder.execute(text("SELECT 1"))  # holds the lock
            waiting = [asyncio.create_task(write(sessions, "turn 1")),
                       asyncio.create_task(write(sessions, "turn 2"))]
            await asyncio.sleep(0.3)  # both turns wait for the lock
            waiting.append(asyncio.create_task(write(urgent, "mark")))
            await asyncio.sleep(0.3)
            assert order == []
        await asyncio.gather(*waiting)
        # The turns reach the lock in whichever order their connections opened.
        assert order[0] == "mark" and sorted(order[1:]) == ["turn 1", "turn 2"]
    finally:
        await engine.dispose()


async def test_a_writer_that_gives_up_passes_the_lock_on(sqlite_url: str) -> None:
    engine = create_engine(sqlite_url, busy_timeout=0.2)
    sessions = session_factory(engine)
    try:
        async with sessions() as holder, holder.begin():
            await holder.execute(text("SELECT 1"))
            async with sessions() as late:
                try:
                    async with late.begin():
                        await late.execute(text("SELECT 1"))
                except Exception as error:  # "database is locked" after the busy timeout
                    assert "locked" in str(error)
                else:
                    raise AssertionError("the second writer did not wait")
            cancelled = asyncio.create_task(holder_free_write(sessions))
            await asyncio.sleep(0.05)
            cancelled.cancel()
            await asyncio.gather(cancelled, return_exceptions=True)
        # Nobody holds the lock any more: a writer gets it at once.
        async with sessions() as session, session.begin():
            assert (await session.execute(text("SELECT 1"))).scalar() == 1
    finally:
        await engine.dispose()


async def holder_free_write(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions() as session, session.begin():
        await session.execute(text("SELECT 1"))
