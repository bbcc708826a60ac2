"""Many stored users, fast: seeding ``user_presence`` and ``user_session`` through SQL, not HTTP.

Posting a million connection events would take longer than the benchmark
itself, so the query-latency rows start from a database that ``presence
migrate`` made and this module filled in one transaction. Every row holds what
intake would have written (see ``presence/core/facts.py``):

- ``status_key``, ``status_updated_key``, ``signal_key``, ``snapshot_key``: 25-byte order keys, 8 bytes
  of the event time in milliseconds (big-endian), 1 tie byte (0 connected,
  1 disconnected), 16 bytes standing for the event's digest (random, seeded);
- instants in the text form SQLAlchemy's SQLite ``DateTime`` writes
  (``YYYY-MM-DD HH:MM:SS.ffffff``, UTC);
- each session received when its newest signal was sent (``received_at``, which retention reads);
- each user has one live session whose key equals the user's snapshot key (so
  it is live), and every third user also has an older, ended session.

Users are named ``big-user-0000000`` … so that :func:`uid` names any of them.
"""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from presence.core.facts import make_order_key
from presence.db.driver import sqlite_instant

START_MS = 1_795_000_000_000
PLATFORMS = ("web", "android", "ios")


def uid(number: int) -> str:
    return f"big-user-{number:07d}"


def _rows(users: int, seed: int) -> Iterator[tuple[tuple[Any, ...], list[tuple[Any, ...]]]]:
    rng = random.Random(seed)  # noqa: S311 - seeded test data, not secrets
    for number in range(users):
        name = uid(number)
        connected_ms = START_MS + rng.randrange(0, 86_400_000)
        at_ms = connected_ms + 3
        key = make_order_key(at_ms, "connected", rng.randbytes(16))  # a digest is 16 bytes no other event shares
        platform = PLATFORMS[number % 3]
        at = sqlite_instant(at_ms)
        user = (name, "online", at, key, at, key, key, "webhook")  # the status event dates the status too
        sessions: list[tuple[Any, ...]] = [
            (name, f"{name}-s1", key, 1, f"{name}-d1", platform, sqlite_instant(connected_ms), None, at)
        ]
        if number % 3 == 0:
            ended_ms = connected_ms - 600_000
            old_key = make_order_key(ended_ms, "disconnected", rng.randbytes(16))
            sessions.append(
                (
                    name,
                    f"{name}-s0",
                    old_key,
                    0,
                    f"{name}-d0",
                    "web",
                    sqlite_instant(ended_ms - 60_000),
                    sqlite_instant(ended_ms),
                    sqlite_instant(ended_ms),
                )
            )
        yield user, sessions


def seed_sqlite(path: Path, users: int, *, seed: int = 1) -> int:
    """Add ``users`` users (and their sessions) to the migrated SQLite database at ``path``; return sessions added."""
    connection = sqlite3.connect(path)
    sessions_added = 0
    try:
        connection.execute("PRAGMA synchronous=OFF")  # seeding is not measured; the data is checkpointed below
        user_rows: list[tuple[Any, ...]] = []
        session_rows: list[tuple[Any, ...]] = []
        with connection:
            for user, sessions in _rows(users, seed):
                user_rows.append(user)
                session_rows.extend(sessions)
                if len(user_rows) >= 50_000:
                    sessions_added += _flush(connection, user_rows, session_rows)
            sessions_added += _flush(connection, user_rows, session_rows)
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        connection.close()
    return sessions_added


def _flush(connection: sqlite3.Connection, users: list[tuple[Any, ...]], sessions: list[tuple[Any, ...]]) -> int:
    connection.executemany(
        "INSERT INTO user_presence (uid, status, status_updated_at, status_key, last_seen_at, snapshot_key,"
        " status_updated_key, status_source) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        users,
    )
    connection.executemany(
        "INSERT INTO user_session (uid, session_id, signal_key, live, device_id, platform, connected_at, "
        "disconnected_at, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        sessions,
    )
    added = len(sessions)
    users.clear()
    sessions.clear()
    return added
