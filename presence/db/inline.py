"""The hottest point lookups, answered on the event loop's own thread where the backend allows.

On SQLite, aiosqlite runs every statement in a worker thread, and the hops there
and back (a queue, a wake-up, a callback into the loop, for each call) cost
many times what an indexed lookup costs SQLite itself. :class:`Lookups` keeps one
stdlib ``sqlite3`` connection for the loop's thread, read-only and in
autocommit, and runs ``GET /users/{uid}/presence`` and
``GET /messages/{id}/receipts`` on it directly. In WAL mode a reader never waits
for the writer.

In WAL mode, the lookups of one turn of the event loop share one read transaction
(:meth:`Lookups._snapshot`): the first opens it, and a callback the loop runs at
the start of its next turn ends it. Opening one costs about 2 µs a lookup (a lock
and an unlock of the WAL's read mark, a ``stat`` of the file: system calls), as much
as an indexed lookup itself. It still sees every commit acknowledged before the
request came: aiohttp runs a request's handler at least one turn after it read the
request's bytes, and a commit is acknowledged on the loop, so a request read after
an acknowledgement is handled in a later turn than the one whose snapshot might
predate that acknowledgement; and the callback that ends a snapshot was queued
before anything that bytes read later can queue. Nothing is kept from one turn to
the next: this is no cache of answers.

A lookup must never hold the loop: each runs under a budget. SQLite's progress
handler interrupts one that runs longer than ``budget`` seconds (a cold page
cache, a conversation with a very long history), and it is answered the
ordinary way instead, in the worker thread. A group message's ``unread_by``
(``conversations.unread_by_steps``) runs here too, one statement at a time, each within
the budget: were it left to the worker thread, that thread would take the GIL from the
loop's lookups while they wait in SQLite (and in the progress handler, which needs the
GIL), put them over budget, and send them to the worker thread in turn (measured on the
benchmark's receipts, one in seven of them a group message's: the tail of the receipts
lookups reached hundreds of milliseconds). Any other SQLite error takes the
same way, where it becomes the usual ``503``. On PostgreSQL, or with a budget of
0, every lookup takes the ordinary way.

The SQL is compiled from the statements of :mod:`presence.db.reads` and
:mod:`presence.db.conversations`, so both ways read the same rows. :meth:`Lookups.presence`
and :meth:`Lookups.receipts` convert them with SQLAlchemy's own result processors for the
dialect; the answers the API writes (:meth:`Lookups.presence_answer`,
:meth:`Lookups.receipts_answer`) are made straight from SQLite's values, with no
``datetime`` between the stored text and the answer's (:func:`_instant`), and
``tests/test_inline.py`` holds them equal to the ordinary way's.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from sqlalchemy import CompoundSelect, Executable, Select
from sqlalchemy.ext.asyncio import AsyncEngine

from presence.core.facts import answered_status
from presence.db import conversations, reads
from presence.db.conversations import UnreadBy
from presence.db.driver import CompiledQuery, sqlite_moment
from presence.db.engine import open_sqlite, sqlite_file
from presence.db.reads import MessageReceipts, Presence
from presence.http import responses
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
        #: The connection whose read transaction is open for this turn of the loop, if any.
        self._reading: sqlite3.Connection | None = None
        #: Whether the connection's lookups share a turn's snapshot: only in WAL mode, where it never holds a writer.
        self._shared = False
        self._deadline = 0.0
        self._dialect = engine.dialect
        #: Each statement run inline, compiled once, by the statement's identity (they are built once).
        self._compiled: dict[int, tuple[Executable, CompiledQuery]] = {}
        self._presence = self._query(reads.PRESENCE_OF)
        self._receipts = self._query(reads.RECEIPTS_OF)
        # The parameters of both, but the one asked for, bound once (their literals).
        self._presence_parameters = self._presence.binder("uid")
        self._receipts_parameters = self._receipts.binder("message_id")
        #: The SQL each compiled query runs as (see :meth:`_interrupted`), by the query's identity.
        self._texts: dict[int, str] = {}
        self._interruptions = 0

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

    async def presence_answer(self, uid: str, floor: bytes | None) -> responses.Presence | None:
        """The answer of ``GET /users/{uid}/presence`` under the TTL's ``floor``: ``None`` for an unknown user.

        Inline, straight from SQLite's values to the answer's (:func:`_presence_answer`); the
        ordinary way through :class:`reads.Presence` and ``responses.presence_answer``.
        """
        rows = self._raw(self._presence, self._presence_parameters(uid))
        if rows is not None:
            try:
                return _presence_answer(rows, floor)
            except _Unusual:
                found = reads.presences_from_rows(self._presence.convert(rows)).get(uid)
        else:
            async with self._engine.connect() as connection:
                found = await reads.presence_of(connection, uid)
        return None if found is None else responses.presence_answer(reads.as_of(found, floor))

    async def receipts_answer(self, message_id: int) -> responses.MessageReceipts | None:
        """The answer of ``GET /messages/{id}/receipts`` but a group's ``unread_by``; ``None`` for an unknown message.

        Inline, straight from SQLite's values (:func:`_receipts_answer`); the ordinary way through
        :class:`reads.MessageReceipts` and ``responses.receipts_answer``.
        """
        rows = self._raw(self._receipts, self._receipts_parameters(message_id))
        if rows is not None:
            try:
                return _receipts_answer(message_id, rows)
            except _Unusual:
                found = reads.receipts_from_rows(message_id, self._receipts.convert(rows))
        else:
            async with self._engine.connect() as connection:
                found = await reads.receipts_of(connection, message_id)
        return None if found is None else responses.receipts_answer(found)

    async def unread_by(self, message_id: int, conversation_id: str, sender: str | None) -> UnreadBy:
        """``conversations.unread_by``: its statements inline, each within the budget, else all the ordinary way."""
        if self._path is not None:
            steps = conversations.unread_by_steps(message_id, conversation_id, sender)
            try:
                statement, given = next(steps)
                while True:
                    rows = self._inline(self._query(statement), **_as_stored(given))
                    if rows is None:
                        break
                    statement, given = steps.send(rows)
            except StopIteration as done:
                answer: UnreadBy = done.value
                return answer
        async with self._engine.connect() as connection:
            return await conversations.unread_by(connection, message_id, conversation_id, sender)

    def close(self) -> None:
        self._reading = None
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _inline(self, query: CompiledQuery, **given: Any) -> list[tuple[Any, ...]] | None:
        """The rows of ``query``, converted, or ``None`` when it must take the ordinary way."""
        rows = self._raw(query, query.parameters(**given))
        return None if rows is None else query.convert(rows)

    def _raw(self, query: CompiledQuery, parameters: tuple[Any, ...]) -> list[tuple[Any, ...]] | None:
        """The rows of ``query`` as SQLite gives them, or ``None`` when it must take the ordinary way."""
        if self._path is None:
            return None
        try:
            connection = self._connection or self._connect(self._path)
            if self._shared and self._reading is not connection:
                self._snapshot(connection)
            self._deadline = time.perf_counter() + self._budget
            sql = self._texts.get(id(query), query.sql)
            rows: list[tuple[Any, ...]] = connection.execute(sql, parameters).fetchall()
        except sqlite3.Error as error:
            over_budget = time.perf_counter() >= self._deadline and "interrupt" in str(error)
            reason = "over_budget" if over_budget else "error"
            if over_budget:
                self._interrupted(query)
            else:
                log.info("inline lookup failed (%s); asking the pool instead", error)
                self.close()  # a fresh connection next time, should this one be broken
            if self._metrics is not None:
                self._metrics.inline_read_fallbacks.labels(reason=reason).inc()
            return None
        return rows

    def _snapshot(self, connection: sqlite3.Connection) -> None:
        """Open a read transaction on ``connection`` for the rest of this turn of the loop (see the module)."""
        self._deadline = time.perf_counter() + self._budget
        # Queued first: a snapshot is never open without the callback that ends it.
        asyncio.get_running_loop().call_soon(self._end_snapshot, connection)
        connection.execute("BEGIN")  # deferred: the lookup's statement takes the snapshot
        self._reading = connection

    def _end_snapshot(self, connection: sqlite3.Connection) -> None:
        if self._reading is connection:
            self._reading = None
        try:
            if connection.in_transaction:
                # The progress handler also watches COMMIT (its count of steps runs on across a
                # cached statement's runs): a budget of its own, not the last lookup's, long past.
                self._deadline = time.perf_counter() + self._budget
                connection.execute("COMMIT")
        except sqlite3.ProgrammingError:
            pass  # closed since (:meth:`close`): its snapshot ended with it
        except sqlite3.Error as error:
            log.info("inline lookups: cannot end a read transaction (%s); opening a new connection", error)
            if connection is self._connection:
                self.close()

    def _query(self, statement: Select[*tuple[Any, ...]] | CompoundSelect[*tuple[Any, ...]]) -> CompiledQuery:
        known = self._compiled.get(id(statement))
        if known is None:
            # The statement is kept with its compiled form: its id is not reused while it is known.
            known = self._compiled[id(statement)] = (statement, CompiledQuery.of(statement, self._dialect))
        return known[1]

    def _interrupted(self, query: CompiledQuery) -> None:
        """Run ``query`` as new SQL text from now on: its cached statement may be unusable.

        CPython 3.11's ``sqlite3`` marks a cached statement free again only when
        ``sqlite3_reset`` returns ``SQLITE_OK``, and the first reset after a step that was
        interrupted returns ``SQLITE_INTERRUPT``. When the interruption comes while rows are
        fetched, that first reset is the last one: the statement stays "in use" in the
        connection's cache, and every later run of the same text compiles a fresh statement
        (about 100 µs for the receipts query, five times what running it costs). A comment
        makes the text new, so it is compiled once and cached again; the stale entry ages out
        of the cache. Reopening the connection would cost more (about 2 ms: the schema is
        read again).
        """
        self._interruptions += 1
        self._texts[id(query)] = f"/* {self._interruptions} */ {query.sql}"

    def _connect(self, path: Path) -> sqlite3.Connection:
        # query_only: never write. busy_timeout=0: a lookup that would wait for a lock is
        # better answered by the pool, which may wait.
        connection = open_sqlite(path, ["PRAGMA query_only=ON", "PRAGMA busy_timeout=0"])
        connection.set_progress_handler(self._over_budget, PROGRESS_STEP)
        # The service's connections put the file in WAL mode. In another mode a read transaction
        # would hold the writer for the rest of the turn: each statement is then its own.
        (mode,) = connection.execute("PRAGMA journal_mode").fetchone()
        self._shared = str(mode).lower() == "wal"
        self._connection = connection
        return connection

    def _over_budget(self) -> bool:
        return time.perf_counter() >= self._deadline


class _Unusual(ValueError):
    """A stored instant not in the text :class:`presence.db.models.Instant` writes: read it the ordinary way."""


def _instant(stored: str | None) -> str | None:
    """A stored instant as every answer writes it (``format_instant``), without a ``datetime`` between.

    SQLite holds ``2026-11-21 10:15:30.123456`` (UTC, microseconds, fixed width); the answer is
    ``2026-11-21T10:15:30.123Z``: the same digits, the microseconds cut to milliseconds as
    ``isoformat(timespec="milliseconds")`` cuts them. Fixed width also keeps text order equal
    to time order, which :func:`_earliest` relies on. Any other text raises :class:`_Unusual`.
    """
    if stored is None:
        return None
    if len(stored) != _STORED_WIDTH or stored[10] != " " or stored[19] != "." or not stored[20:].isdigit():
        raise _Unusual(stored)
    return f"{stored[:10]}T{stored[11:23]}Z"


_STORED_WIDTH: Final = len("2026-11-21 10:15:30.123456")


def _earliest(*instants: str | None) -> str | None:
    """``reads._earliest`` over answers' instants (fixed width: text order is time order)."""
    return min((each for each in instants if each is not None), default=None)


