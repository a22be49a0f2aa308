"""Everything a use case needs, built once by the composition root (bot/bootstrap.py)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from handlers.clock import Clock
from handlers.files import FileStore
from handlers.org import Organisation
from handlers.rules.calendar import WorkCalendar
from handlers.topics import TopicSuggester

PRIVACY_POLICY_VERSION = "2026-11-01"


@dataclass
class Services:
    sessions: async_sessionmaker[AsyncSession]
    org: Organisation
    clock: Clock
    files: FileStore
    tz: ZoneInfo
    default_locale: str = "ru"
    flood_limit_per_minute: int = 20
    bot_username: str | None = None
    # Topic suggestions from free text (handlers/topics); None where nothing suggests.
    topics: TopicSuggester | None = None
    # Called after a commit that queued outbound messages, to wake the sender at once.
    on_outbox: Callable[[], None] = field(default=lambda: None)

    @property
    def calendar(self) -> WorkCalendar:
        return self.org.work_calendar(self.tz)

    def now(self) -> datetime:
        return self.clock.now()

    def local(self, moment: datetime) -> datetime:
        return moment.astimezone(self.tz)
