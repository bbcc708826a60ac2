"""Contract §2 on PostgreSQL: the database goes away and comes back; the service answers 503, then recovers.

The service talks to PostgreSQL through a TCP proxy the test owns
(:class:`tests.tcp_proxy.TcpProxy`). ``cut()`` closes every connection and
refuses new ones, as when the database is stopped or restarted; ``stall()``
stops the bytes without closing anything, as in a network partition. While the
database is away, ``/hook`` and the query API answer ``503`` with the code
``unavailable`` (never ``500``, never a hang); once it is back, the same app,
never recreated, answers ``200`` again; every event answered ``200`` is applied
and in the inbox, and no event refused with ``503`` is, unless it was retried
and acknowledged.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path

import aiohttp
import orjson
import pytest
from aiohttp import ClientResponse
from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from presence.db.models import InboxEvent
from presence.http.app import create_app
from presence.settings import Settings
from tests.support import payloads
from tests.support.api import API_AUTH, HOOK_AUTH, Api, make_settings
from tests.support.databases import Databases, connect_postgres, postgres_server_url
from tests.support.oracle import expected_presence
from tests.support.server import ServerProcess, presence_environment
from tests.support.tcp_proxy import TcpProxy
from tests.support.typing import AiohttpClient

pytestmark = pytest.mark.postgres

#: Every answer, 200 or 503, must arrive within this many seconds (CometChat waits about 2 s).
ANSWER_LIMIT = 10.0
#: How long the service may take to accept again once the database is back.
RECOVERY_DEADLINE = 30.0
#: Between two attempts while waiting for recovery: a poll interval, never a synchronisation.
POLL_INTERVAL = 0.1
#: Fail fast while the database is away: the service's own settings, tuned by the test.
FAST_FAILURE = {"db_connect_timeout": 2.0, "db_pool_timeout": 2.0}
FAST_FAILURE_ENVIRONMENT = {"PRESENCE_DB_CONNECT_TIMEOUT": "2", "PRESENCE_DB_POOL_TIMEOUT": "2"}

BASE_MS = 1_763_720_000_000


def connected(uid: str, index: int = 0) -> payloads.Body:
    at = BASE_MS + index
    session = payloads.device(f"s-{uid}", connected_at=at, device_id=f"d-{uid}", platform="ios")
    return payloads.connection(uid, "connected", at, session, connections=[session])


def uid_of(body: payloads.Body) -> str:
    uid: str = body["data"]["user"]["uid"]
    return uid


@pytest.fixture
async def outage_database(postgres_databases: Databases) -> AsyncIterator[str]:
    """A fresh migrated PostgreSQL database, reached directly (not through the proxy)."""
    url = await postgres_databases.fresh()
    yield url
    await postgres_databases.drop(url)


@pytest.fixture
async def proxy(outage_database: str) -> AsyncIterator[TcpProxy]:
    server = make_url(outage_database)
    async with TcpProxy(server.host or "127.0.0.1", server.port or 5432) as proxy:
        yield proxy


@pytest.fixture
def proxied_settings(proxy: TcpProxy, outage_database: str) -> Settings:
    return make_settings(proxy.url_for(outage_database)).replace(**FAST_FAILURE)


@pytest.fixture
async def api(proxy: TcpProxy, proxied_settings: Settings, aiohttp_client: AiohttpClient) -> Api:
    """The service in this process, its database behind the proxy.

    Requested after ``proxy``, so the app (and its engine) is closed before the proxy is.
    """
    return Api(await aiohttp_client(create_app(proxied_settings)))


async def timed(request: Awaitable[ClientResponse], what: str) -> ClientResponse:
    """The response, read in full, which must come within :data:`ANSWER_LIMIT` seconds."""
    started = time.monotonic()
    try:
        async with asyncio.timeout(ANSWER_LIMIT):
            response = await request
            await response.read()
    except TimeoutError:
        raise AssertionError(f"{what}: no answer within {ANSWER_LIMIT} s (the service hangs)") from None
    elapsed = time.monotonic() - started
    assert elapsed < ANSWER_LIMIT, f"{what}: answered after {elapsed:.1f} s"
    return response


async def assert_unavailable(response: ClientResponse, what: str) -> None:
    payload = await response.json()
    assert response.status == 503, f"{what}: {response.status} {payload}"
    assert payload == {"error": {"code": "unavailable", "message": payload["error"]["message"]}}, payload
    assert isinstance(payload["error"]["message"], str), payload


async def post_until_accepted(post: Callable[[], Awaitable[ClientResponse]], what: str) -> int:
    """Repeat ``post`` (as CometChat retries) until it answers 200; return how many 503s came first.

    Every answer must be 200 or 503 and arrive in time; no 200 within :data:`RECOVERY_DEADLINE` fails.
    """
    deadline = time.monotonic() + RECOVERY_DEADLINE
    refusals = 0
    while True:
        response = await timed(post(), what)
        if response.status == 200:
            return refusals
        await assert_unavailable(response, what)
        refusals += 1
        assert time.monotonic() < deadline, (
            f"{what}: still 503 after {RECOVERY_DEADLINE} s with the database back ({refusals} attempts)"
        )
        await asyncio.sleep(POLL_INTERVAL)


async def inbox_uids(database_url: str) -> collections.Counter[str]:
    """How many inbox rows there are for each user's connection events, read directly from the database."""
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as connection:
            bodies = (await connection.execute(select(InboxEvent.body))).scalars().all()
    finally:
        await engine.dispose()
    return collections.Counter(orjson.loads(body)["data"]["user"]["uid"] for body in bodies)


