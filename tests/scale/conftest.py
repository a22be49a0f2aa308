"""Fixtures of the scale-out tests: the fake messengers and a world of real processes on a
real PostgreSQL (the session's server) or a SQLite file."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.drills import conftest as drills
from tests.fakes.telegram_api import FakeTelegramServer
from tests.scale.serve_harness import ScaleWorld

# The drills' fake messengers serve the scale-out tests too.
tg = drills.tg
vk = drills.vk


@pytest.fixture
async def world(tmp_path: Path, tg: FakeTelegramServer,
                postgres_url: str) -> AsyncIterator[ScaleWorld]:
    """Processes on one PostgreSQL database (created for this test)."""
    scale = ScaleWorld(tmp_path, postgres_url, tg=tg)
    await scale.migrate()
    try:
        yield scale
    finally:
        await scale.close()


@pytest.fixture
async def sqlite_world(tmp_path: Path, tg: FakeTelegramServer) -> AsyncIterator[ScaleWorld]:
    scale = ScaleWorld(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'scale.sqlite3'}", tg=tg)
    await scale.migrate()
    try:
        yield scale
    finally:
        await scale.close()
