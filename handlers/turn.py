"""One turn of a conversation: the event, the account, its dialog, the open transaction."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from handlers.accounts import Dialog
from handlers.context import Services
from handlers.events import ButtonPress, Event, IncomingMessage, Reply
from handlers.i18n import Translator
from storage.models import Account


@dataclass
class Turn:
    session: AsyncSession
    services: Services
    event: Event
    account: Account
    dialog: Dialog
    t: Translator
    notice: str | None = None
    replies: list[Reply] = field(default_factory=list)
    # Files written during the turn are removed if it rolls back; deletions wait for the
    # commit, so a failed turn never loses a file that the database still points to.
    keep_out_of_outbox: bool = False  # only after an erasure: see citizen.privacy.forget
    saved_files: list[str] = field(default_factory=list)
    files_to_delete: list[str] = field(default_factory=list)

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

    def save_file(self, data: bytes, mime: str, filename: str | None = None) -> str:
        path = self.services.files.save(data, mime, self.now, filename)
        self.saved_files.append(path)
        return path

    def delete_file_after_commit(self, path: str) -> None:
        self.files_to_delete.append(path)

