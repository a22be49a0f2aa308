"""The one-hop SQLite adapter (storage/sqlite_hops.py) keeps the driver's semantics: rows,
row counts, rollbacks, streamed reads, and writers of one process queue without errors."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from sqlalchemy import func, select, text, update

from storage.db import create_engine, session_factory
from storage.migrate import upgrade_async
from storage.models import ProcessedUpdate
from storage.sqlite_hops import OneHopConnection

WHEN = datetime(2026, 11, 24, tzinfo=UTC)


async def test_statements_rollbacks_and_streams(sqlite_url):
    await upgrade_async(sqlite_url)
    engine = create_engine(sqlite_url)
    sessions = session_factory(engine)
    try:
        async with sessions() as session, session.begin():
            connection = await session.connection()
            raw = await connection.get_raw_connection()
            assert type(raw.dbapi_connection) is OneHopConnection
            session.add_all([ProcessedUpdate(platform="t", update_key=str(i), processed_at=WHEN)
                             for i in range(5)])
        async with sessions() as session, session.begin():
            changed = await session.execute(update(ProcessedUpdate)
                                            .where(ProcessedUpdate.update_key.in_(["1", "2"]))
                                            .values(processed_at=WHEN))
            assert changed.rowcount == 2  # type: ignore[attr-defined]
            streamed = await session.stream_scalars(select(ProcessedUpdate.update_key)
                                                    .order_by(ProcessedUpdate.update_key))
            assert [key async for key in streamed] == ["0", "1", "2", "3", "4"]
        async with sessions() as session, session.begin():
            session.add(ProcessedUpdate(platform="t", update_key="gone", processed_at=WHEN))
            await session.flush()
            await session.rollback()
        async with sessions() as session:
            assert await session.scalar(select(func.count()).select_from(ProcessedUpdate)) == 5
            assert await session.scalar(text("SELECT 1")) == 1
    finally:
        await engine.dispose()


async def test_writers_of_one_process_queue_instead_of_failing(sqlite_url):
    """Twenty write transactions at once, each holding the lock a while: they take turns."""
    await upgrade_async(sqlite_url)
    engine = create_engine(sqlite_url, busy_timeout=5)
    sessions = session_factory(engine)

    async def write(n: int) -> None:
        async with sessions() as session, session.begin():
            session.add(ProcessedUpdate(platform="t", update_key=f"w{n}", processed_at=WHEN))
            await session.flush()
            await asyncio.sleep(0.01)

    try:
        await asyncio.gather(*(write(n) for n in range(20)))
        async with sessions() as session:
            assert await session.scalar(select(func.count()).select_from(ProcessedUpdate)) == 20
    finally:
        await engine.dispose()
