"""Scale-out on PostgreSQL: many ``presence serve`` replicas, one database, nothing else shared.

Behind a load balancer every replica receives some of CometChat's deliveries,
in any order and any number of times each. The answers of every replica must be
those of the contract read literally (``tests.oracle``: each event once, in time
order), and replicas started at once against an empty database must leave one
correct schema behind.
"""

from __future__ import annotations

import asyncio
import collections
import random
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from presence.db.models import Base, InboxEvent
from presence.db.schema import head_revision
from tests.support import payloads
from tests.support.api import API_AUTH, HOOK_AUTH
from tests.support.databases import Databases
from tests.support.oracle import expected_presence, expected_receipts
from tests.support.server import ServerProcess, empty_database, presence_environment, run_presence
from tests.support.tcp_proxy import TcpProxy

pytestmark = pytest.mark.postgres

#: The history is a function of this seed alone; it is printed in every failure message.
SEED = 20_261_121
REPLICAS = 3
USERS = 30
#: Deliveries in flight at once, over all replicas.
CONCURRENCY = 48
#: Attempts per delivery, as CometChat retries a 503 a bounded number of times.
MAX_ATTEMPTS = 8
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=30)
#: How long the processes racing to migrate may take to reach the database.
BARRIER_TIMEOUT = 30.0
POLL_INTERVAL = 0.05

BASE_MS = 1_763_720_000_000
BASE_S = BASE_MS // 1000
PLATFORMS = ("web", "ios", "android", "macos")

Body = payloads.Body


# -- a realistic history, from a seeded random.Random ---------------------------------------------


def _ms_as_sent(rng: random.Random, ms: int) -> int | str:
    """A connection time as CometChat might send it: ms, or whole seconds; a number or a numeric string."""
    value: int = ms // 1000 if ms % 1000 == 0 and rng.random() < 0.3 else ms
    return str(value) if rng.random() < 0.25 else value


def _s_as_sent(rng: random.Random, seconds: int) -> int | str:
    """A receipt time: seconds, or milliseconds (above 10^11); a number or a numeric string."""
    value = seconds * 1000 if rng.random() < 0.2 else seconds
    return str(value) if rng.random() < 0.25 else value


@dataclass
class _Session:
    uid: str
    session_id: str
    device_id: str
    platform: str
    connected_ms: int
    disconnected_ms: int | None

    def live_at(self, ms: int) -> bool:
        return self.connected_ms <= ms and (self.disconnected_ms is None or ms < self.disconnected_ms)


def _user_history(rng: random.Random, uid: str) -> list[Body]:
    """One user's sessions on several devices, with and without snapshots, on a coarse clock (many ties)."""
    slots = rng.randint(12, 40)  # few distinct instants per user: equal timestamps are common

    def instant() -> int:
        # Mostly whole seconds (ties, and times sent as seconds); some with milliseconds.
        return BASE_MS + rng.randrange(slots) * 1000 + (rng.randrange(1000) if rng.random() < 0.2 else 0)

    sessions = []
    for number in range(rng.randint(8, 16)):
        connected_ms = instant()
        disconnected_ms = None if rng.random() < 0.3 else max(connected_ms, instant())  # may equal the connection
        sessions.append(
            _Session(
                uid,
                f"{uid}-s{number}",
                f"{uid}-d{number % 4}",
                rng.choice(PLATFORMS),
                connected_ms,
                disconnected_ms,
            )
        )

    def device(session: _Session) -> dict[str, Any]:
        return payloads.device(
            session.session_id,
            connected_at=_ms_as_sent(rng, session.connected_ms),
            device_id=session.device_id,
            platform=session.platform,
        )

    def event(kind: str, at_ms: int, session: _Session) -> Body:
        connections: list[dict[str, Any]] | None = None
        roll = rng.random()
        if roll < 0.55:  # the true live set at that instant, as CometChat reports it
            connections = [device(s) for s in sessions if s.live_at(at_ms) and s is not session]
            if kind == "connected":
                connections.append(device(session))
        elif roll < 0.7:  # a snapshot that disagrees with the per-session signals: the newest still decides
            connections = [device(s) for s in rng.sample(sessions, rng.randint(0, min(4, len(sessions))))]
        live = any(s.live_at(at_ms) for s in sessions) or kind == "connected"
        updated_roll = rng.random()
        status_updated_at: int | str | None
        if updated_roll < 0.6:
            status_updated_at = None  # the payload's own default: the event's time
        elif updated_roll < 0.85:
            status_updated_at = _ms_as_sent(rng, instant())
        else:
            status_updated_at = _ms_as_sent(rng, at_ms)
        body = payloads.connection(
            uid,
            kind,
            _ms_as_sent(rng, at_ms),
            device(session),
            connections=connections,
            status=("online" if live else "offline") if rng.random() < 0.85 else rng.choice(("online", "offline")),
            status_updated_at=status_updated_at,
            trigger=rng.choice(("after_connection_status_changed", "user_connection_status_change")),
        )
        if rng.random() < 0.1:
            del body["data"]["user"]["status_updated_at"]
        return body

    bodies = []
    for session in sessions:
        bodies.append(event("connected", session.connected_ms, session))
        if session.disconnected_ms is not None:
            bodies.append(event("disconnected", session.disconnected_ms, session))
    for _ in range(rng.randint(6, 16)):  # repeated signals about known sessions, at other instants
        session = rng.choice(sessions)
        bodies.append(event(rng.choice(("connected", "disconnected")), instant(), session))
    return bodies


