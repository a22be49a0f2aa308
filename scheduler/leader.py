"""One scheduler leader among any number of `mcu worker` processes.

APScheduler 3's job stores must never be shared between schedulers, so every worker could
run its own scheduler only by running every sweep N times. Instead the workers elect one
leader, which builds its own scheduler with an in-memory job store; the others stand by and
take over when it dies. The sweeps are idempotent (dedupe keys in the outbox), so the short
overlap an election can have (a leader cut off from the database that has not noticed yet)
harms nothing.

- PostgreSQL: `pg_try_advisory_lock` on a dedicated connection held for the process's life
  (autocommit, so it never sits idle in a transaction). The lock belongs to that session:
  when the process dies, even by SIGKILL, the server ends the session and frees the lock.
  The holder checks its connection every few seconds; once it fails, leadership is lost and
  the local scheduler stops at once. A standby tries the lock every few seconds, so a
  successor leads within seconds of the leader's death (well inside 30 s). A leader's machine
  that dies without closing the connection is noticed by the server through
  idle_session_timeout (15 s) and TCP keepalives.
- SQLite: a named lease in the `leases` table (storage/leases.py), renewed at every check
  (2 s) and taken over 20 s after its holder stopped renewing it (at most 25 s with the
  standby's retry).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from datetime import timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from handlers.context import Services
from storage import leases
from storage.db import is_sqlite

log = logging.getLogger(__name__)

# A fixed key for pg_advisory_lock, the same in every worker ("mcu-sch" in ASCII).
ADVISORY_KEY = 0x6D63752D736368
LEASE_NAME = "scheduler-leader"
LEASE_TTL = timedelta(seconds=20)
RETRY_EVERY = 5.0  # seconds between a standby's attempts
CHECK_EVERY = 2.0  # seconds between the leader's checks that it still leads
CHECK_TIMEOUT = 5.0  # an unanswered check for this long counts as a lost connection
# A leader whose machine died or was cut off never closes its connection: the server ends a
# session that stays idle this long (the leader checks every CHECK_EVERY seconds, so a live
# one never is), which frees the lock well within the 30 s takeover bound. PostgreSQL >= 14.
SESSION_WATCH = {"idle_session_timeout": "15000",  # milliseconds
                 "tcp_keepalives_idle": "10", "tcp_keepalives_interval": "5",
                 "tcp_keepalives_count": "3"}


class Election(ABC):
    """How a process becomes and stays the one leader."""

    @abstractmethod
    async def campaign(self) -> bool:
        """Try to become the leader now; True when this process leads."""

    @abstractmethod
    async def still_leading(self) -> bool:
        """Does this process still lead? False once leadership may have passed on."""

    @abstractmethod
    async def resign(self) -> None:
        """Give leadership up (a stop, or after it was lost)."""


class AdvisoryLockElection(Election):
    """PostgreSQL: a session-level advisory lock on a connection of its own."""

    def __init__(self, database_url: str, key: int = ADVISORY_KEY) -> None:
        # NullPool: the connection is ours alone, and closing it really ends the session.
        self._engine: AsyncEngine = create_async_engine(
            database_url, poolclass=NullPool,
            connect_args={"server_settings": {"application_name": f"mcu-worker:{os.getpid()}",
                                              **SESSION_WATCH}})
        self._key = key
        self._connection: AsyncConnection | None = None

    async def campaign(self) -> bool:
        try:
            if self._connection is None:
                connection = await self._engine.connect()
                self._connection = await connection.execution_options(
                    isolation_level="AUTOCOMMIT")
            async with asyncio.timeout(CHECK_TIMEOUT):
                taken = await self._connection.scalar(
                    text("SELECT pg_try_advisory_lock(:key)"), {"key": self._key})
        except Exception as error:
            log.warning("scheduler election: database unavailable (%s)", type(error).__name__)
            await self._drop()
            return False
        return bool(taken)

    async def still_leading(self) -> bool:
        if self._connection is None:
            return False
        try:
            # The lock lives as long as this session: a live connection means we hold it.
            async with asyncio.timeout(CHECK_TIMEOUT):
                await self._connection.scalar(text("SELECT 1"))
        except Exception as error:
            log.error("scheduler election: the leader's connection failed (%s)",
                      type(error).__name__)
            await self._drop()
            return False
        return True

    async def resign(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(CHECK_TIMEOUT):
                    await self._connection.execute(
                        text("SELECT pg_advisory_unlock(:key)"), {"key": self._key})
        await self._drop()

    async def close(self) -> None:
        await self.resign()
        await self._engine.dispose()

    async def _drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.invalidate()  # never back to a pool: the session ends
            with contextlib.suppress(Exception):
                await connection.close()


class LeaseElection(Election):
    """SQLite (one machine): a lease row renewed by its holder, taken over once it expires."""

    def __init__(self, services: Services, holder: str, ttl: timedelta = LEASE_TTL) -> None:
        self._services = services
        self._holder = holder
        self._ttl = ttl
        self._renewed: float | None = None

    async def campaign(self) -> bool:
        if await self._take():
            self._renewed = asyncio.get_running_loop().time()
            return True
        return False

    async def still_leading(self) -> bool:
        held = await self._take()
        now = asyncio.get_running_loop().time()
        if held:
            self._renewed = now
            return True
        # An unanswered renewal is not a loss until the lease could have expired.
        return bool(held is None and self._renewed is not None
                    and now - self._renewed < self._ttl.total_seconds() - CHECK_EVERY)

    async def resign(self) -> None:
        self._renewed = None
        with contextlib.suppress(Exception):
            await leases.release(self._services.sessions, LEASE_NAME, self._holder)

    async def close(self) -> None:
        await self.resign()

    async def _take(self) -> bool | None:
        try:
            return await leases.take(self._services.sessions, LEASE_NAME, self._holder,
                                     self._services.now(), self._ttl)
        except Exception as error:
            log.warning("scheduler election: lease not renewed (%s)", type(error).__name__)
            return None


def election_for(services: Services, database_url: str,
                 holder: str) -> AdvisoryLockElection | LeaseElection:
    if is_sqlite(database_url):
        return LeaseElection(services, holder)
    return AdvisoryLockElection(database_url)


async def lead(election: Election, on_elected: Callable[[], Awaitable[None]],
               on_deposed: Callable[[], Awaitable[None]], *, retry_every: float = RETRY_EVERY,
               check_every: float = CHECK_EVERY) -> None:
    """Campaign until elected, run `on_elected`, watch the leadership, and run `on_deposed`
    as soon as it is lost (then campaign again). Runs until cancelled; on cancellation a
    leader steps down and resigns."""
    announced = False
    leading = False
    try:
        while True:
            if not await election.campaign():
                if not announced:  # said once, not every few seconds
                    log.info("scheduler: another worker leads; standing by")
                    announced = True
                await asyncio.sleep(retry_every)
                continue
            leading, announced = True, False
            log.info("scheduler leadership taken by this process (pid %s)", os.getpid())
            await on_elected()
            while await election.still_leading():
                await asyncio.sleep(check_every)
            leading = False
            log.error("scheduler leadership lost; the scheduler stops here")
            await on_deposed()
            await election.resign()
            await asyncio.sleep(retry_every)
    finally:
        if leading:
            log.info("scheduler leadership given up (pid %s)", os.getpid())
            await asyncio.shield(on_deposed())
        await asyncio.shield(election.resign())
