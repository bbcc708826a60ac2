"""Where a group commit's statements run: one transaction, all or nothing.

On an SQLite file, :class:`SqliteTransactions` runs the whole transaction in one
hop to a thread of its own, on a stdlib ``sqlite3`` connection: ``BEGIN
IMMEDIATE``, one ``executemany`` per statement, ``COMMIT`` (and its fsync). Going
through aiosqlite instead costs a round trip to its thread and back for every
call, and each return waits its turn behind the requests the event loop is
serving: profiles showed a 32-event commit taking 10 ms, most of it waiting.

Elsewhere (PostgreSQL, where asyncpg needs no thread; an in-memory SQLite
database, which only the engine's own connection can see)
:class:`EngineTransactions` runs the statements on a connection of the engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncEngine

from presence.db.engine import SQLITE_BUSY_TIMEOUT_MS, ensure_wal, open_sqlite, sqlite_file
from presence.db.writes import Statement, execute
from presence.settings import Settings

log = logging.getLogger(__name__)


class Transactions(Protocol):
    async def start(self) -> None:
        """Get ready before the first transaction; never raises (the first ``run`` will)."""

    async def run(self, statements: Sequence[Statement]) -> None:
        """Execute ``statements`` in one transaction and commit it; raise if it did not commit."""

    async def close(self) -> None:
        """Release the connection; nothing may run afterwards."""


def transactions_for(engine: AsyncEngine, settings: Settings) -> Transactions:
    path = sqlite_file(engine)
    if path is None:
        return EngineTransactions(engine)
    return SqliteTransactions(path, synchronous=settings.sqlite_synchronous)


class EngineTransactions:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def start(self) -> None:
        pass  # the pool connects on demand

    async def run(self, statements: Sequence[Statement]) -> None:
        async with self._engine.begin() as connection:
            await execute(connection, statements)

    async def close(self) -> None:
        pass  # the engine's owner disposes of it


class SqliteTransactions:
    """One writer thread with one connection, configured as the engine's (WAL, ``synchronous``)."""

    def __init__(self, path: Path, *, synchronous: str) -> None:
        self._path = path
        self._synchronous = synchronous
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="presence-sqlite-writer")
        #: Used only on the writer thread.
        self._connection: sqlite3.Connection | None = None
        self._closed = False

    async def start(self) -> None:
        """Open the writer's connection now, before the service's other connections are busy.

        The first connections to a database file set up its WAL index; the writer opening
        it for its first commit while retention's first pass was deleting on another
        connection was seen, rarely, to end in "database is locked" and "disk I/O error".
        """
        try:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._connect)
        except sqlite3.Error as error:
            log.warning("cannot open the SQLite database yet (%s); the first commit will try again", error)

    async def run(self, statements: Sequence[Statement]) -> None:
        # If the caller stops waiting (a commit timeout), the transaction still runs to its end
        # on the thread, and the next one waits for it: the thread is never abandoned mid-write.
        await asyncio.get_running_loop().run_in_executor(self._executor, self._transaction, statements)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            # Behind any transaction still on the thread: a connection is never closed mid-write.
            await asyncio.get_running_loop().run_in_executor(self._executor, self._disconnect)
        finally:
            self._executor.shutdown(wait=False)

    def _transaction(self, statements: Sequence[Statement]) -> None:
        connection = self._connection or self._connect()
        try:
            connection.execute("BEGIN IMMEDIATE")
            for statement in statements:
                connection.executemany(statement.sql, statement.rows)
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                try:
                    connection.execute("ROLLBACK")
                except sqlite3.Error:
                    self._disconnect()  # a connection that cannot roll back is not used again
            raise

    def _connect(self) -> sqlite3.Connection:
        connection = open_sqlite(self._path, [f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}"], any_thread=True)
        try:
            ensure_wal(connection.cursor())
            connection.execute(f"PRAGMA synchronous={self._synchronous}")  # one of a fixed set, checked by Settings
        except sqlite3.Error:
            connection.close()
            raise
        self._connection = connection
        return connection

    def _disconnect(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(sqlite3.Error):
                self._connection.close()
            self._connection = None
