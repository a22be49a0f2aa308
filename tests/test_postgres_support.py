"""Self-test of tests/support/postgres.py against a real PostgreSQL server."""

from __future__ import annotations

import os
from datetime import datetime

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.support.postgres import PostgresServer, find_pg_bin


def test_find_pg_bin() -> None:
    for prog in ("initdb", "pg_ctl", "postgres"):
        path = find_pg_bin(prog)
        assert os.path.isabs(path)
        assert os.access(path, os.X_OK)
    with pytest.raises(RuntimeError, match="install"):
        find_pg_bin("definitely-not-a-pg-program")


async def test_version_and_two_databases(postgres_server: PostgresServer) -> None:
    assert postgres_server.url == (
        f"postgresql+asyncpg://mcu@127.0.0.1:{postgres_server.port}/postgres"
    )
    url_a = postgres_server.create_database("selftest_a")
    url_b = postgres_server.create_database("selftest_b")
    assert url_a.endswith("/selftest_a") and url_b.endswith("/selftest_b")

    engine_a = create_async_engine(url_a)
    engine_b = create_async_engine(url_b)
    try:
        async with engine_a.begin() as conn:
            version = (await conn.execute(text("SELECT version()"))).scalar_one()
            assert version.startswith("PostgreSQL ")
            assert (await conn.execute(text("SELECT current_database()"))).scalar_one() == (
                "selftest_a"
            )
            await conn.execute(text("CREATE TABLE only_in_a (id int)"))
        async with engine_b.connect() as conn:
            assert (await conn.execute(text("SELECT current_database()"))).scalar_one() == (
                "selftest_b"
            )
            found = await conn.execute(text("SELECT to_regclass('only_in_a')"))
            assert found.scalar_one() is None
    finally:
        await engine_a.dispose()
        await engine_b.dispose()


async def test_naive_datetime_roundtrip(postgres_url: str) -> None:
    engine = create_async_engine(postgres_url)
    stamp = datetime(2024, 3, 1, 12, 34, 56, 789012)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "CREATE TABLE events (id serial PRIMARY KEY, at timestamp NOT NULL, note text)"
                )
            )
            await conn.execute(
                text("INSERT INTO events (at, note) VALUES (:at, :note)"),
                {"at": stamp, "note": "привет"},
            )
        async with engine.connect() as conn:
            row = (await conn.execute(text("SELECT at, note FROM events"))).one()
        assert row.at == stamp
        assert row.at.tzinfo is None
        assert row.note == "привет"
    finally:
        await engine.dispose()


async def test_fresh_database_per_test(postgres_url: str) -> None:
    # The table created by the previous test must not exist here.
    engine = create_async_engine(postgres_url)
    try:
        async with engine.connect() as conn:
            found = await conn.execute(text("SELECT to_regclass('events')"))
            assert found.scalar_one() is None
    finally:
        await engine.dispose()


async def test_for_update_skip_locked(postgres_url: str) -> None:
    engine = create_async_engine(postgres_url, pool_size=2)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE jobs (id int PRIMARY KEY, state text)"))
            await conn.execute(text("INSERT INTO jobs VALUES (1, 'new'), (2, 'new'), (3, 'new')"))

        claim = text(
            "SELECT id FROM jobs WHERE state = 'new' ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED"
        )
        async with engine.connect() as first, engine.connect() as second:
            await first.begin()
            await second.begin()
            assert (await first.execute(claim)).scalar_one() == 1
            # Row 1 is locked by `first`: `second` must skip it instead of blocking.
            assert (await second.execute(claim)).scalar_one() == 2
            locked = await second.execute(
                text("SELECT id FROM jobs ORDER BY id FOR UPDATE SKIP LOCKED")
            )
            assert locked.scalars().all() == [2, 3]
            await first.rollback()
            await second.rollback()
    finally:
        await engine.dispose()


def test_context_manager_leaves_nothing_behind() -> None:
    with PostgresServer() as server:
        assert server.running
        assert server.startup_seconds is not None
        base_dir = server.base_dir
        assert base_dir is not None
        pid = int((server.data_dir / "postmaster.pid").read_text().splitlines()[0])
        url = server.create_database("ctx_db")
        assert url == f"postgresql+asyncpg://mcu@127.0.0.1:{server.port}/ctx_db"
    assert not server.running
    assert not base_dir.exists()
    # The postmaster was our (runuser's) child and has been reaped: no zombie left.
    assert not os.path.exists(f"/proc/{pid}")


async def test_halt_and_resume_keep_the_data_and_the_port() -> None:
    server = PostgresServer()
    server.start()
    try:
        url = server.create_database("halt_resume")
        port = server.port
        engine = create_async_engine(url)
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE kept (id int)"))
            await conn.execute(text("INSERT INTO kept VALUES (1)"))
        await engine.dispose()
        server.halt()  # a fast shutdown: committed data survives even without fsync
        assert not server.running
        server.resume()
        assert server.running and server.port == port
        engine = create_async_engine(url)
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT id FROM kept"))).scalar_one() == 1
        await engine.dispose()
    finally:
        server.stop()
