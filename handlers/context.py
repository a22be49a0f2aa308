"""Everything a use case needs, built once by the composition root (bot/bootstrap.py)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from handlers.capabilities import FALLBACK, Capabilities
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
    # What each messenger can show, by platform (bot/platforms.py describes them).
    capabilities: dict[str, Capabilities] = field(default_factory=dict)
    # Topic suggestions from free text (handlers/topics); None where nothing suggests.
    topics: TopicSuggester | None = None
    # Called after a commit that queued outbound messages, to wake the sender at once.
    on_outbox: Callable[[], None] = field(default=lambda: None)
    # Called after a turn's commit with the other chats it queued for (a head's card), to
    # serve exactly those at once; None: wake the sender (`on_outbox`).
    on_chats: Callable[[set[tuple[str, str]]], None] | None = None

    @cached_property
    def readers(self) -> async_sessionmaker[AsyncSession]:
        """Sessions for reading only (statistics, summaries): on SQLite they never take the
        write lock, so a year-long /stats does not hold up a citizen's message."""
        from storage.db import read_session_factory

        return read_session_factory(self.sessions.kw["bind"], tz=self.tz)

    def chats_queued(self, chats: set[tuple[str, str]]) -> None:
        """A commit queued messages for these (platform, chat id) chats."""
        if self.on_chats is not None:
            self.on_chats(chats)
        else:
            self.on_outbox()

    @cached_property
    def urgent(self) -> async_sessionmaker[AsyncSession]:
        """Sessions for the outbox's one-statement marks and claims: on SQLite they take the
        write lock before the turns waiting for it."""
        from storage.db import urgent_session_factory

        return urgent_session_factory(self.sessions.kw["bind"], tz=self.tz)

    @property
    def calendar(self) -> WorkCalendar:
        return self.org.work_calendar(self.tz)

    def capabilities_of(self, platform: str) -> Capabilities:
        return self.capabilities.get(platform, FALLBACK)

    def now(self) -> datetime:
        return self.clock.now()

    def local(self, moment: datetime) -> datetime:
        return moment.astimezone(self.tz)
