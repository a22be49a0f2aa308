"""What a turn needs from outside the database, done before its transaction opens.

On SQLite the write lock is global: a download or a disk write inside the turn's transaction
would stop every other chat, the sender and the sweeps. So the photos that came with a message
(the transport has already downloaded them) are written to disk in a thread, and a document
that the turn will keep (a staff answer's file, up to 20 MB) is downloaded and written, all
before `begin()`. The turn then only records the paths. Files the turn did not use are removed
after the commit; after a rollback all of them are.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from handlers.context import Services
from handlers.events import Event, IncomingDocument, IncomingMessage
from handlers.files import FileStore

log = logging.getLogger(__name__)

DOCUMENT_MAX_BYTES = 20 * 1024 * 1024


@dataclass(frozen=True)
class SavedDocument:
    path: str
    size: int
    filename: str
    mime: str


@dataclass
class Prepared:
    photo_paths: list[str] = field(default_factory=list)  # in the order of message.photos
    document: SavedDocument | None = None
    document_problem: str | None = None  # a text key: too large, download failed

    def paths(self) -> list[str]:
        return [*self.photo_paths, *([self.document.path] if self.document else [])]


# Does this event's document belong to the turn (read in a short read-only session)?
DocumentWanted = Callable[[AsyncSession, IncomingMessage], Awaitable[bool]]


async def prepare(services: Services, event: Event, wants_document: DocumentWanted) -> Prepared:
    prepared = Prepared()
    message = event if isinstance(event, IncomingMessage) else None
    if message is None or not message.is_private:
        return prepared  # group chats: only staff commands, nothing is kept
    now = services.now()
    if message.photos:
        prepared.photo_paths = await asyncio.to_thread(
            _save_all, services.files, [(p.data, p.mime) for p in message.photos], now)
    if message.document is not None:
        async with services.readers() as session:
            wanted = await wants_document(session, message)
        if wanted:
            try:
                prepared.document = await fetch_document(services, message.document, now)
            except DocumentRefused as refusal:
                prepared.document_problem = refusal.key
    return prepared


class DocumentRefused(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


async def fetch_document(services: Services, document: IncomingDocument,
                         now: datetime) -> SavedDocument:
    if document.size is not None and document.size > DOCUMENT_MAX_BYTES:
        raise DocumentRefused("staff.document_too_large")  # never downloaded
    try:
        data = await document.fetch()
    except Exception as error:  # the transport's download failed: say so, keep the dialog
        log.warning("document download failed: %s", type(error).__name__)
        raise DocumentRefused("staff.document_failed") from error
    if not data:
        raise DocumentRefused("staff.document_failed")
    if len(data) > DOCUMENT_MAX_BYTES:
        raise DocumentRefused("staff.document_too_large")
    path = await asyncio.to_thread(services.files.save, data, document.mime, now,
                                   document.filename)
    return SavedDocument(path, len(data), document.filename, document.mime)


def _save_all(files: FileStore, photos: list[tuple[bytes, str]], now: datetime) -> list[str]:
    return [files.save(data, mime, now) for data, mime in photos]