async def assert_applied(api: Api, acknowledged: Iterable[payloads.Body]) -> None:
    """Every acknowledged event is what the presence of its user says (the oracle over all of them)."""
    acknowledged = list(acknowledged)
    expected = expected_presence(acknowledged)
    for uid in sorted({uid_of(body) for body in acknowledged}):
        response = await timed(api.get(f"/users/{uid}/presence"), f"presence of {uid}")
        assert response.status == 200, f"acknowledged events of {uid} are lost: {await response.text()}"
        assert await response.json() == expected[uid]


async def assert_unknown(api: Api, bodies: Iterable[payloads.Body]) -> None:
    for uid in sorted({uid_of(body) for body in bodies}):
        response = await timed(api.get(f"/users/{uid}/presence"), f"presence of {uid}")
        assert response.status == 404, f"{uid} was refused with 503 and never retried, yet: {await response.text()}"


async def test_a_cut_database_is_503_and_intake_recovers_without_a_restart(
    api: Api, proxy: TcpProxy, outage_database: str
) -> None:
    """§2: cut: every hook and query answers 503 in time; restored: 200 again, from the same app; nothing lost."""
    before = [connected(f"before-{n}", n) for n in range(10)]
    for body in before:
        assert await api.hook(body) == {"status": "accepted"}
    assert await api.presence("before-0") is not None
    assert proxy.forwarded > 0, "the service did not go through the proxy"

    proxy.cut()
    refused = [connected(f"during-{n}", n) for n in range(16)]
    for body in refused[:6]:
        await assert_unavailable(await timed(api.post_hook(body), "hook while cut"), "hook while cut")
    concurrent = await asyncio.gather(
        *(timed(api.post_hook(body), "concurrent hook while cut") for body in refused[6:])
    )
    for response in concurrent:
        await assert_unavailable(response, "concurrent hook while cut")
    for path in ("/users/before-0/presence", "/users/during-0/presence", "/messages/57/receipts"):
        await assert_unavailable(await timed(api.get(path), f"GET {path} while cut"), f"GET {path} while cut")
    healthz = await timed(api.get("/healthz"), "healthz while cut")
    assert healthz.status == 200, await healthz.text()
    assert proxy.refused > 0, "the service never tried to reconnect while the database was away"

    proxy.restore()
    retried, abandoned = refused[:5], refused[5:]
    for body in retried:
        await post_until_accepted(functools.partial(api.post_hook, body), f"retry of {uid_of(body)}")
    after = [connected(f"after-{n}", n) for n in range(10)]
    for body in after:
        response = await timed(api.post_hook(body), "hook after recovery")
        assert response.status == 200, await response.text()

    acknowledged = before + retried + after
    await assert_applied(api, acknowledged)
    await assert_unknown(api, abandoned)
    # Each acknowledged event is in the inbox exactly once: the 503s before its 200 committed nothing.
    assert await inbox_uids(outage_database) == collections.Counter(uid_of(body) for body in acknowledged)


