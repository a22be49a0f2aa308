"""Hold a named lease while a role runs (e.g. the one process that polls a bot)."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta

from handlers.context import Services
from storage import leases

log = logging.getLogger(__name__)

TTL = timedelta(seconds=30)
RENEW_EVERY = 10.0


def process_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


async def run_while_holding(services: Services, name: str, role: Callable[[], Awaitable[None]],
                            *, holder: str | None = None, ttl: timedelta = TTL,
                            renew_every: float = RENEW_EVERY) -> None:
    """Wait for the lease, run `role` while renewing it, and stop the role if the lease is
    lost. Runs until cancelled; a standby process simply waits here."""
    holder = holder or process_identity()
    announced = False
    try:
        while True:
            if not await _take(services, name, holder, ttl):
                if not announced:  # said once, not every few seconds
                    log.warning("%s is held by another process; standing by", name)
                    announced = True
                await asyncio.sleep(renew_every)
                continue
            log.info("%s taken by this process", name)
            task = asyncio.create_task(role(), name=name)
            loop = asyncio.get_running_loop()
            renewed = loop.time()
            try:
                while not task.done():
                    done, _ = await asyncio.wait({task}, timeout=renew_every)
                    if done:
                        break
                    held = await _take(services, name, holder, ttl)
                    if held:
                        renewed = loop.time()
                    # An unanswered renewal is not a loss until the lease could have expired.
                    elif held is False or loop.time() - renewed > ttl.total_seconds():
                        log.error("%s lost; stopping it here", name)
                        break
            finally:
                if not task.done():
                    task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            if task.done() and not task.cancelled() and task.exception() is None:
                return  # the role finished by itself
            announced = False
    finally:
        try:
            await asyncio.shield(leases.release(services.sessions, name, holder))
        except Exception as error:  # it expires by itself anyway
            log.info("%s not released (%s)", name, type(error).__name__)


async def _take(services: Services, name: str, holder: str, ttl: timedelta) -> bool | None:
    """True: held; False: another process holds it; None: the database did not answer."""
    try:
        return await leases.take(services.sessions, name, holder, services.clock.now(), ttl)
    except Exception as error:
        log.warning("%s could not be renewed (%s)", name, type(error).__name__)
        return None


# SQLite allows one process: its write lock serialises every transaction, and the per-user
# order of one process's lanes is all there is. `mcu run` and `mcu serve` hold this lease.
SQLITE_PROCESS = "sqlite-process"


async def claim_single_process(services: Services) -> bool:
    """Take the one-process lease of a SQLite database; False when another process that
    is still alive (or died less than TTL ago) holds it."""
    return bool(await _take(services, SQLITE_PROCESS, _SELF, TTL))


async def keep_single_process(services: Services) -> None:
    """Renew the lease taken by `claim_single_process` until cancelled (released then)."""
    async def forever() -> None:
        await asyncio.Event().wait()

    await run_while_holding(services, SQLITE_PROCESS, forever, holder=_SELF)


_SELF = process_identity()
