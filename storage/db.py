"""Engine and session factory for SQLite (default) and PostgreSQL."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.util.concurrency import await_, in_greenlet

from storage import (
    rollups,  # noqa: F401  (registers the rollup's flush hooks)
    sqlite_hops,
)


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def ensure_sqlite_dir(url: str) -> None:
    """Create the directory of a file database, so a fresh checkout just works."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)


log = logging.getLogger(__name__)

# aiosqlite logs every statement with its parameters at DEBUG: names and message texts would
# reach the log whenever debug logging is on (`mcu -v`). SQLAlchemy's own loggers are quiet
# unless asked (echo).
logging.getLogger("aiosqlite").setLevel(logging.INFO)

DEFAULT_SQLITE_BUSY_TIMEOUT = 30.0  # seconds


def create_engine(url: str, *, busy_timeout: float = DEFAULT_SQLITE_BUSY_TIMEOUT,
                  **kwargs: Any) -> AsyncEngine:
    """`busy_timeout` (SQLite only, seconds): how long a statement waits for another
    connection's lock before "database is locked" (MCU_SQLITE_BUSY_TIMEOUT)."""
    ensure_sqlite_dir(url)
    if is_sqlite(url):
        # Several writers (transports, scheduler, CLI) share one file: wait for the lock
        # instead of failing at once.
        kwargs.setdefault("connect_args", {"timeout": busy_timeout})
    else:
        kwargs.setdefault("pool_pre_ping", True)
    engine = create_async_engine(url, **kwargs)
    if is_sqlite(url):
        millis = max(int(busy_timeout * 1000), 0)

        def pragmas(dbapi_connection: Any, record: Any) -> None:
            _sqlite_pragmas(dbapi_connection, record, millis)
            sqlite_hops.adopt(dbapi_connection)

        gate = _WriteGate(busy_timeout)

        def begin(connection: Any) -> None:
            _sqlite_begin(connection, gate)

        event.listen(engine.sync_engine, "connect", pragmas)
        event.listen(engine.sync_engine, "begin", begin)
        event.listen(engine.sync_engine.pool, "checkin", gate.checkin)
    return engine


class _WriteGate:
    """Writers of this process take SQLite's write lock one after another, queued on the
    event loop. Without it they queue inside SQLite, whose busy handler polls with sleeps of
    1 to 100 ms: under a burst of turns most of the time went to those sleeps. Other
    processes still meet at SQLite's lock (busy_timeout). Held from the BEGIN until the
    connection goes back to the pool, after its COMMIT or ROLLBACK.

    Two queues: the outbox's marks and claims (a single short statement each, sessions of
    `urgent_session_factory`) go before the waiting turns. Otherwise, in a burst, each reply
    and each head's card waited behind every turn queued before its claim."""

    KEY = "mcu_write_gate"

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._held = False
        self._queues: tuple[deque[asyncio.Future[None]], ...] = (deque(), deque())

    def enter(self, connection: Any, urgent: bool = False) -> None:
        if not in_greenlet():
            return  # a synchronous caller: SQLite's own lock decides
        info = connection.connection.info
        if info.get(self.KEY):
            return
        try:
            await_(self._acquire(urgent))
        except TimeoutError:
            raise OperationalError("BEGIN IMMEDIATE", None,
                                   sqlite3.OperationalError("database is locked")) from None
        info[self.KEY] = True

    async def _acquire(self, urgent: bool) -> None:
        if not self._held and not any(self._queues):
            self._held = True
            return
        loop = asyncio.get_running_loop()
        turn: asyncio.Future[None] = loop.create_future()
        queue = self._queues[0 if urgent else 1]
        queue.append(turn)
        expiry = loop.call_later(self.timeout, _expire, turn)
        try:
            await turn  # resolved when the lock is handed over to this writer
        except BaseException:
            if turn in queue:
                queue.remove(turn)
            elif turn.done() and not turn.cancelled() and turn.exception() is None:
                self._release()  # handed over just as this writer was cancelled: pass it on
            raise
        finally:
            expiry.cancel()

    def checkin(self, _dbapi_connection: Any, record: Any) -> None:
        if record is not None and record.info.pop(self.KEY, False):
            self._release()

    def _release(self) -> None:
        for queue in self._queues:
            while queue:
                turn = queue.popleft()
                if not turn.done():
                    turn.set_result(None)  # handed over: the lock stays held
                    return
        self._held = False


def _expire(turn: asyncio.Future[None]) -> None:
    if not turn.done():
        turn.set_exception(TimeoutError())


def _sqlite_pragmas(dbapi_connection: Any, _record: Any, busy_millis: int = 30000) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA busy_timeout={int(busy_millis)}")
    # Deleted and overwritten values are zeroed in the file, not left in free space (erasure
    # under 152-ФЗ must not leave the old text readable in the database file).
    cursor.execute("PRAGMA secure_delete=ON")
    cursor.close()
    # Take over transaction control from the driver so that SAVEPOINT works (SQLAlchemy docs,
    # "Serializable isolation / Savepoints / Transactional DDL" for pysqlite/aiosqlite).
    dbapi_connection.isolation_level = None