@dataclass
class _Conversation:
    id: str
    members: tuple[str, ...]
    guid: str | None  # a group's guid; None for one-to-one
    message_ids: list[int] = field(default_factory=list)


def _conversations(rng: random.Random, uids: Sequence[str]) -> list[_Conversation]:
    conversations = []
    pairs: set[tuple[str, str]] = set()
    while len(pairs) < 10:
        first, second = sorted(rng.sample(list(uids), 2))
        pairs.add((first, second))
    for first, second in sorted(pairs):
        conversations.append(_Conversation(f"{first}_user_{second}", (first, second), None))
    for number in range(6):
        guid = f"team-{number}"
        conversations.append(
            _Conversation(f"group_{guid}", tuple(sorted(rng.sample(list(uids), rng.randint(3, 7)))), guid)
        )
    return conversations


def _message_histories(rng: random.Random, uids: Sequence[str]) -> tuple[list[Body], list[int]]:
    """Messages (ids crossing 9/10, 99/100, 999/1000 within one conversation) and their receipts."""
    conversations = _conversations(rng, uids)
    boundaries = {9: 0, 10: 0, 99: 10, 100: 10, 999: 1, 1000: 1}  # id: conversation (a group holds 99/100)
    pool = sorted(set(rng.sample(range(1, 2000), 1150)) - set(boundaries))
    for message_id in pool:
        rng.choice(conversations).message_ids.append(message_id)
    for message_id, index in boundaries.items():
        conversations[index].message_ids.append(message_id)

    bodies: list[Body] = []
    for conversation in conversations:
        conversation.message_ids.sort()
        senders = {m: rng.choice(conversation.members) for m in conversation.message_ids}
        sent_s = {m: BASE_S + position * 2 for position, m in enumerate(conversation.message_ids)}
        # How far each reader got: delivered up to some message, read up to an earlier one (or as far).
        positions = {m: position for position, m in enumerate(conversation.message_ids)}
        reach = {}
        for reader in conversation.members:
            read_up_to = rng.randint(0, len(positions))
            reach[reader] = (rng.randint(read_up_to, len(positions)), read_up_to)
        for message_id in conversation.message_ids:
            sender = senders[message_id]
            if message_id in boundaries or rng.random() < 0.85:  # some messages are known only from receipts
                receiver = conversation.guid or next(m for m in conversation.members if m != sender)
                category = rng.choices(("message", "custom", "action", "call"), weights=(85, 9, 3, 3))[0]
                bodies.append(
                    payloads.message(
                        message_id,
                        conversation.id,
                        sender,
                        receiver=receiver,
                        receiver_type="group" if conversation.guid else "user",
                        category="message" if message_id in boundaries else category,
                        sent_at=_s_as_sent(rng, sent_s[message_id]),
                        text=f"hello {message_id}",
                    )
                )
            for reader in conversation.members:
                if reader == sender and (conversation.guid is None or rng.random() < 0.95):
                    continue  # a one-to-one receipt always comes from the other member
                delivered_up_to, read_up_to = reach[reader]
                for kind, limit, chance in (("delivered", delivered_up_to, 0.5), ("read", read_up_to, 0.4)):
                    if positions[message_id] >= limit or rng.random() >= chance:
                        continue
                    # A coarse clock (ties), not monotonic in the message id: earlier times can come later.
                    at = sent_s[message_id] + rng.choice((0, 0, 5, 10, 30, 60, 120)) + (60 if kind == "read" else 0)
                    bodies.append(
                        payloads.receipt(
                            kind,
                            message_id,
                            reader=reader,
                            message_sender=sender if conversation.guid is None or rng.random() < 0.7 else None,
                            at=_s_as_sent(rng, at),
                            receiver=conversation.guid or sender,
                            receiver_type="group" if conversation.guid else "user",
                        )
                    )
    named = sorted(m for c in conversations for m in c.message_ids)
    never_named = [0, *rng.sample(sorted(set(range(1, 2000)) - set(named)), 20), 2000, 10**12]
    return bodies, sorted(set(named) | set(never_named))


