"""Shared fixtures: a real SQLite file (migrated), the real core, an explicit clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bot.settings import DEFAULT_ORG_FILE
from handlers.clock import ManualClock
from handlers.context import Services
from handlers.core import Core
from handlers.files import FileStore
from handlers.org import load_organisation
from storage.db import create_engine, session_factory
from storage.migrate import upgrade_async
from tests.support.chat import ChatClient

pytest_plugins = ["tests.support.pg_plugin"]

SAKHALIN = ZoneInfo("Asia/Sakhalin")
# A Tuesday morning in Okha: a working day, inside working hours.
DEFAULT_START = datetime(2026, 11, 24, 10, 0, tzinfo=SAKHALIN)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(DEFAULT_START)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, sqlite_url: str) -> str:
    if request.param == "sqlite":
        return sqlite_url
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'mcu.sqlite3'}"


async def make_services(url: str, data_dir: Path, clock: ManualClock) -> Services:
    await upgrade_async(url)
    engine = create_engine(url)
    return Services(
        sessions=session_factory(engine, tz=SAKHALIN),
        org=load_organisation(DEFAULT_ORG_FILE),
        clock=clock,
        files=FileStore(data_dir),
        tz=SAKHALIN,
    )


@pytest.fixture
async def services(sqlite_url: str, tmp_path: Path, clock: ManualClock) -> AsyncIterator[Services]:
    services = await make_services(sqlite_url, tmp_path / "data", clock)
    yield services
    await services.sessions.kw["bind"].dispose()


@pytest.fixture
def core(services: Services) -> Core:
    return Core(services)


@pytest.fixture
def citizen(core: Core) -> ChatClient:
    return ChatClient(core, user_id="501", platform="telegram", name="Анна Петрова")
