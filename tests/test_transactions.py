"""The transaction layer's bounds: a commit's timeout counts from when its work starts."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from presence.db.driver import CompiledQuery, Query, Step
from presence.db.engine import SQLITE_WAL_AUTOCHECKPOINT_PAGES
from presence.db.transactions import SqliteTransactions

#: Longer than any wait below: a gate that is never opened fails the test instead of hanging it.
GATE_LIMIT = 10.0


class GatedWriter(SqliteTransactions):
    """The SQLite writer, each of whose transactions waits on the writer thread for its own gate."""

    def __init__(self, path: Path, *, timeout: float, gates: int) -> None:
        super().__init__(path, synchronous="FULL", timeout=timeout)
        self.gates = [threading.Event() for _ in range(gates)]
        self.started = 0

    def _transaction(self, statements: Sequence[Step]) -> None:
        gate = self.gates[self.started]
        self.started += 1
        assert gate.wait(GATE_LIMIT)
        super()._transaction(statements)

    def open_later(self, gate: int, seconds: float) -> None:
        asyncio.get_running_loop().call_later(seconds, self.gates[gate].set)


@pytest.fixture
def database(tmp_path: Path) -> Path:
    path = tmp_path / "writer.db"
    with contextlib.closing(sqlite3.connect(path)) as plain:
        plain.execute("CREATE TABLE t (x)")
    return path


async def test_waiting_for_the_writer_is_not_charged_to_the_next_transaction(database: Path) -> None:
    """Each transaction takes 0.6 s of a 1 s timeout; the second also waits 0.6 s for the first.

    Counted from submission, the second would time out at 1 s, before its work ends at 1.2 s.
    """
    writer = GatedWriter(database, timeout=1.0, gates=2)
    await writer.start()
    try:
        writer.open_later(0, 0.6)
        writer.open_later(1, 1.2)
        first = asyncio.create_task(writer.run([]))
        second = asyncio.create_task(writer.run([]))
        await asyncio.gather(first, second)
        assert writer.started == 2
    finally:
        await writer.close()


async def test_a_transaction_that_could_not_start_in_time_is_dropped_not_run_later(database: Path) -> None:
    """What was answered "not committed" because the writer stayed busy never commits afterwards."""
    writer = GatedWriter(database, timeout=0.3, gates=2)
    await writer.start()
    try:
        writer.open_later(0, 0.8)
        writer.gates[1].set()  # the second would commit at once, were it ever started
        first = asyncio.create_task(writer.run([]))
        second = asyncio.create_task(writer.run([]))
        with pytest.raises(TimeoutError):
            await second  # 0.3 s waiting for the writer, then given up
        with pytest.raises(TimeoutError):
            await first  # its own work outlasted the timeout: it runs on to its end on the thread
        await asyncio.sleep(0.7)  # the first ends on the thread at 0.8 s
        await writer.run([])  # and the writer takes work again
        assert writer.started == 2  # the first and this one; the second never ran
    finally:
        await writer.close()


async def test_the_writer_commits_with_the_writers_settings(database: Path) -> None:
    """WAL, ``synchronous`` as configured, statement journals in memory, checkpoints every so many pages.

    Read on the writer's own connection, inside one of its transactions.
    """
    seen: dict[str, object] = {}

    def read(name: str) -> Query:
        def keep(rows: list[tuple[Any, ...]]) -> list[Step]:
            seen[name] = rows[0][0]
            return []

        return Query(CompiledQuery(f"PRAGMA {name}", (), {}, (None,)), (), keep)

    names = ("journal_mode", "synchronous", "temp_store", "wal_autocheckpoint")
    writer = SqliteTransactions(database, synchronous="EXTRA", timeout=5.0)
    await writer.start()
    try:
        await writer.run([read(name) for name in names])
    finally:
        await writer.close()
    # synchronous: 3 is EXTRA; temp_store: 2 is MEMORY.
    assert seen == {
        "journal_mode": "wal",
        "synchronous": 3,
        "temp_store": 2,
        "wal_autocheckpoint": SQLITE_WAL_AUTOCHECKPOINT_PAGES,
    }
