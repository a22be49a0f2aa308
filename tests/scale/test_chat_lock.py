"""storage/chat_lock.py: one chat's turns wait for each other across connections (processes)
on PostgreSQL; another chat's do not; a no-op on SQLite."""

from __future__ import annotations

import asyncio

from sqlalchemy import text

from storage.chat_lock import chat_lock_key, lock_chat
from storage.db import create_engine, session_factory
from tests.drills.harness import eventually


def test_keys_are_stable_and_distinct() -> None:
    assert chat_lock_key("telegram", "42") == chat_lock_key("telegram", "42")
    assert chat_lock_key("telegram", "42") != chat_lock_key("vk", "42")
    assert -2**63 <= chat_lock_key("vk", "2000000001") < 2**63


async def test_a_chat_waits_for_its_own_turn_only(postgres_url: str) -> None:
    engine = create_engine(postgres_url)
    sessions = session_factory(engine)
    try:
        async with sessions() as first, first.begin():
            await lock_chat(first, "telegram", "42")
            async with sessions() as other, other.begin():
                await lock_chat(other, "telegram", "43")  # another chat: not held up

            async def second_turn() -> None:
                async with sessions() as second, second.begin():
                    await lock_chat(second, "telegram", "42")

            waiting = asyncio.create_task(second_turn())

            async def blocked() -> bool:
                async with sessions() as probe:
                    return bool(await probe.scalar(text(
                        "SELECT count(*) FROM pg_locks "
                        "WHERE locktype = 'advisory' AND NOT granted")))

            await eventually(blocked, 30, "the second turn waiting for the lock")
            assert not waiting.done()
        await asyncio.wait_for(waiting, 30)  # the commit released it
    finally:
        await engine.dispose()


async def test_sqlite_needs_no_lock(sqlite_url: str) -> None:
    engine = create_engine(sqlite_url)
    try:
        async with session_factory(engine)() as session, session.begin():
            await lock_chat(session, "telegram", "42")
            await lock_chat(session, "telegram", "42")
    finally:
        await engine.dispose()
