"""What a query costs grows with what it answers, not with the history behind it.

No timings: each test counts the work a query does, on the database's own terms (on PostgreSQL
the rows every node of ``EXPLAIN ANALYZE`` produced, on SQLite the virtual-machine instructions it
ran), once on a small history and once on one a hundred times larger that answers the same, and
asserts that the larger costs about the same. The benchmark (``bench/``, rows R1/R2 and S1/S2)
times the same cases.
"""

from __future__ import annotations

import functools
import json
import sqlite3
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import pytest
from sqlalchemy import CompoundSelect, Select, func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from presence.core.events import Event
from presence.core.facts import changes_of
from presence.core.parse import parse_event
from presence.db import reads
from presence.db.engine import sqlite_file
from presence.db.models import Receipt, UserSession
from presence.db.writes import Writer
from tests.support import payloads
from tests.support.databases import Databases

BASE_MS = 1_795_256_130_000
BASE_S = BASE_MS // 1000
#: When the service received the events these tests write directly.
RECEIVED_MS = BASE_MS + 60_000
SMALL, BIG = 20, 2000
CONVERSATION = "reader_user_writer"


@pytest.fixture
async def engine(databases: Databases) -> AsyncIterator[AsyncEngine]:
    url = await databases.fresh()
    engine = create_async_engine(url)
    try:
        yield engine
    finally:
        await engine.dispose()
        await databases.drop(url)


async def _apply(engine: AsyncEngine, events: list[Event]) -> None:
    async with engine.begin() as connection:
        await Writer(engine.dialect).apply(connection, changes_of((event, RECEIVED_MS) for event in events))


def _plan_rows(node: Mapping[str, Any]) -> int:
    """Rows produced by a plan node and every node under it, over all its loops."""
    own = int(node.get("Actual Rows", 0)) * int(node.get("Actual Loops", 1))
    return own + sum(_plan_rows(child) for child in node.get("Plans", ()))


async def work(
    engine: AsyncEngine,
    statement: Select[*tuple[Any, ...]] | CompoundSelect[*tuple[Any, ...]],
    parameters: Mapping[str, Any],
) -> int:
    """The work ``statement`` does: rows through its plan (PostgreSQL), VM instructions (SQLite)."""
    literal = _with_literals(statement, engine, parameters)
    if engine.dialect.name == "postgresql":
        async with engine.connect() as connection:
            raw = (await connection.execute(text(f"EXPLAIN (ANALYZE, FORMAT JSON) {literal}"))).scalar_one()
        plan = json.loads(raw) if isinstance(raw, str) else raw
        return _plan_rows(plan[0]["Plan"])
    return _sqlite_steps(engine, lambda database: database.execute(literal).fetchall())


def _sqlite_steps(engine: AsyncEngine, run: Callable[[sqlite3.Connection], object]) -> int:
    """SQLite virtual-machine instructions ``run`` takes on a connection of its own, in a transaction rolled back."""
    path = sqlite_file(engine)
    assert path is not None
    database = sqlite3.connect(path, isolation_level=None)
    steps = 0

    def count() -> int:
        nonlocal steps
        steps += 1
        return 0

    try:
        database.execute("BEGIN")
        database.set_progress_handler(count, 1)
        run(database)
        database.set_progress_handler(None, 1)
        database.execute("ROLLBACK")
    finally:
        database.close()
    return steps


def _with_literals(
    statement: Select[*tuple[Any, ...]] | CompoundSelect[*tuple[Any, ...]],
    engine: AsyncEngine,
    parameters: Mapping[str, Any],
) -> str:
    bound = statement.params(**parameters)
    return str(bound.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True}))


def _receipts(reader: str, message_ids: range, at: Callable[[int], int], kind: str = "read") -> list[Event]:
    return [
        parse_event(payloads.receipt(kind, m, reader=reader, message_sender="writer", at=at(m), receiver="writer"))
        for m in message_ids
    ]


async def _receipts_work(engine: AsyncEngine, later_receipts: int) -> int:
    message = parse_event(payloads.message(1, CONVERSATION, "writer", receiver="reader", sent_at=BASE_S))
    # The reader reads every message as it comes: no receipt dominates another, all are kept.
    await _apply(engine, [message, *_receipts("reader", range(1, later_receipts + 1), lambda m: BASE_S + m)])
    async with engine.connect() as connection:
        answer = await reads.receipts_of(connection, 1)
    assert answer is not None
    assert [(r.uid, r.read_at is not None) for r in answer.receipts] == [("reader", True)]
    return await work(engine, reads.RECEIPTS_OF, {"message_id": 1})


async def test_a_message_s_receipts_cost_what_its_readers_cost_not_their_later_receipts(
    databases: Databases,
) -> None:
    """Issue 1: a hundred times more later receipts from the one reader, about the same work."""
    costs = []
    for later in (SMALL, BIG):
        url = await databases.fresh()
        engine = create_async_engine(url)
        try:
            costs.append(await _receipts_work(engine, later))
        finally:
            await engine.dispose()
            await databases.drop(url)
    small, big = costs
    assert big <= 2 * small, f"work {small} with {SMALL} later receipts, {big} with {BIG}"