def _presence_answer(rows: list[tuple[Any, ...]], floor: bytes | None) -> responses.Presence | None:
    """``responses.presence_answer(reads.as_of(presence, floor))`` from the raw rows of ``PRESENCE_OF``."""
    if not rows:
        return None
    uid, status, status_updated_at, last_seen_at, _, _, _, _, source, status_key, _ = rows[0]
    connections = []
    live = 0
    if len(rows) > 1:
        rows = sorted(rows, key=_connection_order)
    for row in rows:
        session_id = row[4]
        if session_id is None:
            continue  # the user's row without a live session
        live += 1
        if floor is None or row[10] >= floor:
            connections.append(
                responses.Connection(
                    session_id=session_id, device_id=row[5], platform=row[6], connected_at=_instant(row[7])
                )
            )
    if floor is not None:
        status, source = answered_status(status, source, status_key, floor, live=live, fresh=len(connections))
    last_seen = _instant(last_seen_at)
    assert last_seen is not None, "last_seen_at is NOT NULL"
    return responses.Presence(
        uid=uid,
        status=status,
        status_updated_at=_instant(status_updated_at),
        last_seen_at=last_seen,
        connections=connections,
        status_source=responses.status_source(source),
    )


def _connection_order(row: tuple[Any, ...]) -> tuple[bool, str, str]:
    """``reads.connection_order`` over a raw row of ``PRESENCE_OF`` (fixed-width instants: text order is time order)."""
    return row[7] is None, row[7] or "", row[4]


