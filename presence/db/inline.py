"""The hottest point lookups, answered on the event loop's own thread where the backend allows.

On SQLite, aiosqlite runs every statement in a worker thread, and the hops there
and back (a queue, a wake-up, a callback into the loop, for each call) cost
many times what an indexed lookup costs SQLite itself. :class:`Lookups` keeps one
stdlib ``sqlite3`` connection for the loop's thread, read-only and in
autocommit, and runs ``GET /users/{uid}/presence`` and
``GET /messages/{id}/receipts`` on it directly. In WAL mode a reader never waits
for the writer, and each statement is its own read transaction, so it sees
every commit acknowledged before it started.

A lookup must never hold the loop: each runs under a budget. SQLite's progress
handler interrupts one that runs longer than ``budget`` seconds (a cold page
cache, a conversation with a very long history), and it is answered the
ordinary way instead, in the worker thread. Any other SQLite error takes the
same way, where it becomes the usual ``503``. On PostgreSQL, or with a budget of
0, every lookup takes the ordinary way.

The SQL is compiled from the statements of :mod:`presence.db.reads`, and rows are
converted by SQLAlchemy's own result processors for the dialect, so both ways
give the same answer by construction.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from presence.db import reads
from presence.db.driver import CompiledQuery
from presence.db.engine import open_sqlite, sqlite_file
from presence.db.reads import MessageReceipts, Presence
from presence.metrics import Metrics

log = logging.getLogger(__name__)

#: SQLite calls the progress handler every this many virtual-machine instructions.
PROGRESS_STEP = 1000


class Lookups:
    """``presence`` and ``receipts`` of one engine: inline on SQLite within a budget, else the ordinary way."""

    def __init__(self, engine: AsyncEngine, *, budget: float, metrics: Metrics | None = None) -> None:
        self._engine = engine
        self._budget = budget
        self._metrics = metrics
        self._path = sqlite_file(engine) if budget > 0 else None
        self._connection: sqlite3.Connection | None = None
        self._deadline = 0.0
        dialect = engine.dialect
        self._presence = CompiledQuery.of(reads.PRESENCE_OF, dialect)
        self._receipts = CompiledQuery.of(reads.RECEIPTS_OF, dialect)

    @property
    def inline(self) -> bool:
        """Whether lookups are tried on the loop's thread first."""
        return self._path is not None

    async def presence(self, uid: str) -> Presence | None:
        rows = self._inline(self._presence, uid=uid)
        if rows is not None:
            return reads.presences_from_rows(rows).get(uid)
        async with self._engine.connect() as connection:
            return await reads.presence_of(connection, uid)

    async def receipts(self, message_id: int) -> MessageReceipts | None:
        rows = self._inline(self._receipts, message_id=message_id)
        if rows is not None:
            return reads.receipts_from_rows(message_id, rows)
        async with self._engine.connect() as connection:
            return await reads.receipts_of(connection, message_id)

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _inline(self, query: CompiledQuery, **given: Any) -> list[tuple[Any, ...]] | None:
        """The rows of ``query``, or ``None`` when it must take the ordinary way."""
        if self._path is None:
            return None
        try:
            connection = self._connection or self._connect(self._path)
            self._deadline = time.perf_counter() + self._budget
            rows = connection.execute(query.sql, query.parameters(**given)).fetchall()
        except sqlite3.Error as error:
            over_budget = time.perf_counter() >= self._deadline and "interrupt" in str(error)
            reason = "over_budget" if over_budget else "error"
            if not over_budget:
                log.info("inline lookup failed (%s); asking the pool instead", error)
                self.close()  # a fresh connection next time, should this one be broken
            if self._metrics is not None:
                self._metrics.inline_read_fallbacks.labels(reason=reason).inc()
            return None
        return query.convert(rows)

    def _connect(self, path: Path) -> sqlite3.Connection:
        # query_only: never write. busy_timeout=0: a lookup that would wait for a lock is
        # better answered by the pool, which may wait.
        connection = open_sqlite(path, ["PRAGMA query_only=ON", "PRAGMA busy_timeout=0"])
        connection.set_progress_handler(self._over_budget, PROGRESS_STEP)
        self._connection = connection
        return connection

    def _over_budget(self) -> bool:
        return time.perf_counter() >= self._deadline