@dataclass(frozen=True)
class Scenario:
    bodies: list[Body]
    uids: list[str]
    message_ids: list[int]
    #: Each delivery: which body, to which replica; every body 1 to 3 times, shuffled.
    deliveries: list[tuple[int, int]]


def scenario(seed: int, replicas: int) -> Scenario:
    rng = random.Random(seed)
    uids = [f"user-{number:02d}" for number in range(USERS)]
    bodies: list[Body] = []
    for uid in uids:
        bodies.extend(_user_history(rng, uid))
    message_bodies, message_ids = _message_histories(rng, uids)
    bodies.extend(message_bodies)
    deliveries = [(index, rng.randrange(replicas)) for index in range(len(bodies)) for _ in range(rng.randint(1, 3))]
    rng.shuffle(deliveries)
    return Scenario(bodies, [*uids, "user-nobody", "user-99"], message_ids, deliveries)


# -- delivery and questions -----------------------------------------------------------------------


@dataclass
class DeliveryReport:
    acknowledged: int = 0
    retries: int = 0
    failures: list[str] = field(default_factory=list)


async def deliver(
    session: aiohttp.ClientSession, urls: Sequence[str], bodies: Sequence[Body], deliveries: Sequence[tuple[int, int]]
) -> DeliveryReport:
    """Post every delivery to its replica, ``CONCURRENCY`` at once; retry a 503 as CometChat does."""
    report = DeliveryReport()
    encoded = [orjson.dumps(body) for body in bodies]
    headers = {"Authorization": HOOK_AUTH, "Content-Type": "Application/json"}
    queue: collections.deque[tuple[int, int]] = collections.deque(deliveries)

    async def worker() -> None:
        while queue:
            index, replica = queue.popleft()
            for attempt in range(1, MAX_ATTEMPTS + 1):
                try:
                    async with session.post(f"{urls[replica]}/hook", data=encoded[index], headers=headers) as response:
                        status, answer = response.status, await response.text()
                except (aiohttp.ClientError, TimeoutError) as error:
                    report.failures.append(f"body {index} to replica {replica}: {type(error).__name__}: {error}")
                    break
                if status == 200:
                    report.acknowledged += 1
                    break
                if status != 503 or attempt == MAX_ATTEMPTS:
                    report.failures.append(f"body {index} to replica {replica}, attempt {attempt}: {status} {answer}")
                    break
                report.retries += 1
                await asyncio.sleep(0.05 * attempt)  # CometChat's back-off, shortened; not a synchronisation

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return report


async def answers(session: aiohttp.ClientSession, url: str, paths: Sequence[str]) -> dict[str, tuple[int, Any]]:
    """Every path's status and JSON answer from one replica."""
    results: dict[str, tuple[int, Any]] = {}
    queue = collections.deque(paths)
    headers = {"Authorization": API_AUTH}

    async def worker() -> None:
        while queue:
            path = queue.popleft()
            async with session.get(f"{url}{path}", headers=headers) as response:
                results[path] = (response.status, await response.json())

    await asyncio.gather(*(worker() for _ in range(16)))
    return results


