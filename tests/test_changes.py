"""The change feed (contract §9): what a commit records, and ``GET /changes``.

A change is recorded in the transaction that made it, only when something a caller can see
changed: a stale or repeated event records nothing. These are the examples; the properties over
generated histories are in ``tests/test_change_properties.py``.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import insert, update
from sqlalchemy.ext.asyncio import create_async_engine

from presence.db import changes
from presence.db.models import Change, ChangeLog
from presence.http.keys import COMMITTER
from presence.intake.accept import accept
from presence.intake.committer import Committer
from presence.jobs import retention
from presence.settings import Settings, SettingsError
from tests.support import payloads
from tests.support.api import Api, make_settings
from tests.support.databases import Databases

T0 = 1_763_720_000_000
CONVERSATION = "u1_user_u2"


def _online(uid: str, at: int, session: str = "s1", connected_at: int = T0) -> dict[str, Any]:
    return payloads.connection(uid, "connected", at, payloads.device(session, connected_at=connected_at))


def _offline(uid: str, at: int, session: str = "s1", connected_at: int = T0) -> dict[str, Any]:
    return payloads.connection(uid, "disconnected", at, payloads.device(session, connected_at=connected_at))


def _read(message_id: int, at: int, reader: str = "u2") -> dict[str, Any]:
    return payloads.receipt("read", message_id, reader=reader, message_sender="u1", at=at, receiver="u1")


async def _all(api: Api, query: str = "") -> list[dict[str, Any]]:
    page = await api.get_json(f"/changes?limit=1000{query}")
    return page["changes"]  # type: ignore[no-any-return]


async def test_a_connection_records_the_presence_as_it_is_answered(api: Api) -> None:
    await api.hook(_online("u1", T0))
    (change,) = await _all(api)
    assert change == {
        "seq": 1,
        "type": "presence",
        "uid": "u1",
        "at": "2025-11-21T10:13:20.000Z",
        "presence": await api.presence("u1"),
    }


async def test_a_repeated_or_stale_event_records_nothing(api: Api) -> None:
    await api.hook(_online("u1", T0))
    await api.hook(_offline("u1", T0 + 1000))
    assert [c["presence"]["status"] for c in await _all(api)] == ["online", "offline"]
    await api.hook(_online("u1", T0))  # repeated, and older than the offline
    await api.hook(_offline("u1", T0 + 1000))  # repeated
    await api.hook(_online("u1", T0 + 500))  # stale: a newer disconnect is stored
    assert len(await _all(api)) == 2


async def test_a_newer_event_that_changes_nothing_visible_records_nothing(api: Api) -> None:
    """Only the status and the set of live connections make a presence change, not its times."""
    await api.hook(_online("u1", T0))
    await api.hook(_online("u1", T0 + 1000))  # the same session said connected again: last_seen_at moves
    assert len(await _all(api)) == 1
    await api.hook(_online("u1", T0 + 2000, connected_at=T0 + 2000))  # its connected_at moved: visible
    assert len(await _all(api)) == 2


async def test_receipts_are_one_change_each_with_their_time_and_moving_earlier_is_a_change(api: Api) -> None:
    await api.hook(payloads.message(10, CONVERSATION, "u1", receiver="u2"))
    await api.hook(_read(10, T0 + 5000))
    await api.hook(_read(10, T0 + 5000))  # repeated
    await api.hook(_read(9, T0 + 6000))  # dominated by the read of 10 at an earlier time
    await api.hook(_read(10, T0 + 4000))  # the same message, earlier: a change
    changes = await _all(api, "&type=receipt")
    assert [(c["kind"], c["message_id"], c["at"]) for c in changes] == [
        ("read", "10", "2025-11-21T10:13:25.000Z"),
        ("read", "10", "2025-11-21T10:13:24.000Z"),
    ]
    assert changes[0] == {
        "seq": changes[0]["seq"],
        "type": "receipt",
        "conversation_id": CONVERSATION,
        "uid": "u2",
        "kind": "read",
        "message_id": "10",
        "at": "2025-11-21T10:13:25.000Z",
    }


async def test_group_aggregates_timed_and_untimed(api: Api) -> None:
    group = "group_g1"
    await api.hook(payloads.message(20, group, "u1", receiver="g1", receiver_type="group", sent_at=T0 // 1000))
    await api.hook(payloads.group_receipt("read", 20, guid="g1", at=T0 + 3000))
    await api.hook(payloads.group_receipt("read", 20, guid="g1", at=T0 + 3000))  # repeated
    await api.hook(payloads.group_receipt("delivered", 20, guid="g1"))  # untimed: the message's sentAt
    await api.hook(payloads.group_receipt("delivered", 20, guid="g1"))  # repeated
    changes = await _all(api, f"&conversation_id={group}")
    assert [(c["type"], c["kind"], c["message_id"], c["at"]) for c in changes] == [
        ("group_receipt", "read", "20", "2025-11-21T10:13:23.000Z"),
        ("group_receipt", "delivered", "20", "2025-11-21T10:13:20.000Z"),
    ]


@pytest.mark.parametrize(
    "query",
    [
        "after=-1",
        "after=x",
        "after=99999999999999999999",
        "after=9223372036854775808",
        "limit=0",
        "limit=1001",
        "type=message",
        "uid=",
        "conversation_id=",
    ],
)
async def test_bad_parameters_are_400(api: Api, query: str) -> None:
    body = await api.get_json(f"/changes?{query}", status=400)
    assert body["error"]["code"] == "invalid_parameter"


async def test_changes_need_the_token(api: Api) -> None:
    response = await api.get("/changes", authorization=None)
    assert response.status == 401


async def test_filters_and_pages(api: Api) -> None:
    for index, uid in enumerate(["u1", "u2", "u3", "u1", "u2"]):
        body = _online(uid, T0 + index) if index < 3 else _offline(uid, T0 + index)
        await api.hook(body)
    await api.hook(payloads.message(10, CONVERSATION, "u1", receiver="u2"))
    await api.hook(_read(10, T0 + 9000))
    everything = await _all(api)
    assert [c["seq"] for c in everything] == list(range(1, len(everything) + 1))
    for query, expected in [
        ("&uid=u1", [c for c in everything if c.get("uid") == "u1"]),
        ("&uid=u2", [c for c in everything if c.get("uid") == "u2"]),
        ("&type=presence", [c for c in everything if c["type"] == "presence"]),
        ("&conversation_id=" + CONVERSATION, [c for c in everything if c.get("conversation_id") == CONVERSATION]),
        ("&uid=u2&type=receipt", [c for c in everything if c["type"] == "receipt" and c["uid"] == "u2"]),
        ("&uid=nobody", []),
    ]:
        for limit in (1, 2, 3, 100):
            seen: list[dict[str, Any]] = []
            after = 0
            for _ in range(len(everything) + 2):
                page = await api.get_json(f"/changes?after={after}&limit={limit}{query}")
                seen += page["changes"]
                assert page["next_after"] >= after
                if page["next_after"] == after:
                    break
                after = page["next_after"]
            assert seen == expected, (query, limit)
            assert after == everything[-1]["seq"]


@pytest.mark.parametrize("batch", [1, 2, 1000])
async def test_retention_prunes_changes_in_batches_and_an_older_cursor_is_410(
    api: Api, database_url: str, batch: int
) -> None:
    for index in range(5):
        await api.hook(_online(f"u{index}", T0))
    recorded = datetime.now(UTC)
    settings = make_settings(database_url).replace(retention_batch=batch, change_retention=timedelta(hours=1))
    engine = create_async_engine(database_url)
    try:
        assert (await retention.run_pass(engine, settings, recorded + timedelta(minutes=30)))["change"] == 0
        assert len(await _all(api)) == 5
        assert (await retention.run_pass(engine, settings, recorded + timedelta(hours=2)))["change"] == 5
        async with engine.connect() as connection:
            assert await changes.horizon(connection) == (5, 5)
            # Nothing older is left: pruned_through stays where it was, never lower.
            assert await changes.prune(connection, recorded + timedelta(hours=2), limit=batch) == 0
            assert await changes.horizon(connection) == (5, 5)
    finally:
        await engine.dispose()
    for after in (0, 4):
        body = await api.get_json(f"/changes?after={after}", status=410)
        assert body["error"]["code"] == "cursor_expired"
    assert await api.get_json("/changes?after=5") == {"changes": [], "next_after": 5}
    await api.hook(_offline("u1", T0 + 1000))
    page = await api.get_json("/changes?after=5")
    assert [(c["seq"], c["uid"]) for c in page["changes"]] == [(6, "u1")]


async def test_retention_keeps_what_is_younger_and_raises_the_horizon_to_what_it_deleted(database_url: str) -> None:
    """Changes are pruned in ``seq`` order, only those recorded before the cutoff."""
    engine = create_async_engine(database_url)
    try:
        async with engine.begin() as connection:
            old, young = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 3, tzinfo=UTC)
            for seq, at in [(1, old), (2, old), (3, young)]:
                row = {"seq": seq, "type": "presence", "uid": "u", "conversation_id": None, "recorded_at": at}
                await connection.execute(insert(Change).values(**row, body="{}"))
            await connection.execute(update(ChangeLog).values(last_seq=3))
        async with engine.begin() as connection:
            assert await changes.prune(connection, datetime(2026, 1, 2, tzinfo=UTC), limit=1) == 1
            assert await changes.horizon(connection) == (1, 3)
            assert await changes.prune(connection, datetime(2026, 1, 2, tzinfo=UTC), limit=10) == 1
            assert await changes.horizon(connection) == (2, 3)
            page = await changes.changes_after(connection, 2, limit=10)
            assert [seq for seq, _ in page.changes] == [3]
            with pytest.raises(changes.CursorExpired):
                await changes.changes_after(connection, 1, limit=10)
    finally:
        await engine.dispose()


async def test_the_tail_reads_a_prefix_in_one_statement_and_finds_retention_past_it(database_url: str) -> None:
    """``tail_from``: the changes above a position; a position retention pruned past is expired."""
    engine = create_async_engine(database_url)
    try:
        async with engine.begin() as connection:
            old, young = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 3, tzinfo=UTC)
            for seq, at in [(1, old), (2, old), (3, young), (4, young)]:
                row = {"seq": seq, "type": "presence", "uid": f"u{seq}", "conversation_id": None, "recorded_at": at}
                await connection.execute(insert(Change).values(**row, body="{}"))
            await connection.execute(update(ChangeLog).values(last_seq=4))
        async with engine.connect() as connection:
            assert [c.seq for c in await changes.tail_from(connection, 0, limit=3)] == [1, 2, 3]
            assert [(c.seq, c.uid, c.json) for c in await changes.tail_from(connection, 2, limit=10)] == [
                (3, "u3", '{"seq":3}'),
                (4, "u4", '{"seq":4}'),
            ]
            assert await changes.tail_from(connection, 4, limit=10) == []
        async with engine.begin() as connection:
            assert await changes.prune(connection, datetime(2026, 1, 2, tzinfo=UTC), limit=10) == 2
        async with engine.connect() as connection:
            assert [c.seq for c in await changes.tail_from(connection, 2, limit=10)] == [3, 4]
            for behind in (0, 1):
                with pytest.raises(changes.CursorExpired) as expired:
                    await changes.tail_from(connection, behind, limit=10)
                assert expired.value.oldest_kept == 2
    finally:
        await engine.dispose()


def test_the_change_retention_setting() -> None:
    assert Settings.from_env({}).change_retention == timedelta(hours=24)
    assert Settings.from_env({"PRESENCE_CHANGE_RETENTION": "90m"}).change_retention == timedelta(minutes=90)
    for bad in ("soon", "0h", "-1h"):
        with pytest.raises(SettingsError, match="PRESENCE_CHANGE_RETENTION"):
            Settings.from_env({"PRESENCE_CHANGE_RETENTION": bad})


@pytest.mark.postgres
async def test_racing_committers_never_let_a_reader_miss_a_change(postgres_databases: Databases) -> None:
    """Two committers on one PostgreSQL database (two replicas' worth: each its own engine and several
    transactions in flight) while a reader polls: a reader that has seen N never later finds a change
    below N appear, so walking ``next_after`` misses none. A plain sequence fails this: a transaction
    can take 10, another 11, and 11 commit first (docs/design.md, "The change feed")."""
    url = await postgres_databases.fresh()
    settings = make_settings(url).replace(commit_concurrency=4, commit_max_batch=4)
    engines = [create_async_engine(url) for _ in range(3)]
    committers = [Committer.for_settings(engine, settings) for engine in engines[:2]]
    done = asyncio.Event()
    seen: list[int] = []

    async def poll() -> None:
        after = 0
        while True:
            finished = done.is_set()
            async with engines[2].connect() as connection:
                page = await changes.changes_after(connection, after, limit=1000)
            seen.extend(seq for seq, _ in page.changes)
            after = page.next_after
            if finished and not page.changes:
                return

    try:
        for committer in committers:
            await committer.start()
        reader = asyncio.create_task(poll())
        received = datetime(2026, 11, 21, tzinfo=UTC)
        submissions = []
        for n in range(800):
            body = (_online if n // 40 % 2 == 0 else _offline)(f"u{n % 40}", T0 + n)
            event = accept(orjson.dumps(body), received_at=received)
            submissions.append(committers[(n * 7919) % 3 % 2].submit(event))
        await asyncio.gather(*submissions)
        done.set()
        await reader
        async with engines[2].connect() as connection:
            last = await changes.latest_seq(connection)
    finally:
        for committer in committers:
            await committer.close()
        for engine in engines:
            await engine.dispose()
        await postgres_databases.drop(url)
    assert last > 100, "the events must make many changes (some arrive after a newer one: no change)"
    assert seen == list(range(1, last + 1))


@pytest.mark.postgres
async def test_two_replicas_on_one_user_never_record_the_same_state_twice(postgres_databases: Databases) -> None:
    """Each transaction takes an advisory lock per uid before reading the user's presence: without it,
    two replicas' transactions could both read the old state, and a stale event committed after a
    newer one would record the newer state again (two consecutive changes alike)."""
    url = await postgres_databases.fresh()
    settings = make_settings(url).replace(commit_concurrency=4, commit_max_batch=2)
    engines = [create_async_engine(url) for _ in range(2)]
    committers = [Committer.for_settings(engine, settings) for engine in engines]
    bodies = [(_online if n // 3 % 2 else _offline)(f"u{n % 3}", T0 + n // 3) for n in range(300)]
    order = [*range(300), *range(300)]
    random.Random(13).shuffle(order)
    try:
        for committer in committers:
            await committer.start()
        received = datetime(2026, 11, 21, tzinfo=UTC)
        await asyncio.gather(
            *(
                committers[index % 2].submit(accept(orjson.dumps(bodies[n]), received_at=received))
                for index, n in enumerate(order)
            )
        )
        async with engines[0].connect() as connection:
            page = await changes.changes_after(connection, 0, limit=1000)
    finally:
        for committer in committers:
            await committer.close()
        for engine in engines:
            await engine.dispose()
        await postgres_databases.drop(url)
    by_user: dict[str, list[Any]] = {}
    for _, text in page.changes:
        change = orjson.loads(text)
        presence = change["presence"]
        by_user.setdefault(change["uid"], []).append((presence["status"], presence["connections"]))
    assert sorted(by_user) == ["u0", "u1", "u2"]
    for uid, views in by_user.items():
        assert all(a != b for a, b in itertools.pairwise(views)), (uid, views)


async def test_the_committer_tells_listeners_the_last_seq_and_the_metrics_count_changes(
    api: Api,
    client: TestClient,  # type: ignore[type-arg]
) -> None:
    assert client.app is not None
    committer = client.app[COMMITTER]
    heard: list[int] = []
    stop = committer.on_changes(heard.append)
    assert committer.last_seq == 0
    await api.hook(_online("u1", T0))
    await api.hook(_online("u1", T0))  # repeated: nothing recorded, nobody told
    await api.hook(payloads.message(10, CONVERSATION, "u1", receiver="u2"))
    await api.hook(_read(10, T0 + 5000))
    assert heard == [1, 2]
    assert committer.last_seq == 2
    stop()
    await api.hook(_offline("u1", T0 + 1000))
    assert heard == [1, 2]
    assert committer.last_seq == 3
    metrics = await (await api.get("/metrics")).text()
    assert 'presence_changes_total{type="presence"} 2.0' in metrics
    assert 'presence_changes_total{type="receipt"} 1.0' in metrics