async def test_a_receipt_dominated_by_a_stored_one_is_not_kept_and_one_that_dominates_replaces_them(
    engine: AsyncEngine,
) -> None:
    """Each later message read earlier than the one before: every new receipt dominates all stored ones."""
    await _apply(engine, [parse_event(payloads.message(1, CONVERSATION, "writer", receiver="reader"))])
    for m in range(1, 51):
        await _apply(engine, _receipts("reader", range(m, m + 1), lambda m: BASE_S + 1000 - m))
    # Dominated on arrival: message 10 read later than message 50 was.
    await _apply(engine, _receipts("reader", range(10, 11), lambda _: BASE_S + 5000))
    async with engine.connect() as connection:
        kept = (await connection.execute(select(Receipt.message_id, Receipt.kind))).all()
        answer = await reads.receipts_of(connection, 1)
    assert sorted(kept) == [(50, "read")]
    assert answer is not None
    [receipt] = answer.receipts
    assert receipt.read_at is not None
    assert int(receipt.read_at.timestamp()) == BASE_S + 1000 - 50


def _superseded_history(uid: str, sessions: int) -> tuple[list[Event], list[Event], list[Event]]:
    """``sessions`` sessions connected one after another, then a snapshot that lists only the last.

    Returned as (sessions before the snapshot, the snapshot, sessions delivered after it although
    older): the flag of a late signal must be cleared too.
    """
    connected = [
        parse_event(
            payloads.connection(uid, "connected", BASE_MS + n, payloads.device(f"{uid}-s{n}", connected_at=BASE_MS + n))
        )
        for n in range(sessions)
    ]
    kept = payloads.device(f"{uid}-kept", connected_at=BASE_MS + sessions, platform="ios")
    snapshot = parse_event(payloads.connection(uid, "connected", BASE_MS + sessions + 1, kept, connections=[kept]))
    return connected[::2], [snapshot], connected[1::2]


async def _presence_work(databases: Databases, superseded: int) -> tuple[int, int, int]:
    url = await databases.fresh()
    engine = create_async_engine(url)
    try:
        before, snapshot, late = _superseded_history("many", superseded)
        await _apply(engine, before)
        await _apply(engine, snapshot)
        for start in range(0, len(late), 500):
            await _apply(engine, late[start : start + 500])
        async with engine.connect() as connection:
            presence = await reads.presence_of(connection, "many")
            flagged = (
                await connection.execute(
                    select(func.count()).select_from(UserSession).where(UserSession.live.is_(True))
                )
            ).scalar_one()
            counts = await reads.stats(connection)
        assert presence is not None
        assert [c.session_id for c in presence.connections] == ["many-kept"]
        assert counts.connections_by_platform == {"ios": 1}
        return (
            await work(engine, reads.PRESENCE_OF, {"uid": "many"}),
            await work(engine, reads.CONNECTIONS_BY_PLATFORM, {}),
            flagged,
        )
    finally:
        await engine.dispose()
        await databases.drop(url)


async def test_sessions_a_newer_snapshot_ended_cost_nothing_to_presence_or_stats(databases: Databases) -> None:
    """Issue 2: a hundred times more superseded sessions, about the same work; only live sessions stay flagged."""
    small_presence, small_stats, small_flagged = await _presence_work(databases, SMALL)
    big_presence, big_stats, big_flagged = await _presence_work(databases, BIG)
    assert (small_flagged, big_flagged) == (1, 1)
    assert big_presence <= 2 * small_presence, f"presence: {small_presence} with {SMALL}, {big_presence} with {BIG}"
    assert big_stats <= 2 * small_stats, f"stats: {small_stats} with {SMALL}, {big_stats} with {BIG}"


def _constant(value: int, _message_id: int) -> int:
    return value


async def write_work(engine: AsyncEngine, events: list[Event]) -> int:
    """The work of committing ``events`` (rolled back): rows through each plan, or VM instructions."""
    statements = Writer(engine.dialect).statements((), changes_of((event, RECEIVED_MS) for event in events))
    if engine.dialect.name == "postgresql":
        rows_through = 0
        async with engine.connect() as connection:
            for statement in statements:
                for row in statement.rows:
                    result = await connection.exec_driver_sql(f"EXPLAIN (ANALYZE, FORMAT JSON) {statement.sql}", row)
                    raw = result.scalar_one()
                    rows_through += _plan_rows((json.loads(raw) if isinstance(raw, str) else raw)[0]["Plan"])
            await connection.rollback()
        return rows_through

    def write(database: sqlite3.Connection) -> None:
        for statement in statements:
            database.executemany(statement.sql, statement.rows)

    return _sqlite_steps(engine, write)


@pytest.mark.parametrize("newest", ["on top", "dominating the latest steps"])
async def test_a_new_receipt_costs_the_same_whatever_the_reader_s_staircase_below_it(
    databases: Databases, newest: str
) -> None:
    """Writing a receipt reads the steps next to it and those it removes, never the whole staircase."""
    costs = []
    for steps in (SMALL, BIG):
        url = await databases.fresh()
        engine = create_async_engine(url)
        try:
            await _apply(engine, _receipts("reader", range(1, steps + 1), lambda m: BASE_S + m))
            # On top: read after every other. Dominating: message steps + 1 read before the last 3 were.
            at = BASE_S + steps + 1 if newest == "on top" else BASE_S + steps - 3
            receipt = _receipts("reader", range(steps + 1, steps + 2), functools.partial(_constant, at))
            costs.append(await write_work(engine, receipt))
        finally:
            await engine.dispose()
            await databases.drop(url)
    small, big = costs
    assert big <= 2 * small, f"work {small} on {SMALL} steps, {big} on {BIG}"