def mismatches(replica: str, got: dict[str, tuple[int, Any]], expected: dict[str, dict[str, Any] | None]) -> list[str]:
    problems = []
    for path, truth in expected.items():
        status, answer = got[path]
        if truth is None:
            if status != 404:
                problems.append(f"{replica} GET {path}: expected 404, got {status} {answer}")
        elif status != 200 or answer != truth:
            problems.append(f"{replica} GET {path}: got {status} {answer}\n    expected {truth}")
    return problems


async def inbox_rows(database_url: str) -> int:
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as connection:
            count: int = (await connection.execute(select(func.count()).select_from(InboxEvent))).scalar_one()
            return count
    finally:
        await engine.dispose()


@pytest.fixture
async def replica_database(postgres_databases: Databases) -> AsyncIterator[str]:
    url = await postgres_databases.fresh()
    yield url
    await postgres_databases.drop(url)


async def test_replicas_agree_with_the_in_order_truth(replica_database: str, tmp_path: Path) -> None:
    """§2-4: thousands of events, shuffled, repeated, spread over 3 replicas at once; each answers the truth."""
    started = time.monotonic()
    world = scenario(SEED, REPLICAS)
    about = f"(seed {SEED}: {len(world.bodies)} bodies, {len(world.deliveries)} deliveries over {REPLICAS} replicas)"
    assert len(world.bodies) >= 3000, about
    presence_truth = expected_presence(world.bodies)
    receipts_truth = expected_receipts(world.bodies)
    # The history is as rich as intended: users online and offline, messages read and unread, unknown ids.
    assert {p["status"] for p in presence_truth.values()} == {"online", "offline"}, about
    assert sum(1 for p in presence_truth.values() if len(p["connections"]) >= 2) >= 3, about
    assert sum(1 for r in receipts_truth.values() if r["read_count"]) >= 100, about
    assert sum(1 for r in receipts_truth.values() if not r["receipts"]) >= 10, about
    assert receipts_truth["9"]["conversation_id"] == receipts_truth["10"]["conversation_id"], about
    assert receipts_truth["99"]["conversation_id"] == receipts_truth["100"]["conversation_id"], about

    environment = presence_environment(replica_database, extra={"PRESENCE_LOG_LEVEL": "WARNING"})
    servers = [ServerProcess(environment, tmp_path, name=f"replica-{n}") for n in range(REPLICAS)]
    try:
        # All start at once and migrate (the schema is already at head: each finds nothing to do).
        await asyncio.gather(*(asyncio.to_thread(server.start) for server in servers))
        urls = [server.url for server in servers]
        connector = aiohttp.TCPConnector(limit=CONCURRENCY + 16)
        async with aiohttp.ClientSession(timeout=REQUEST_TIMEOUT, connector=connector) as session:
            report = await deliver(session, urls, world.bodies, world.deliveries)
            if report.failures:
                logs = "\n".join(server.describe() for server in servers)
                shown = "\n".join([*report.failures[:20], logs])
                raise AssertionError(f"{about}: {len(report.failures)} deliveries failed:\n{shown}")
            assert report.acknowledged == len(world.deliveries), about

            expected: dict[str, dict[str, Any] | None] = {
                f"/users/{uid}/presence": presence_truth.get(uid) for uid in world.uids
            }
            expected |= {f"/messages/{m}/receipts": receipts_truth.get(str(m)) for m in world.message_ids}
            problems = []
            for server in servers:
                problems += mismatches(server.url, await answers(session, server.url, list(expected)), expected)
        assert not problems, f"{about}: {len(problems)} wrong answers (of {len(expected)} per replica):\n" + (
            "\n".join(problems[:15])
        )
        for server in servers:
            assert await asyncio.to_thread(server.terminate) == 0, server.describe()
    finally:
        for server in servers:
            server.__exit__(None, None, None)

    # Every acknowledgement is one committed inbox row; a 503 (retried) committed nothing, or at most a duplicate.
    rows = await inbox_rows(replica_database)
    assert report.acknowledged <= rows <= report.acknowledged + report.retries, (about, rows, report.retries)
    elapsed = time.monotonic() - started
    print(f"{about}: {report.retries} retries after 503, {rows} inbox rows, {elapsed:.1f} s")


# -- replicas racing to migrate an empty database -------------------------------------------------


