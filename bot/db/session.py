"""The engine and sessionmaker, built once at start; one AsyncSession per update."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError, PendingRollbackError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from bot.db.session_state import ReuniteSyncSession
from bot.db.sqlalchemy_internals import await_
from bot.db.sqlite_cursor import use_one_trip_cursors


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers run beside the one writer; secure_delete overwrites purged rows (privacy rule 4)
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA secure_delete=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


#: How long a write waits for the others in this process (SQLite's own busy timeout is the same).
WRITE_WAIT_SECONDS = 10.0
_WRITE_VERBS = ("INSERT", "UPDATE", "DELETE", "REPLACE")
_HOLDS_WRITE_TURN = "reunite_holds_write_turn"


class SqliteWriteTurns:
    """One writing transaction at a time in this process, waiting in line on the event loop.

    SQLite has one writer. Left to itself, a connection that finds the database locked sleeps in
    its busy handler (1, 2, 5 ... 100 ms) and retries, so under load a writer can keep missing the
    free moments: with the poller, the update processor and the sender writing side by side, the
    inbox insert waited up to 3 s (bench/tip_load.py --probe). Here a transaction takes its turn
    just before its first INSERT/UPDATE/DELETE (when pysqlite begins the SQLite transaction) and
    gives it back at commit or rollback; waiters get it in order, the moment it is free. Other
    processes (``reunite cases import``) still meet SQLite's busy handler.
    """

    def __init__(self) -> None:
        self._lock = asyncio.Lock()

    def install(self, sync_engine) -> None:
        event.listen(sync_engine, "before_cursor_execute", self._before_execute)
        event.listen(sync_engine, "commit", self._give_back)
        event.listen(sync_engine, "rollback", self._give_back)
        # a connection dropped mid-transaction (invalidated, closed) must not keep the turn
        event.listen(sync_engine.pool, "reset", self._on_reset)
        event.listen(sync_engine.pool, "invalidate", self._on_invalidate)
        event.listen(sync_engine.pool, "close", self._on_close)

    def _before_execute(self, connection, _cursor, statement: str, _parameters, _context, _many) -> None:
        if connection.info.get(_HOLDS_WRITE_TURN) or not statement.lstrip().upper().startswith(_WRITE_VERBS):
            return
        try:
            await_(self._take_turn())
        except TimeoutError as error:
            raise OperationalError(statement, None, error) from error
        connection.info[_HOLDS_WRITE_TURN] = True

    async def _take_turn(self) -> None:
        # not asyncio.wait_for: on Python 3.11 it loses a cancellation (a stop) that arrives just
        # as the lock is granted, and the cancelled task would go on writing
        async with asyncio.timeout(WRITE_WAIT_SECONDS):
            await self._lock.acquire()

    def _give_back(self, connection) -> None:
        try:
            info = connection.info
        except PendingRollbackError:  # its connection was invalidated: the pool event gave it back
            return
        self._release(info)

    def _release(self, info: dict) -> None:
        if info.pop(_HOLDS_WRITE_TURN, False):
            self._lock.release()

    def _on_reset(self, _dbapi_connection, record, _reset_state) -> None:
        self._release(record.info)

    def _on_invalidate(self, _dbapi_connection, record, _exception) -> None:
        self._release(record.info)

    def _on_close(self, _dbapi_connection, record) -> None:
        self._release(record.info)


def create_engine(url: str) -> AsyncEngine:
    if is_sqlite(url):
        database = make_url(url).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, connect_args={"timeout": 10})
        event.listen(engine.sync_engine, "connect", use_one_trip_cursors)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        SqliteWriteTurns().install(engine.sync_engine)
        return engine
    return create_async_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True)


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, sync_session_class=ReuniteSyncSession)
