"""One thread hop per SQLite statement instead of four.

aiosqlite runs each connection in its own thread, and SQLAlchemy's adapter crosses to it for
every step of a statement: create the cursor, execute, fetch the rows, close the cursor. Each
crossing is a queue put, a thread wake-up and a future resolved back on the event loop, and
that overhead, not SQLite, was most of a turn's database time (about 0.1 ms per crossing,
against microseconds for the statement). Here a statement is one function run in the
connection's thread: execute, fetch everything, close, and note whether a transaction is
open, so that the ROLLBACK the pool sends to a connection it takes back costs nothing when
there is nothing to roll back. A BEGIN goes with the transaction's first statement.

`adopt` switches a new connection to this cursor (create_engine does it on "connect").
"""

from __future__ import annotations

import collections
from collections.abc import Sequence
from typing import Any

from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_ss_cursor,
)
from sqlalchemy.util.concurrency import await_

Outcome = tuple[list[Any], Any, int, int | None, bool]
_BEGINS = frozenset({"BEGIN", "BEGIN IMMEDIATE"})


def _run(connection: Any, begin: str | None, operation: str, parameters: Any,
         many: bool) -> Outcome:
    """In the connection's thread: the BEGIN held back, if any, and the whole statement,
    rows included."""
    if begin is not None:
        connection.execute(begin)
    cursor = connection.cursor()
    try:
        if many:
            cursor.executemany(operation, parameters)
        elif parameters is None:
            cursor.execute(operation)
        else:
            cursor.execute(operation, parameters)
        description = cursor.description
        rows = cursor.fetchall() if description else []
        return rows, description, cursor.rowcount, cursor.lastrowid, connection.in_transaction
    finally:
        cursor.close()


class OneHopCursor(AsyncAdapt_aiosqlite_cursor):
    __slots__ = ("_description", "_lastrowid", "_rowcount")

    def __init__(self, adapt_connection: AsyncAdapt_aiosqlite_connection) -> None:
        # No driver cursor: each statement makes and closes its own in the thread.
        self._adapt_connection = adapt_connection
        self._connection = adapt_connection._connection
        self._cursor = None  # type: ignore[assignment]
        self._soft_closed_memoized = {}  # type: ignore[assignment]
        self._rows = collections.deque()
        self._description: Any = None
        self._rowcount = -1
        self._lastrowid: int | None = None

    @property
    def description(self) -> Any:
        return self._description

    @property
    def rowcount(self) -> int:
        return self._rowcount

    @property
    def lastrowid(self) -> int:
        return self._lastrowid  # type: ignore[return-value]

    @property
    def arraysize(self) -> int:
        return 1

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        pass

    async def _async_soft_close(self) -> None:
        return None

    def close(self) -> None:
        self._rows.clear()

    def _go(self, operation: Any, parameters: Any, many: bool) -> None:
        adapter = self._adapt_connection
        driver = self._connection
        if not many and parameters in (None, ()) and operation in _BEGINS:
            # Sent with the transaction's first statement, in the same hop; the lock and
            # any "database is locked" arrive there, before anything else is done.
            driver.mcu_begin = operation
            self._description, self._rowcount = None, -1
            return
        begin, driver.mcu_begin = getattr(driver, "mcu_begin", None), None
        try:
            rows, description, rowcount, lastrowid, in_tx = await_(driver._execute(
                _run, driver._conn, begin, operation, parameters, many))
        except Exception as error:
            driver.mcu_in_transaction = True  # unknown: the next ROLLBACK is really sent
            adapter._handle_exception(error)
        driver.mcu_in_transaction = in_tx
        self._rows = collections.deque(rows)
        self._description, self._rowcount, self._lastrowid = description, rowcount, lastrowid

    def execute(self, operation: Any, parameters: Any = None) -> None:
        self._go(operation, parameters, False)

    def executemany(self, operation: Any, seq_of_parameters: Sequence[Any]) -> None:
        self._go(operation, seq_of_parameters, True)

    def setinputsizes(self, *inputsizes: Any) -> None:
        pass

    def nextset(self) -> None:
        return None


class StreamingCursor(AsyncAdapt_aiosqlite_ss_cursor):
    """A server-side cursor (`session.stream`) fetches in batches, with the driver's own
    cursor; it sends the BEGIN held back first."""

    __slots__ = ()

    def execute(self, operation: Any, parameters: Any = None) -> Any:
        driver = self._connection
        begin, driver.mcu_begin = getattr(driver, "mcu_begin", None), None
        driver.mcu_in_transaction = True  # not tracked here: COMMIT and ROLLBACK are sent
        if begin is not None:
            try:
                await_(driver._execute(driver._conn.execute, begin))
            except Exception as error:
                self._adapt_connection._handle_exception(error)
        return super().execute(operation, parameters)


class OneHopConnection(AsyncAdapt_aiosqlite_connection):
    """The aiosqlite adapter with one-hop statements; COMMIT and ROLLBACK are skipped when
    the last statement left no transaction open (the pool's reset after a commit)."""

    __slots__ = ()  # the same layout: `adopt` switches the class of a live connection

    _cursor_cls = OneHopCursor
    _ss_cursor_cls = StreamingCursor

    def rollback(self) -> None:
        driver = self._connection
        driver.mcu_begin = None  # a transaction without statements: nothing was begun
        if getattr(driver, "mcu_in_transaction", True):
            super().rollback()
            driver.mcu_in_transaction = False

    def commit(self) -> None:
        driver = self._connection
        driver.mcu_begin = None
        if getattr(driver, "mcu_in_transaction", True):
            super().commit()
            driver.mcu_in_transaction = False


def adopt(dbapi_connection: Any) -> None:
    if type(dbapi_connection) is AsyncAdapt_aiosqlite_connection:
        dbapi_connection.__class__ = OneHopConnection