def _receipts_answer(message_id: int, rows: list[tuple[Any, ...]]) -> responses.MessageReceipts | None:
    """``responses.receipts_answer(reads.receipts_from_rows(message_id, rows))`` from raw rows of ``RECEIPTS_OF``."""
    own: tuple[Any, ...] | None = None
    readers: list[tuple[str, str | None, str | None]] = []
    for row in rows:
        reader = row[2]
        if reader is None:
            own = row
            continue
        delivered_at, read_at = _instant(row[3]), _instant(row[4])
        if delivered_at is None and read_at is None:
            continue
        readers.append((reader, _earliest(delivered_at, read_at), read_at))
    if own is None:
        return None
    readers.sort(key=_by_uid)
    conversation_id, sender = own[0], own[1]
    group_delivered_at, flagged_delivered_at = _instant(own[7]), _instant(own[9])
    group_read_at, flagged_read_at = _instant(own[10]), _instant(own[12])
    read_by_all = group_read_at is not None or bool(own[11])
    read_by_all_at = _earliest(group_read_at, flagged_read_at)
    return responses.MessageReceipts(
        message_id=str(message_id),
        conversation_id=conversation_id,
        sender=sender,
        receipts=[responses.Receipt(uid=uid, delivered_at=delivered, read_at=read) for uid, delivered, read in readers],
        delivered_count=sum(1 for _, delivered, _ in readers if delivered is not None),
        read_count=sum(1 for _, _, read in readers if read is not None),
        edited_at=_instant(own[5]),
        deleted_at=_instant(own[6]),
        delivered_to_all=read_by_all or group_delivered_at is not None or bool(own[8]),
        delivered_to_all_at=_earliest(group_delivered_at, flagged_delivered_at, read_by_all_at),
        read_by_all=read_by_all,
        read_by_all_at=read_by_all_at,
    )


def _by_uid(reader: tuple[str, str | None, str | None]) -> str:
    return reader[0]


def _as_stored(given: dict[str, Any]) -> dict[str, Any]:
    """``given`` with each instant in the text SQLite stores (``Instant``'s bind processor's form).

    The pool binds through SQLAlchemy's processors; a raw ``sqlite3`` parameter would be the
    ``datetime``'s own text (``… 11:06:40+00:00``), which compares below the stored
    ``… 11:06:40.000000`` of the same second.
    """
    return {name: sqlite_moment(value) if isinstance(value, datetime) else value for name, value in given.items()}