def _sqlite_begin(connection: Any, gate: _WriteGate | None = None) -> None:
    # IMMEDIATE takes the write lock at the start: concurrent read-then-write transactions
    # queue on busy_timeout instead of failing with "database is locked" on the upgrade.
    # Read-only sessions (read_session_factory) begin DEFERRED: in WAL mode they read a
    # snapshot and never take or wait for the write lock.
    options = connection.get_execution_options()
    read_only = options.get(READ_ONLY, False)
    if gate is not None and not read_only:
        gate.enter(connection, urgent=options.get(URGENT, False))
    if options.get(AUTOCOMMIT, False):
        return  # each statement is its own transaction (see `autocommit`)
    connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


READ_ONLY = "mcu_read_only"
URGENT = "mcu_urgent"
AUTOCOMMIT = "mcu_autocommit"


@asynccontextmanager
async def autocommit(engine: AsyncEngine, *, urgent: bool = False
                     ) -> AsyncIterator[AsyncConnection]:
    """A connection whose every statement commits by itself: for a single upsert, it saves
    the BEGIN and COMMIT round trips. On SQLite the driver is already in autocommit mode
    (`_sqlite_pragmas`), so no BEGIN is sent; PostgreSQL gets the AUTOCOMMIT level.
    `urgent`: the outbox's marks, which take SQLite's write lock before waiting turns."""
    async with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            await connection.execution_options(**{AUTOCOMMIT: True, URGENT: urgent})
        else:
            await connection.execution_options(isolation_level="AUTOCOMMIT")
        yield connection


def session_factory(engine: AsyncEngine, *, tz: ZoneInfo | None = None,
                    **options: bool) -> async_sessionmaker[AsyncSession]:
    """`options`: execution options of the sessions' connections (READ_ONLY, URGENT)."""
    bind = engine.execution_options(**options) if options else engine
    # The time zone is what storage/rollups.py needs to file a changed item under its local day.
    return async_sessionmaker(bind, expire_on_commit=False, info={"tz": tz} if tz else None)


def read_session_factory(engine: AsyncEngine, *,
                         tz: ZoneInfo | None = None) -> async_sessionmaker[AsyncSession]:
    """Sessions for reading only (statistics, summaries): no write lock on SQLite. Writing
    through one is a mistake; on SQLite it would fail with "database is locked" under load."""
    return session_factory(engine, tz=tz, **{READ_ONLY: True})


def urgent_session_factory(engine: AsyncEngine, *,
                           tz: ZoneInfo | None = None) -> async_sessionmaker[AsyncSession]:
    """Sessions for the outbox's single-statement marks and claims: on SQLite they take the
    write lock before the turns waiting for it (see `_WriteGate`)."""
    return session_factory(engine, tz=tz, **{URGENT: True})


async def scrub_freed_pages(engine: AsyncEngine) -> None:
    """After an erasure: SQLite's write-ahead log still holds the pages as they were before;
    a TRUNCATE checkpoint copies the current pages into the database file and empties the log.
    PostgreSQL drops old row versions by itself (autovacuum)."""
    if engine.dialect.name != "sqlite" or not engine.url.database:
        return
    path = engine.url.database

    def checkpoint() -> tuple[int, int, int]:
        connection = sqlite3.connect(path, timeout=30)
        try:
            busy, log_pages, copied = connection.execute(
                "PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            return busy, log_pages, copied
        finally:
            connection.close()

    busy, _, _ = await asyncio.to_thread(checkpoint)
    if busy:
        log.warning("the write-ahead log was busy; old pages leave it at a later checkpoint")


# asyncpg raises these itself (not wrapped) while a server restarts or a connection drops.
_DRIVER_OUTAGES = frozenset({"CannotConnectNowError", "ConnectionDoesNotExistError",
                             "ConnectionFailureError", "InterfaceError",
                             "InternalClientError", "TooManyConnectionsError"})


def is_transient(error: BaseException, depth: int = 0) -> bool:
    """The database did not answer (locked past the busy timeout, restarting, unreachable),
    as opposed to a bug: the same work may simply be tried again. SQLAlchemy wraps the
    driver's error, which may wrap another: the chain of causes is looked at too."""
    if isinstance(error, OperationalError | InterfaceError | OSError | TimeoutError):
        return True
    if isinstance(error, DBAPIError) and error.connection_invalidated:
        return True
    if type(error).__module__.startswith("asyncpg") and type(error).__name__ in _DRIVER_OUTAGES:
        return True
    cause = error.__cause__ or error.__context__
    return cause is not None and depth < 5 and is_transient(cause, depth + 1)