async def wait_until(condition: Callable[[], bool], what: str, limit: float) -> None:
    """Poll ``condition`` until it holds; fail after ``limit`` seconds."""
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen within {limit} s"
        await asyncio.sleep(POLL_INTERVAL)


def _schema_report(connection: Connection) -> tuple[list[str], list[Any]]:
    versions = [row[0] for row in connection.execute(text("SELECT version_num FROM alembic_version"))]
    context = MigrationContext.configure(connection, opts={"compare_type": True, "compare_server_default": True})
    return versions, list(compare_metadata(context, Base.metadata))


async def assert_schema_at_head(database_url: str) -> None:
    """One row in ``alembic_version``, at head; the models and the database agree (autogenerate finds nothing)."""
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as connection:
            versions, differences = await connection.run_sync(_schema_report)
    finally:
        await engine.dispose()
    assert versions == [head_revision()]
    assert differences == []


async def test_concurrent_migrations_do_not_corrupt_the_schema(postgres_databases: Databases, tmp_path: Path) -> None:
    """§1: three ``presence migrate`` reach an empty database at the same moment; all succeed, one schema results.

    A proxy holds their connections until all three have connected, then lets them through together.
    """
    async with empty_database(postgres_databases.backend, tmp_path) as url:
        server = make_url(url)
        async with TcpProxy(server.host or "127.0.0.1", server.port or 5432) as proxy:
            proxy.hold()
            environment = presence_environment(proxy.url_for(url), extra={"PRESENCE_DB_CONNECT_TIMEOUT": "60"})
            runs = [asyncio.create_task(run_presence(["migrate"], environment, tmp_path)) for _ in range(3)]
            try:
                await wait_until(lambda: proxy.waiting >= 3, "three migrations connecting", BARRIER_TIMEOUT)
            finally:
                proxy.release()
                results = await asyncio.gather(*runs)
            assert proxy.forwarded >= 3
        for result in results:
            assert result.returncode == 0, f"migrate failed:\n{result.stderr}"
        await assert_schema_at_head(url)


async def test_replicas_started_at_once_on_an_empty_database_share_one_schema(
    postgres_databases: Databases, tmp_path: Path
) -> None:
    """§1: three ``serve`` (each migrating first) race on an empty database; all become healthy on one schema."""
    async with empty_database(postgres_databases.backend, tmp_path) as url:
        server = make_url(url)
        async with TcpProxy(server.host or "127.0.0.1", server.port or 5432) as proxy:
            proxy.hold()
            environment = presence_environment(proxy.url_for(url), extra={"PRESENCE_DB_CONNECT_TIMEOUT": "60"})
            servers = [ServerProcess(environment, tmp_path, name=f"racer-{n}") for n in range(3)]
            try:
                # From threads: start() waits for /healthz, and the proxy runs in this event loop.
                starts = [
                    asyncio.create_task(asyncio.to_thread(s.start, timeout=BARRIER_TIMEOUT + 30)) for s in servers
                ]
                try:
                    await wait_until(lambda: proxy.waiting >= 3, "three replicas connecting", BARRIER_TIMEOUT)
                finally:
                    proxy.release()
                    await asyncio.gather(*starts)

                # They work together: what one acknowledges, the others answer.
                at = BASE_MS
                device = payloads.device("s-racer", connected_at=at, device_id="d-racer", platform="web")
                body = payloads.connection("racer", "connected", at, device, connections=[device])
                headers = {"Authorization": HOOK_AUTH, "Content-Type": "Application/json"}
                async with aiohttp.ClientSession(timeout=REQUEST_TIMEOUT) as session:
                    async with session.post(f"{servers[0].url}/hook", data=orjson.dumps(body), headers=headers) as hook:
                        assert hook.status == 200, await hook.text()
                    truth = expected_presence([body])["racer"]
                    for replica in servers:
                        path = f"{replica.url}/users/racer/presence"
                        async with session.get(path, headers={"Authorization": API_AUTH}) as response:
                            assert response.status == 200, await response.text()
                            assert await response.json() == truth
                for replica in servers:  # from threads: the proxy must serve their last words
                    assert await asyncio.to_thread(replica.terminate) == 0, replica.describe()
            finally:
                for replica in servers:
                    replica.__exit__(None, None, None)
        await assert_schema_at_head(url)
