"""Fixtures of the drills: the fake servers and a drill world on a real SQLite file."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.drills.harness import VK_GROUP, VK_TOKEN, Drill
from tests.fakes.telegram_api import FakeTelegramServer
from tests.fakes.vk_api import FakeVKServer
from tests.test_chain_transports import chain  # noqa: F401  (the probes' transport fixture)

# How long the "Bot API down" windows last. The figure is 30 s; the default keeps the
# drills folder short. MCU_DRILL_OUTAGE_SECONDS=30 reproduces the issue exactly.
OUTAGE = float(os.environ.get("MCU_DRILL_OUTAGE_SECONDS", "8"))


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegramServer]:
    async with FakeTelegramServer() as server:
        yield server


@pytest.fixture
async def vk() -> AsyncIterator[FakeVKServer]:
    """A fake VK community; a drill that wants it sets `drill.vk = vk` before `drill.run()`."""
    async with FakeVKServer(group_id=VK_GROUP, token=VK_TOKEN) as server:
        yield server


@pytest.fixture
async def drill(tmp_path: Path, tg: FakeTelegramServer) -> AsyncIterator[Drill]:
    world = Drill(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'drill.sqlite3'}", tg=tg)
    await world.migrate()
    try:
        yield world
    finally:
        await world.close()