@pytest.mark.parametrize("chunks", [1, 2, 3, 4, 5, 6, 7, 8])
async def test_a_cut_during_concurrent_intake_loses_nothing_acknowledged(
    api: Api, proxy: TcpProxy, outage_database: str, chunks: int
) -> None:
    """§2: the database goes away under load: every answer is 200 or 503 in time; every 200 is kept.

    The cut comes after the service has sent ``chunks`` more messages to PostgreSQL, so at varying points
    of a group commit's transaction (its checkout ping, its statements, its ``COMMIT``).
    """
    bodies = [connected(f"burst-{n:03d}", n) for n in range(160)]
    cut_after = 40
    outcomes: dict[str, tuple[int, bool]] = {}  # uid: (status, posted after the cut)
    slots = asyncio.Semaphore(32)
    armed = False

    async def post(body: payloads.Body) -> None:
        nonlocal armed
        async with slots:
            posted_after_cut = proxy.is_cut
            response = await timed(api.post_hook(body), f"hook of {uid_of(body)}")
            if response.status != 200:
                await assert_unavailable(response, f"hook of {uid_of(body)}")
            outcomes[uid_of(body)] = (response.status, posted_after_cut)
            if not armed and sum(1 for status, _ in outcomes.values() if status == 200) >= cut_after:
                # The next group commit (of requests in flight now) talks to PostgreSQL, and at some
                # point of its transaction the database is gone.
                proxy.cut_after_requests(chunks)
                armed = True

    await asyncio.gather(*(post(body) for body in bodies))
    assert proxy.is_cut
    acknowledged = [body for body in bodies if outcomes[uid_of(body)][0] == 200]
    refused = [body for body in bodies if outcomes[uid_of(body)][0] == 503]
    assert len(acknowledged) >= cut_after
    assert refused, "the cut refused nothing"

    proxy.restore()
    # CometChat retries what was refused; here every other refused event, the rest never comes back.
    retried, abandoned = refused[::2], refused[1::2]
    for body in retried:
        await post_until_accepted(functools.partial(api.post_hook, body), f"retry of {uid_of(body)}")

    await assert_applied(api, acknowledged + retried)
    # Refused after the cut, never retried: never reached the database, so nowhere to be seen. (An event in
    # flight at the cut may have been committed although its answer was 503: CometChat's retry is then a duplicate.)
    surely_lost = [body for body in abandoned if outcomes[uid_of(body)][1]]
    assert surely_lost, "no event was refused after the cut"
    await assert_unknown(api, surely_lost)
    inbox = await inbox_uids(outage_database)
    assert not [uid_of(body) for body in acknowledged + retried if inbox[uid_of(body)] == 0]
    assert not [uid_of(body) for body in surely_lost if inbox[uid_of(body)] > 0]
    in_flight = [body for body in abandoned if not outcomes[uid_of(body)][1]]
    committed_anyway = sum(1 for body in in_flight if inbox[uid_of(body)] > 0)
    print(
        f"{len(acknowledged)} acknowledged, {len(refused)} refused ({len(retried)} retried), "
        f"{committed_anyway} of {len(in_flight)} abandoned in-flight events committed despite their 503"
    )


async def test_a_silent_database_is_503_in_bounded_time_and_intake_recovers(
    api: Api, proxy: TcpProxy, outage_database: str
) -> None:
    """§2: a partition (bytes stop, nothing closes): answers still come in time, as 503; healed: 200 again."""
    before = [connected(f"quiet-before-{n}", n) for n in range(5)]
    for body in before:
        assert await api.hook(body) == {"status": "accepted"}

    proxy.stall()
    try:
        during = connected("quiet-during")
        await assert_unavailable(await timed(api.post_hook(during), "hook while stalled"), "hook while stalled")
        path = "/users/quiet-before-0/presence"
        await assert_unavailable(await timed(api.get(path), "query while stalled"), "query while stalled")
    finally:
        proxy.restore()  # whatever happened, let stuck work finish so that the app can close

    after = connected("quiet-after")
    await post_until_accepted(lambda: api.post_hook(after), "hook after the partition healed")
    await assert_applied(api, [*before, after])
    await assert_unknown(api, [during])


async def _post(session: aiohttp.ClientSession, server: ServerProcess, body: payloads.Body) -> ClientResponse:
    headers = {"Authorization": HOOK_AUTH, "Content-Type": "Application/json"}
    return await session.post(f"{server.url}/hook", data=orjson.dumps(body), headers=headers)


