"""SQLite point lookups on the event loop's thread (``presence.db.inline``): the same answers, never a held loop."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from presence.core.conversations import is_group
from presence.core.facts import Changes, MessageFact, ReceiptFact, message_claim
from presence.db import conversations, inline, reads
from presence.db.engine import open_sqlite, sqlite_file
from presence.db.inline import Lookups
from presence.db.writes import Writer
from presence.http import responses
from presence.intake.accept import accept
from presence.intake.committer import Committer
from presence.metrics import Metrics
from presence.settings import Settings, SettingsError
from tests.support.api import make_settings
from tests.support.databases import SqliteDatabases
from tests.support.histories import History, deliveries, histories

CONVERSATION = "alice_user_bob"
NOW = datetime(2026, 11, 21, tzinfo=UTC)


@pytest.fixture
async def engine(sqlite_databases: SqliteDatabases) -> AsyncIterator[AsyncEngine]:
    url = await sqlite_databases.fresh()
    engine = create_async_engine(url)
    try:
        yield engine
    finally:
        await engine.dispose()
        await sqlite_databases.drop(url)


def fallbacks(metrics: Metrics, reason: str) -> float:
    value = metrics.registry.get_sample_value("presence_inline_read_fallbacks_total", {"reason": reason})
    return value or 0.0


async def pool_presence(engine: AsyncEngine, uid: str) -> reads.Presence | None:
    async with engine.connect() as connection:
        return await reads.presence_of(connection, uid)


async def pool_receipts(engine: AsyncEngine, message_id: int) -> reads.MessageReceipts | None:
    async with engine.connect() as connection:
        return await reads.receipts_of(connection, message_id)


async def pool_unread_by(
    engine: AsyncEngine, message_id: int, conversation_id: str, sender: str | None
) -> conversations.UnreadBy:
    async with engine.connect() as connection:
        return await conversations.unread_by(connection, message_id, conversation_id, sender)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), history=histories())
async def test_inline_lookups_answer_as_the_pool_does(
    sqlite_databases: SqliteDatabases, data: st.DataObject, history: History
) -> None:
    url = await sqlite_databases.fresh()
    engine = create_async_engine(url)
    metrics = Metrics()
    lookups = Lookups(engine, budget=1.0, metrics=metrics)
    committer = Committer.for_settings(engine, make_settings(url).replace(commit_max_batch=8))
    await committer.start()
    try:
        for body in data.draw(deliveries(history.bodies)):
            await committer.submit(accept(orjson.dumps(body), received_at=NOW))
        assert lookups.inline
        for uid in [*history.uids, "nobody"]:
            presence = await pool_presence(engine, uid)
            assert await lookups.presence(uid) == presence
            # Under no TTL, and under floors at each key the answer turns on (and just above it).
            keys = [] if presence is None else [presence.status_key, *(c.signal_key for c in presence.connections)]
            for floor in [None, *keys, *(key + b"\x00" for key in keys)]:
                expected = None if presence is None else responses.presence_answer(reads.as_of(presence, floor))
                assert await lookups.presence_answer(uid, floor) == expected
        for message_id in [*map(int, history.message_ids), 10**15]:
            found = await lookups.receipts(message_id)
            assert found == await pool_receipts(engine, message_id)
            answer = await lookups.receipts_answer(message_id)
            assert answer == (None if found is None else responses.receipts_answer(found))
            if found is not None and is_group(found.conversation_id):
                asked = (found.message_id, found.conversation_id, found.sender)
                assert await lookups.unread_by(*asked) == await pool_unread_by(engine, *asked)
        assert fallbacks(metrics, "over_budget") == fallbacks(metrics, "error") == 0
    finally:
        await committer.close()
        lookups.close()
        await engine.dispose()
        await sqlite_databases.drop(url)


@pytest.mark.parametrize("joined_after", [False, True])
async def test_unread_by_inline_compares_a_join_in_the_second_of_the_message_as_the_pool_does(
    engine: AsyncEngine, joined_after: bool
) -> None:
    """A join and a message in the same whole second: the sending time is bound as SQLite stores an instant.

    Bound as a ``datetime`` (``2026-11-18 11:06:40+00:00``) it would compare as text below the
    stored ``2026-11-18 11:06:40.000000``, and a member who joined as the message was sent
    would be left out inline but listed by the pool.
    """
    sent_s = 1_795_000_000
    joined_s = sent_s + 1 if joined_after else sent_s
    bodies = [
        {
            "trigger": "group_member_joined",
            "data": {
                "group": {"guid": "g1", "membersCount": 2, "updatedAt": joined_s},
                "members": {"carol": {"uid": "carol"}},
            },
        },
        {
            "trigger": "after_message",
            "data": {
                "id": "7",
                "conversationId": "group_g1",
                "sender": "alice",
                "category": "message",
                "receiverType": "group",
                "receiver": "g1",
                "sentAt": sent_s,
                "data": {"text": "hi"},
            },
        },
    ]
    url = str(engine.url)
    committer = Committer.for_settings(engine, make_settings(url))
    await committer.start()
    try:
        for body in bodies:
            await committer.submit(accept(orjson.dumps(body), received_at=datetime.fromtimestamp(sent_s + 60, UTC)))
    finally:
        await committer.close()
    lookups = Lookups(engine, budget=10.0)
    try:
        expected = await pool_unread_by(engine, 7, "group_g1", "alice")
        assert expected.uids == ([] if joined_after else ["carol"])
        assert await lookups.unread_by(7, "group_g1", "alice") == expected
    finally:
        lookups.close()


async def test_a_lookup_over_its_budget_leaves_the_loop_and_still_answers(engine: AsyncEngine) -> None:
    """A long conversation makes the receipts query long: a tiny budget interrupts it, the pool answers."""
    await _seed_long_conversation(engine, receipts=3000)
    metrics = Metrics()
    tight = Lookups(engine, budget=1e-6, metrics=metrics)
    roomy = Lookups(engine, budget=10.0, metrics=metrics)
    try:
        expected = await pool_receipts(engine, 1)
        assert expected is not None
        assert len(expected.receipts) == 3000

        assert await tight.receipts(1) == expected
        assert fallbacks(metrics, "over_budget") == 1

        assert await roomy.receipts(1) == expected
        assert fallbacks(metrics, "over_budget") == 1  # answered inline, within its budget
    finally:
        tight.close()
        roomy.close()


async def test_a_lookup_over_its_budget_leaves_its_statement_reusable(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After an interrupted lookup, the same query is compiled once more at most, then runs from the cache."""
    await _seed_long_conversation(engine, receipts=3000)
    compiled: list[tuple[Any, ...]] = []

    def authorizer(*action: Any) -> int:
        compiled.append(action)  # SQLite asks while it compiles a statement, never when it runs one
        return sqlite3.SQLITE_OK

    def watched(path: Path, pragmas: Sequence[str]) -> sqlite3.Connection:
        connection = open_sqlite(path, pragmas)
        connection.set_authorizer(authorizer)  # before the lookups compile anything: it expires statements
        return connection

    monkeypatch.setattr(inline, "open_sqlite", watched)
    metrics = Metrics()
    lookups = Lookups(engine, budget=10.0, metrics=metrics)
    try:
        expected = await pool_receipts(engine, 1)
        assert await lookups.receipts(1) == expected
        assert compiled
        lookups._budget = 1e-6
        assert await lookups.receipts(1) == expected
        assert fallbacks(metrics, "over_budget") == 1
        lookups._budget = 10.0
        assert await lookups.receipts(1) == expected  # may compile it once more
        compiled.clear()
        assert await lookups.receipts(1) == expected
        assert compiled == []
    finally:
        lookups.close()


