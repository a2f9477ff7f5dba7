"""A cursor for SQLAlchemy's aiosqlite driver that runs each statement in one trip to SQLite's thread.

aiosqlite runs SQLite in a thread of its own; every call is a trip there and back (a queue, a
future, a wake-up of the event loop, the GIL handed over twice). SQLAlchemy's cursor makes four per
statement (open a cursor, execute, fetch the rows, close), which made a one-row SELECT cost ~300 us
of CPU, ~200 us of it on the event loop. This cursor does all four in one function run in that
thread: ~155 us and ~120 us (bench/RESULTS.md, "one trip per statement"). Every path of the bot pays
it per statement: the inbox, the update processor's batches, the sender's results, the face worker.

Results are buffered, as SQLAlchemy's own aiosqlite cursor buffers them; server-side cursors
(``stream()``) keep SQLAlchemy's class. A rollback with no transaction open (the pool's reset of
every connection it gets back) makes no trip at all.
"""

from __future__ import annotations

import collections
from typing import Any

from bot.db.sqlalchemy_internals import AsyncAdapt_aiosqlite_connection, await_


class OneTripCursor:
    """The DBAPI cursor interface SQLAlchemy uses, each execute a single call into aiosqlite's thread."""

    server_side = False

    def __init__(self, adapt_connection: AsyncAdapt_aiosqlite_connection):
        self._adapt_connection = adapt_connection
        self._connection = adapt_connection._connection  # the aiosqlite connection
        self._rows: collections.deque = collections.deque()
        self.description = None
        self.rowcount = -1
        self.lastrowid = None
        self.arraysize = 1

    def execute(self, operation: str, parameters: Any = None) -> None:
        self._run("execute", operation, parameters)

    def executemany(self, operation: str, seq_of_parameters: Any) -> None:
        self._run("executemany", operation, seq_of_parameters)

    def _run(self, method: str, operation: str, parameters: Any) -> None:
        try:
            self.description, rows, self.rowcount, self.lastrowid = await_(
                self._connection._execute(_in_sqlite_thread, self._connection._conn, method, operation, parameters))
            self._rows = collections.deque(rows)
        except Exception as error:
            self._adapt_connection._handle_exception(error)  # raises it as SQLAlchemy expects

    def fetchone(self) -> Any:
        return self._rows.popleft() if self._rows else None

    def fetchmany(self, size: int | None = None) -> list:
        count = min(size or self.arraysize, len(self._rows))
        return [self._rows.popleft() for _ in range(count)]

    def fetchall(self) -> list:
        rows = list(self._rows)
        self._rows.clear()
        return rows

    def close(self) -> None:
        self._rows.clear()

    async def _async_soft_close(self) -> None:
        """Nothing to close: the SQLite cursor was closed in its thread."""

    def setinputsizes(self, *sizes: Any) -> None:
        """Part of the DBAPI; SQLite has no use for it."""


def _in_sqlite_thread(connection, method: str, operation: str, parameters: Any) -> tuple:
    cursor = connection.cursor()
    try:
        if parameters is None:
            getattr(cursor, method)(operation)
        else:
            getattr(cursor, method)(operation, parameters)
        description = cursor.description
        rows = cursor.fetchall() if description else []
        return description, rows, cursor.rowcount, cursor.lastrowid
    finally:
        cursor.close()


class OneTripConnection(AsyncAdapt_aiosqlite_connection):
    __slots__ = ()
    # duck-typed: SQLAlchemy only calls the DBAPI cursor interface, which OneTripCursor has
    _cursor_cls = OneTripCursor  # type: ignore[assignment]  # duck-typed, see above

    def rollback(self) -> None:
        # the pool rolls back every connection it gets back, a trip to SQLite's thread even after a
        # commit, when there is nothing to roll back (SQLite knows: a flag read without a trip)
        sqlite_connection = self._connection._connection
        if sqlite_connection is not None and not sqlite_connection.in_transaction:
            return
        super().rollback()


def use_one_trip_cursors(dbapi_connection, _record=None) -> None:
    """Give a new aiosqlite connection (SQLAlchemy's "connect" event) the one-trip cursor."""
    dbapi_connection.__class__ = OneTripConnection