async def test_replicas_behind_a_cut_answer_503_and_recover(
    proxy: TcpProxy, outage_database: str, tmp_path: Path
) -> None:
    """§2 with real ``presence serve`` processes: each replica refuses with 503 while cut and recovers alone."""
    environment = presence_environment(proxy.url_for(outage_database), extra=FAST_FAILURE_ENVIRONMENT)
    with (
        ServerProcess(environment, tmp_path, name="replica-a") as first,
        ServerProcess(environment, tmp_path, name="replica-b") as second,
    ):
        # Started from a thread: the proxy they migrate through runs in this test's event loop.
        await asyncio.gather(asyncio.to_thread(first.start), asyncio.to_thread(second.start))
        replicas = (first, second)
        timeout = aiohttp.ClientTimeout(total=ANSWER_LIMIT)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            before = [connected(f"replica-before-{n}", n) for n in range(6)]
            for n, body in enumerate(before):
                response = await timed(_post(session, replicas[n % 2], body), "hook before the cut")
                assert response.status == 200, await response.text()

            proxy.cut()
            abandoned = [connected(f"replica-lost-{n}", n) for n in range(4)]
            for n, body in enumerate(abandoned):
                replica = replicas[n % 2]
                response = await timed(_post(session, replica, body), "hook while cut")
                await assert_unavailable(response, f"hook to {replica.url} while cut\n{replica.describe()}")

            proxy.restore()
            after = [connected(f"replica-after-{n}", n) for n in range(6)]
            for n, body in enumerate(after):
                replica = replicas[n % 2]
                await post_until_accepted(functools.partial(_post, session, replica, body), f"hook to {replica.url}")

            expected = expected_presence(before + after)
            for replica in replicas:
                for uid, answer in expected.items():
                    response = await timed(
                        session.get(f"{replica.url}/users/{uid}/presence", headers={"Authorization": API_AUTH}),
                        "presence",
                    )
                    assert response.status == 200, f"{uid} on {replica.url}: {await response.text()}"
                    assert await response.json() == answer
                for body in abandoned:
                    response = await timed(
                        session.get(
                            f"{replica.url}/users/{uid_of(body)}/presence", headers={"Authorization": API_AUTH}
                        ),
                        "presence",
                    )
                    assert response.status == 404, await response.text()
        for replica in replicas:  # from a thread: the proxy must serve their last words
            assert await asyncio.to_thread(replica.terminate) == 0, replica.describe()
    assert await inbox_uids(outage_database) == collections.Counter(uid_of(body) for body in before + after)


#: What the query API is asked while connections are terminated or cut: (path, answers it may give besides 503).
QUERIED = [
    ("/users/load-0/presence", {200}),
    ("/users/nobody/presence", {404}),
    ("/messages/57/receipts", {404}),
    ("/users/load-0/sessions", {200}),
    ("/presence?uid=load-0&uid=nobody", {200}),
    ("/users?status=online", {200}),
    ("/conversations/c-1/receipts", {404}),
    ("/stats", {200}),
    ("/readyz", {200}),
    ("/metrics", {200}),
]
#: How long connections are disrupted while the load runs.
DISRUPTION_SECONDS = 3.0


async def _load(api: Api, stop: asyncio.Event, answers: collections.Counter[tuple[str, int]]) -> None:
    """Ask every route of :data:`QUERIED`, and post webhooks, until ``stop``; each answer is one the contract allows."""

    async def ask(path: str, allowed: set[int]) -> None:
        while not stop.is_set():
            response = await timed(api.get(path), f"GET {path}")
            answers[(path, response.status)] += 1
            if response.status == 503 and path != "/metrics":
                payload = await response.json()
                code = "not_ready" if path == "/readyz" else "unavailable"
                assert payload["error"]["code"] == code, (path, payload)
            else:
                assert response.status in allowed, f"GET {path}: {response.status} {await response.text()}"

    async def post() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            response = await timed(api.post_hook(connected(f"load-{n % 20}", n)), "hook")
            answers[("/hook", response.status)] += 1
            if response.status != 200:
                await assert_unavailable(response, "hook")

    await asyncio.gather(*(ask(path, allowed) for path, allowed in QUERIED for _ in range(2)), post(), post())


async def _assert_recovered(api: Api) -> None:
    """Every route answers as it would have without the disruption, within :data:`RECOVERY_DEADLINE`."""
    for path, allowed in QUERIED:
        deadline = time.monotonic() + RECOVERY_DEADLINE
        while (status := (await timed(api.get(path), f"GET {path}")).status) not in allowed:
            assert status == 503, f"GET {path}: {status}"
            assert time.monotonic() < deadline, f"GET {path}: still 503 after {RECOVERY_DEADLINE} s"
            await asyncio.sleep(POLL_INTERVAL)


def _assert_no_unexpected_errors(caplog: pytest.LogCaptureFixture) -> None:
    unexpected = [
        r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR and r.name.startswith("presence")
    ]
    assert unexpected == [], "a database failure was taken for a bug (500)"


