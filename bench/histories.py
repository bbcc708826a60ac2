"""Long histories behind one answer, written through the service's own writer.

Rows R1/R2, S1/S2 and T1/T2 time a query whose answer stays the same while the
history behind it grows a hundred-thousandfold (docs/benchmarks.md):

- :func:`seed_receipts`: message 1 of a one-to-one conversation, then one reader's read
  receipts of messages 1 … N, each read after the one before (so no receipt dominates another
  and the service keeps all N); ``GET /messages/1/receipts``.
- :func:`seed_superseded_sessions`: one user whose N sessions connected one after another were
  all ended by a newer snapshot that lists one other session; ``GET /users/many/presence`` and
  ``GET /stats``.

The events go through the pure core and :class:`presence.db.writes.Writer`, as intake's
commits do, in batches of :data:`BATCH` events, so the rows are what intake would store.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy.dialects import sqlite

from presence.core.events import Event
from presence.core.facts import changes_of
from presence.core.parse import parse_event
from presence.db.writes import Writer
from tests.support import payloads

BATCH = 500
START_MS = 1_795_000_000_000
CONVERSATION = "reader_user_writer"
MANY_SESSIONS_UID = "many"


def receipt_events(receipts: int) -> Iterator[Event]:
    yield parse_event(payloads.message(1, CONVERSATION, "writer", receiver="reader", sent_at=START_MS // 1000))
    for m in range(1, receipts + 1):
        at = START_MS // 1000 + m
        yield parse_event(
            payloads.receipt("read", m, reader="reader", message_sender="writer", at=at, receiver="writer")
        )


def superseded_session_events(sessions: int) -> Iterator[Event]:
    for n in range(sessions):
        session = payloads.device(f"s{n}", connected_at=START_MS + n, platform="web")
        yield parse_event(payloads.connection(MANY_SESSIONS_UID, "connected", START_MS + n, session))
    kept = payloads.device("kept", connected_at=START_MS + sessions, platform="ios")
    yield parse_event(
        payloads.connection(MANY_SESSIONS_UID, "connected", START_MS + sessions + 1, kept, connections=[kept])
    )


def write(path: Path, events: Iterator[Event]) -> None:
    """Commit ``events`` to the migrated SQLite database at ``path``, :data:`BATCH` a transaction."""
    writer = Writer(sqlite.dialect())
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("PRAGMA synchronous=OFF")  # seeding is not measured
        batch: list[Event] = []
        for event in events:
            batch.append(event)
            if len(batch) >= BATCH:
                _commit(connection, writer, batch)
        _commit(connection, writer, batch)
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        connection.close()


def _commit(connection: sqlite3.Connection, writer: Writer, batch: list[Event]) -> None:
    if not batch:
        return
    connection.execute("BEGIN IMMEDIATE")
    for statement in writer.statements((), changes_of((event, START_MS) for event in batch)):
        connection.executemany(statement.sql, statement.rows)
    connection.execute("COMMIT")
    batch.clear()


def seed_receipts(path: Path, receipts: int) -> list[str]:
    write(path, receipt_events(receipts))
    return ["/messages/1/receipts"]


def seed_superseded_sessions(path: Path, sessions: int) -> list[str]:
    write(path, superseded_session_events(sessions))
    return [f"/users/{MANY_SESSIONS_UID}/presence"]
