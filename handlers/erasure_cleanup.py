"""After an erasure has committed: delete its files and the old page copies the database file
keeps; and, hourly, the attachment files that no row names (a crash between the commit and the
clean-up would otherwise leave a person's photo on disk)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from datetime import timedelta

from sqlalchemy import event as orm_event
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from handlers.context import Services
from handlers.files import orphans
from storage.db import scrub_freed_pages
from storage.models import Attachment

log = logging.getLogger(__name__)

# A file younger than this may belong to a turn still running (saved before its row commits).
ORPHAN_AGE = timedelta(hours=1)


async def clean_up(services: Services, paths: Iterable[str]) -> None:
    """Delete the erased files off the event loop (a disk can be slow), then have the
    database drop the page copies that still hold the erased values."""
    paths = list(paths)
    if paths:
        await asyncio.to_thread(lambda: [services.files.delete(path) for path in paths])
    await scrub_freed_pages(services.sessions.kw["bind"])


_pending: set[asyncio.Task[None]] = set()


def clean_up_after_commit(session: AsyncSession, services: Services, paths: list[str]) -> None:
    """For a caller that does not own the transaction (a chat turn): clean up once the session
    commits; on a rollback the rows are still there, and so are the files."""
    loop = asyncio.get_running_loop()
    rolled_back = False

    def on_commit(_session: object) -> None:
        if rolled_back:
            return
        task = loop.create_task(clean_up(services, paths))
        _pending.add(task)  # keep a reference until it is done
        task.add_done_callback(_pending.discard)

    def on_rollback(_session: object) -> None:
        nonlocal rolled_back
        rolled_back = True

    # Listeners cannot be removed while the session dispatches its events; the session of a
    # turn ends with its one transaction, and these go with it.
    orm_event.listen(session.sync_session, "after_commit", on_commit, once=True)
    orm_event.listen(session.sync_session, "after_rollback", on_rollback, once=True)


async def wait_for_clean_ups() -> None:
    """Until every clean-up started after a commit has finished (for an orderly shutdown and
    for tests)."""
    while _pending:
        await asyncio.gather(*list(_pending), return_exceptions=True)


async def remove_orphan_files(services: Services,
                              older_than: timedelta = ORPHAN_AGE) -> int:
    """Delete attachment files that no row names any more: the erasure deletes its files
    after the commit, so a crash in between would otherwise leave a person's photo on disk
    (and a turn that failed after saving a photo leaves one too). Returns how many.

    Ages are measured on the disk's own clock, not the job's `now`: `mcu jobs run --now` in
    the future must never reach a photo that a running turn has just saved."""
    async with services.readers() as session:  # a snapshot: no write lock
        known = set((await session.scalars(select(Attachment.path))).all())
    before = time.time() - older_than.total_seconds()
    stale = await asyncio.to_thread(orphans, services.files.root, known, before)
    if stale:
        await asyncio.to_thread(lambda: [services.files.delete(path) for path in stale])
        log.info("%d orphan attachment file(s) deleted", len(stale))
    return len(stale)