async def test_terminated_connections_are_503_never_500_and_queries_recover(
    outage_database: str, aiohttp_client: AiohttpClient, caplog: pytest.LogCaptureFixture
) -> None:
    """§2, §5, §7: PostgreSQL terminates the service's connections (as a restart does) while queries run:
    every answer is 200, 404 or 503, never 500 (/readyz and /metrics included); then 200s again, alone."""
    api = Api(await aiohttp_client(create_app(make_settings(outage_database).replace(**FAST_FAILURE))))
    await api.hook(connected("load-0"))
    database = make_url(outage_database).database
    admin = await connect_postgres(make_url(postgres_server_url()))
    answers: collections.Counter[tuple[str, int]] = collections.Counter()
    stop = asyncio.Event()
    try:
        load = asyncio.create_task(_load(api, stop, answers))
        terminated = 0
        deadline = time.monotonic() + DISRUPTION_SECONDS
        while time.monotonic() < deadline and not load.done():
            terminated += await admin.fetchval(
                "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = $1 AND pid <> pg_backend_pid()) AS t",
                database,
            )
            await asyncio.sleep(random.uniform(0.01, 0.1))
        stop.set()
        await load
    finally:
        stop.set()
        await admin.close()
    assert terminated > 0, "no connection of the service was terminated"
    assert any(status == 503 for _, status in answers), f"the terminations were never noticed: {answers}"
    _assert_no_unexpected_errors(caplog)
    await _assert_recovered(api)


async def test_cut_connections_are_503_never_500_and_queries_recover(
    api: Api, proxy: TcpProxy, caplog: pytest.LogCaptureFixture
) -> None:
    """§2, §5, §7: the connections are cut and restored again and again while queries run (as when
    the network between the service and PostgreSQL flaps): 200, 404 or 503, never 500; then 200s again."""
    await api.hook(connected("load-0"))
    answers: collections.Counter[tuple[str, int]] = collections.Counter()
    stop = asyncio.Event()
    load = asyncio.create_task(_load(api, stop, answers))
    try:
        deadline = time.monotonic() + DISRUPTION_SECONDS
        while time.monotonic() < deadline and not load.done():
            await asyncio.sleep(random.uniform(0.01, 0.1))
            proxy.cut()
            await asyncio.sleep(random.uniform(0, 0.05))
            proxy.restore()
            await asyncio.sleep(random.uniform(0, 0.05))
            proxy.drop_after_replies(random.randint(1, 4))  # new connections die as they become ready
    finally:
        proxy.restore()
        stop.set()
        await load
    assert any(status == 503 for _, status in answers), f"the cuts were never noticed: {answers}"
    _assert_no_unexpected_errors(caplog)
    await _assert_recovered(api)


async def test_a_silent_database_answers_each_webhook_within_the_commit_timeout(
    proxy: TcpProxy, outage_database: str, aiohttp_client: AiohttpClient
) -> None:
    """§2: while PostgreSQL is silent, each webhook gets its 503 by about ``PRESENCE_COMMIT_TIMEOUT``,
    however long giving up on the stuck connection takes (the default connect and statement timeouts,
    5 s); once it answers again, 200s.

    The bound is generous (2.5x a 1 s timeout) for a noisy machine: awaiting the cleanup took 3 s.
    """
    commit_timeout = 1.0
    settings = make_settings(proxy.url_for(outage_database)).replace(commit_timeout=commit_timeout)
    api = Api(await aiohttp_client(create_app(settings)))
    assert await api.hook(connected("stall-before")) == {"status": "accepted"}

    async def answer_time(body: payloads.Body) -> float:
        started = time.monotonic()
        response = await timed(api.post_hook(body), f"hook of {uid_of(body)} while stalled")
        await assert_unavailable(response, f"hook of {uid_of(body)} while stalled")
        return time.monotonic() - started

    proxy.stall()
    try:
        one_by_one = [await answer_time(connected(f"stall-{n}", n)) for n in range(3)]
        together = await asyncio.gather(*(answer_time(connected(f"stall-many-{n}", n)) for n in range(8)))
    finally:
        proxy.restore()
    slowest = max(*one_by_one, *together)
    timings = f"one by one {[round(t, 2) for t in one_by_one]}, together {[round(t, 2) for t in together]}"
    print(timings)
    assert slowest < 2.5 * commit_timeout, f"answered after {slowest:.1f} s ({timings})"

    await post_until_accepted(lambda: api.post_hook(connected("stall-after")), "hook after the stall")
