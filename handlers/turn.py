"""One turn of a conversation: the event, the account, its dialog, the open transaction."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from handlers.accounts import Dialog
from handlers.context import Services
from handlers.events import ButtonPress, Event, IncomingMessage, Reply
from handlers.i18n import Translator
from handlers.prepare import Prepared
from storage.models import Account, Consent


@dataclass
class Turn:
    session: AsyncSession
    services: Services
    event: Event
    account: Account
    dialog: Dialog
    t: Translator
    consent: Consent | None = None  # the active consent, read with the account
    notice: str | None = None
    replies: list[Reply] = field(default_factory=list)
    keep_out_of_outbox: bool = False  # only after an erasure: see citizen.privacy.forget
    # Files written before the turn (handlers/prepare): the ones the turn keeps are listed in
    # `kept`; the core removes the others after the commit, and all of them after a rollback.
    # Deletions wait for the commit, so a failed turn never loses a file still referenced.
    prepared: Prepared = field(default_factory=Prepared)
    kept: set[str] = field(default_factory=set)
    files_to_delete: list[str] = field(default_factory=list)
    # Slow renders (charts, spreadsheets) run after the commit, off the event loop; their
    # replies are queued after this turn's, so the chat sees them in order.
    renders: list[Callable[[], Awaitable[list[Reply]]]] = field(default_factory=list)
    # The chats the turn queued messages for (handlers/outbox.queued_chats), set at its end.
    queued_chats: set[tuple[str, str]] = field(default_factory=set)

    @property
    def now(self) -> datetime:
        return self.services.now()

    @property
    def message(self) -> IncomingMessage | None:
        return self.event if isinstance(self.event, IncomingMessage) else None

    @property
    def press(self) -> ButtonPress | None:
        return self.event if isinstance(self.event, ButtonPress) else None

    def reply(self, reply: Reply) -> None:
        self.replies.append(reply)

    def say(self, key: str, **values: object) -> None:
        self.replies.append(Reply(self.t(key, **values)))

    def reply_later(self, render: Callable[[], Awaitable[list[Reply]]]) -> None:
        self.renders.append(render)

    def keep_prepared(self, path: str) -> None:
        self.kept.add(path)

    def delete_file_after_commit(self, path: str) -> None:
        self.files_to_delete.append(path)

