"""Writers racing on the same rows never lose an update nor let an older event win.

Two engines stand for two replicas: each applies its events in its own
transactions, at the same moment as the other, on the same user, the same
sessions and the same conversation. After every round the stored answers must
equal the in-order truth of everything applied so far.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from presence.core.facts import changes_of
from presence.core.parse import parse_event
from presence.db import reads
from presence.db.driver import execute
from presence.db.engine import create_engine
from presence.db.recording import ChangeSink
from presence.db.writes import Writer
from presence.http.responses import presence_answer, receipts_answer
from tests.support import payloads
from tests.support.api import make_settings
from tests.support.databases import Databases
from tests.support.oracle import expected_presence, expected_receipts

ROUNDS = 60
BASE_MS = 1_795_256_130_000
#: When the service received the events these tests apply directly.
RECEIVED_MS = BASE_MS + 60_000


@pytest.fixture
async def engines(database_url: str) -> AsyncIterator[tuple[AsyncEngine, AsyncEngine]]:
    first, second = create_engine(make_settings(database_url)), create_engine(make_settings(database_url))
    yield first, second
    await first.dispose()
    await second.dispose()


async def _apply(engine: AsyncEngine, bodies: list[dict[str, Any]]) -> None:
    writer = Writer(engine.dialect)
    for body in bodies:
        async with engine.begin() as connection:
            await writer.apply(connection, changes_of([(parse_event(body), RECEIVED_MS)]))


async def _answers(engine: AsyncEngine) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    async with engine.connect() as connection:
        presence = await reads.presence_of(connection, "racer")
        receipts = await reads.receipts_of(connection, 10)
    return (
        None if presence is None else msgspec.to_builtins(presence_answer(presence)),
        None if receipts is None else msgspec.to_builtins(receipts_answer(receipts)),
    )


def _round(rng: random.Random, round_number: int) -> list[dict[str, Any]]:
    """Events on one user and one conversation, with times that collide across the two writers."""
    bodies = []
    for _ in range(4):
        at = BASE_MS + rng.randrange(0, 6) * 1000 + round_number * 10_000
        session = payloads.device(rng.choice(("s1", "s2", "s3")), connected_at=at - 500)
        snapshot = [session] if rng.random() < 0.5 else None
        kind = rng.choice(("connected", "disconnected"))
        bodies.append(payloads.connection("racer", kind, at, session, connections=snapshot))
    for _ in range(2):
        message_id = rng.choice((9, 10, 11))
        bodies.append(
            payloads.receipt(
                rng.choice(("delivered", "read")),
                message_id,
                reader="reader",
                message_sender="writer",
                at=1_795_256_130 + rng.randrange(0, 100),
                receiver="writer",
            )
        )
    return bodies


async def test_two_writers_racing_on_one_user_and_conversation_lose_nothing(
    engines: tuple[AsyncEngine, AsyncEngine],
) -> None:
    """Contract §2 under concurrency: racing transactions end as the in-order truth, round after round."""
    rng = random.Random(20261121)
    first, second = engines
    applied: list[dict[str, Any]] = [payloads.message(10, "reader_user_writer", "writer", receiver="reader")]
    await _apply(first, applied)
    for round_number in range(ROUNDS):
        bodies = _round(rng, round_number)
        rng.shuffle(bodies)
        await asyncio.gather(_apply(first, bodies[::2]), _apply(second, bodies[1::2]))
        applied += bodies
        expected = (expected_presence(applied).get("racer"), expected_receipts(applied).get("10"))
        assert await _answers(first) == expected, f"round {round_number}"
        assert await _answers(second) == expected, f"round {round_number}"


async def _wait_until_blocked(observer: AsyncEngine, deadline: float = 10.0) -> None:
    """Until some session of this database waits for a lock: the second writer is queued behind the first."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + deadline
    query = text(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    while loop.time() < give_up:
        async with observer.connect() as connection:
            if (await connection.execute(query)).scalar_one() > 0:
                return
        await asyncio.sleep(0.01)
    raise AssertionError("the second writer never waited for the first one's row lock")


@pytest.mark.postgres
@pytest.mark.parametrize("first_is_newer", [True, False])
async def test_a_writer_blocked_on_a_row_lock_keeps_the_newer_event(
    postgres_databases: Databases, first_is_newer: bool
) -> None:
    """PostgreSQL: the second upsert waits for the first's lock, then re-checks the WHERE against the committed row."""
    url = await postgres_databases.fresh()
    first, second, observer = (create_engine(make_settings(url)) for _ in range(3))
    try:
        session = payloads.device("s1", connected_at=BASE_MS)
        older = payloads.connection("racer", "connected", BASE_MS + 1000, session, connections=[session])
        newer = payloads.connection("racer", "disconnected", BASE_MS + 2000, session, connections=[])
        early, late = (newer, older) if first_is_newer else (older, newer)
        writer = Writer(first.dialect)
        async with first.begin() as holder:
            await writer.apply(holder, changes_of([(parse_event(early), RECEIVED_MS)]))
            blocked = asyncio.create_task(_apply(second, [late]))
            await _wait_until_blocked(observer)
            assert not blocked.done()
        await blocked
        expected = expected_presence([older, newer])["racer"]
        assert (await _answers(observer))[0] == expected
        assert expected["status"] == "offline"
        assert expected["connections"] == []
    finally:
        for engine in (first, second, observer):
            await engine.dispose()
        await postgres_databases.drop(url)


async def _receipt_rows(engine: AsyncEngine) -> list[tuple[str, int]]:
    async with engine.connect() as connection:
        rows = await connection.execute(text("SELECT kind, message_id FROM receipt ORDER BY kind, message_id"))
        return [(row.kind, row.message_id) for row in rows]


@pytest.mark.postgres
@pytest.mark.parametrize("dominating_first", [True, False])
async def test_receipts_that_dominate_each_other_in_concurrent_transactions_leave_one_staircase(
    postgres_databases: Databases, dominating_first: bool
) -> None:
    """PostgreSQL: a receipt committed while another that dominates it (or that it dominates) is in flight.

    The second transaction waits for the first's lock on the reader's watermark row before it reads
    the reader's receipts, so the dominated one never survives (docs/design.md, "Receipts").
    """
    url = await postgres_databases.fresh()
    first, second, observer = (create_engine(make_settings(url)) for _ in range(3))
    try:
        base_s = BASE_MS // 1000
        message = payloads.message(5, "reader_user_writer", "writer", receiver="reader")
        await _apply(observer, [message])
        # Message 7 read before message 5 was: the receipt for 7 dominates the one for 5.
        dominated = payloads.receipt(
            "read", 5, reader="reader", message_sender="writer", at=base_s + 10, receiver="writer"
        )
        dominating = payloads.receipt(
            "read", 7, reader="reader", message_sender="writer", at=base_s + 8, receiver="writer"
        )
        early, late = (dominating, dominated) if dominating_first else (dominated, dominating)
        writer = Writer(first.dialect)
        async with first.begin() as holder:
            await writer.apply(holder, changes_of([(parse_event(early), RECEIVED_MS)]))
            blocked = asyncio.create_task(_apply(second, [late]))
            await _wait_until_blocked(observer)
            assert not blocked.done()
        await blocked
        assert await _receipt_rows(observer) == [("read", 7)]
        async with observer.connect() as connection:
            answer = await reads.receipts_of(connection, 5)
        assert answer is not None
        assert msgspec.to_builtins(receipts_answer(answer)) == expected_receipts([message, early, late])["5"]
    finally:
        for engine in (first, second, observer):
            await engine.dispose()
        await postgres_databases.drop(url)


@pytest.mark.postgres
@pytest.mark.parametrize("dominating_first", [True, False])
async def test_group_aggregates_that_dominate_each_other_in_concurrent_transactions_leave_one_staircase(
    postgres_databases: Databases, dominating_first: bool
) -> None:
    """PostgreSQL: as for receipts, a group's aggregates of one kind are serialized, by their lock row."""
    url = await postgres_databases.fresh()
    first, second, observer = (create_engine(make_settings(url)) for _ in range(3))
    try:
        base_s = BASE_MS // 1000
        dominated = payloads.group_receipt("read", 5, guid="team", message_sender="writer", at=base_s + 10)
        dominating = payloads.group_receipt("read", 7, guid="team", message_sender="writer", at=base_s + 8)
        early, late = (dominating, dominated) if dominating_first else (dominated, dominating)
        writer = Writer(first.dialect)
        async with first.begin() as holder:
            await writer.apply(holder, changes_of([(parse_event(early), RECEIVED_MS)]))
            blocked = asyncio.create_task(_apply(second, [late]))
            await _wait_until_blocked(observer)
            assert not blocked.done()
        await blocked
        async with observer.connect() as connection:
            rows = (await connection.execute(text("SELECT kind, message_id FROM group_receipt"))).all()
        assert [tuple(row) for row in rows] == [("read", 7)]
    finally:
        for engine in (first, second, observer):
            await engine.dispose()
        await postgres_databases.drop(url)


async def _record(engine: AsyncEngine, body: dict[str, Any]) -> None:
    """``body`` committed as intake commits it: its changes recorded, so its advisory locks taken first."""
    writer = Writer(engine.dialect)
    changes = changes_of([(parse_event(body), RECEIVED_MS)])
    async with engine.begin() as connection:
        await execute(connection, writer.steps((), changes, record=ChangeSink(recorded_at_ms=RECEIVED_MS)))


@pytest.mark.postgres
async def test_a_member_row_and_its_read_watermark_written_at_once_keep_read_through(
    postgres_databases: Databases,
) -> None:
    """PostgreSQL: a reader's read receipt committed while the message that made them a participant is in flight.

    Each side's trigger (migration 0009) reads before the other commits: the participant row's
    ``read_through`` would stay -1 beside a read watermark, and ``unread_by`` would name the reader.
    Both transactions take the reader's advisory lock first, so the receipt's waits for the message's.
    """
    url = await postgres_databases.fresh()
    first, second, observer = (create_engine(make_settings(url)) for _ in range(3))
    try:
        # Message 6 makes the reader a participant; the receipt reads message 5, which no row of the
        # first transaction holds, so nothing else makes the second wait for the first.
        message = payloads.message(6, "reader_user_writer", "writer", receiver="reader")
        read = payloads.receipt(
            "read", 5, reader="reader", message_sender="writer", at=BASE_MS // 1000 + 10, receiver="writer"
        )
        writer = Writer(first.dialect)
        changes = changes_of([(parse_event(message), RECEIVED_MS)])
        async with first.begin() as holder:
            await execute(holder, writer.steps((), changes, record=ChangeSink(recorded_at_ms=RECEIVED_MS)))
            blocked = asyncio.create_task(_record(second, read))
            await _wait_until_blocked(observer)
            assert not blocked.done()
        await blocked
        async with observer.connect() as connection:
            rows = await connection.execute(text("SELECT uid, read_through FROM conversation_participant ORDER BY uid"))
            assert [tuple(row) for row in rows] == [("reader", 5), ("writer", -1)]
    finally:
        for engine in (first, second, observer):
            await engine.dispose()
        await postgres_databases.drop(url)