async def test_an_instant_stored_in_another_text_is_answered_as_the_pool_answers_it(engine: AsyncEngine) -> None:
    """The inline answers copy the digits of the text ``Instant`` writes; any other text is read the ordinary way."""
    await _seed_long_conversation(engine, receipts=3)
    path = sqlite_file(engine)
    assert path is not None
    with contextlib.closing(sqlite3.connect(path)) as raw, raw:
        raw.execute("UPDATE receipt SET at = '2026-11-21 10:15:30' WHERE reader_uid = 'reader-00001'")
    lookups = Lookups(engine, budget=10.0)
    try:
        found = await pool_receipts(engine, 1)
        assert found is not None
        assert await lookups.receipts_answer(1) == responses.receipts_answer(found)
        assert responses.receipts_answer(found).receipts[1].read_at == "2026-11-21T10:15:30.000Z"
    finally:
        lookups.close()


async def test_an_inline_failure_is_answered_by_the_pool(engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    await _seed_long_conversation(engine, receipts=3)
    metrics = Metrics()
    lookups = Lookups(engine, budget=1.0, metrics=metrics)
    expected = await pool_receipts(engine, 1)

    def broken(*_args: Any, **_kwargs: Any) -> sqlite3.Connection:
        raise sqlite3.OperationalError("unable to open database file")

    monkeypatch.setattr(sqlite3, "connect", broken)
    assert await lookups.receipts(1) == expected
    assert fallbacks(metrics, "error") == 1

    monkeypatch.undo()  # the next lookup opens its connection again, and answers inline
    assert await lookups.receipts(1) == expected
    assert fallbacks(metrics, "error") == 1
    lookups.close()


async def test_a_budget_of_zero_never_reads_inline(engine: AsyncEngine) -> None:
    lookups = Lookups(engine, budget=0, metrics=Metrics())
    assert not lookups.inline
    assert await lookups.receipts(1) is None


def test_an_in_memory_database_is_never_read_inline() -> None:
    engine = create_async_engine("sqlite+aiosqlite://")
    assert not Lookups(engine, budget=1.0).inline


@pytest.mark.parametrize(("raw", "budget"), [("0", 0.0), ("0.01", 0.01), (None, 0.002)])
def test_the_budget_is_a_setting(raw: str | None, budget: float) -> None:
    environ = {} if raw is None else {"PRESENCE_INLINE_READ_BUDGET": raw}
    assert Settings.from_env(environ).inline_read_budget == budget


@pytest.mark.parametrize("raw", ["-1", "soon", "inf", "nan"])
def test_a_bad_budget_is_refused_in_one_line(raw: str) -> None:
    with pytest.raises(SettingsError, match="PRESENCE_INLINE_READ_BUDGET must be "):
        Settings.from_env({"PRESENCE_INLINE_READ_BUDGET": raw})


async def _seed_long_conversation(engine: AsyncEngine, *, receipts: int) -> None:
    """Message 1 of bob's, then ``receipts`` readers who each read a later message of the conversation."""
    changes = Changes()
    changes.messages[1] = MessageFact(
        1, message_claim(1, CONVERSATION, "bob"), CONVERSATION, "bob", 1000, received_at_ms=1000
    )
    for n in range(receipts):
        reader = f"reader-{n:05d}"
        changes.receipts[(CONVERSATION, reader, "read")] = (
            ReceiptFact(CONVERSATION, reader, "read", 2 + n, 2000 + n, received_at_ms=3000),
        )
    async with engine.begin() as connection:
        await Writer(engine.dialect).apply(connection, changes)


async def test_the_lookups_of_a_turn_of_the_loop_share_a_snapshot_that_ends_with_the_turn(engine: AsyncEngine) -> None:
    """One read transaction for a turn's lookups, ended by the next turn: a commit made since is seen then."""
    async with _lookups_in_wal_mode(engine) as (lookups, path):
        before = await lookups.receipts_answer(1)
        assert before is not None
        assert before.edited_at is None
        assert lookups._connection is not None
        assert lookups._connection.in_transaction
        with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as writer:
            writer.execute("UPDATE message SET edited_at = '2026-11-21 10:15:30.123456' WHERE id = 1")
            # The same turn: its snapshot predates the commit, as the request it answers does.
            assert await lookups.receipts_answer(1) == before
            await asyncio.sleep(0)  # the next turn: the snapshot is gone, nothing of it is kept
            assert not lookups._connection.in_transaction
            after = await lookups.receipts_answer(1)
            assert after is not None
            assert after.edited_at == "2026-11-21T10:15:30.123Z"
            await asyncio.sleep(0)
            # No snapshot outlives its turn: a checkpoint can take the whole WAL back into the file.
            busy, _, _ = writer.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            assert busy == 0


async def test_the_commit_that_ends_a_turns_snapshot_is_not_held_to_the_last_lookups_budget(
    engine: AsyncEngine,
) -> None:
    """A busy turn outlasts its first lookup's budget: ending its snapshot must not be interrupted for that.

    SQLite's progress handler runs every ``PROGRESS_STEP`` steps of a statement, counted on across
    a cached statement's runs, so now and then it runs during the ``COMMIT`` too. Here it runs at
    every step, and the turn's last lookup began longer ago than the budget.
    """
    async with _lookups_in_wal_mode(engine) as (lookups, _):
        assert await lookups.receipts_answer(1) is not None
        connection = lookups._connection
        assert connection is not None
        assert connection.in_transaction
        connection.set_progress_handler(lookups._over_budget, 1)
        lookups._deadline = 0.0  # the turn's lookups began long ago
        await asyncio.sleep(0)  # the next turn ends the snapshot
        assert lookups._connection is connection, "the connection was dropped: its COMMIT was interrupted"
        assert not connection.in_transaction


async def test_a_snapshot_whose_connection_was_closed_ends_quietly(engine: AsyncEngine) -> None:
    async with _lookups_in_wal_mode(engine) as (lookups, _):
        expected = await lookups.receipts_answer(1)
        lookups.close()  # as after an inline failure, with the turn's snapshot open
        assert await lookups.receipts_answer(1) == expected  # a new connection, a snapshot of its own
        await asyncio.sleep(0)
        assert lookups._connection is not None
        assert not lookups._connection.in_transaction


async def test_outside_wal_mode_each_lookup_is_its_own_read_transaction(engine: AsyncEngine) -> None:
    """A rollback journal's reader holds the writer: no snapshot is kept there beyond its statement."""
    await _seed_long_conversation(engine, receipts=3)
    lookups = Lookups(engine, budget=10.0)
    try:
        assert await lookups.receipts_answer(1) is not None
        assert lookups._connection is not None
        assert not lookups._connection.in_transaction
    finally:
        lookups.close()


@contextlib.asynccontextmanager
async def _lookups_in_wal_mode(engine: AsyncEngine) -> AsyncIterator[tuple[Lookups, Path]]:
    """Inline lookups over a seeded conversation, its file in WAL mode as the service's connections put it."""
    await _seed_long_conversation(engine, receipts=3)
    path = sqlite_file(engine)
    assert path is not None
    _in_wal_mode(path)
    lookups = Lookups(engine, budget=10.0)
    try:
        yield lookups, path
    finally:
        lookups.close()


def _in_wal_mode(path: Path) -> None:
    """The file in WAL mode, as the service's own connections put it."""
    with contextlib.closing(sqlite3.connect(path)) as connection:
        assert connection.execute("PRAGMA journal_mode=WAL").fetchone() == ("wal",)
