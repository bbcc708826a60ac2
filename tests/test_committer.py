"""Group commit's concurrency: how many transactions the committer keeps in flight."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from presence.db.driver import Statement, Step
from presence.db.engine import create_engine
from presence.db.transactions import SqliteTransactions
from presence.db.writes import Writer
from presence.intake.accept import Accepted, accept
from presence.intake.committer import Committer, IntakeRejected, IntakeUnavailable
from presence.settings import Settings
from tests.support import payloads

#: A dialect to compile for; no connection is ever made.
POSTGRESQL = create_async_engine("postgresql+asyncpg://nobody@127.0.0.1:1/none").dialect


def _inbox_rows(statement: Statement) -> int:
    if statement.sql.startswith("INSERT INTO inbox_event"):
        return len(statement.rows)
    if "INSERT INTO inbox_event" in statement.sql:
        # Merged into another statement (presence.db.driver.with_writes): its parameters come
        # last, as one array per column, the bodies' last of all.
        (params,) = statement.rows
        bodies = params[-1]
        return len(bodies) if isinstance(bodies, list) else 1
    return 0


class GatedTransactions:
    """Transactions that each wait for ``release``, counting how many run at once."""

    def __init__(self) -> None:
        self.running = 0
        self.most = 0
        self.committed = 0
        self.inbox_rows = 0
        self.release = asyncio.Event()

    async def start(self) -> None:
        pass

    async def run(self, statements: Sequence[Step]) -> None:
        self.inbox_rows += sum(_inbox_rows(s) for s in statements if isinstance(s, Statement))
        self.running += 1
        self.most = max(self.most, self.running)
        try:
            await self.release.wait()
        finally:
            self.running -= 1
        self.committed += 1

    async def probe(self) -> None:
        await self.run([])

    async def close(self) -> None:
        pass


def event(n: int) -> Accepted:
    session = payloads.device(f"s-{n}")
    body = payloads.connection(f"u-{n}", "connected", 1_700_000_000_000 + n, session, connections=[session])
    return accept(orjson.dumps(body), received_at=datetime(2026, 11, 21, tzinfo=UTC))


async def until(condition: Callable[[], bool], gated: GatedTransactions) -> None:
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"never reached; {gated.running} running")


@pytest.mark.parametrize("concurrency", [1, 3])
async def test_at_most_concurrency_transactions_are_in_flight(concurrency: int) -> None:
    gated = GatedTransactions()
    committer = Committer(
        gated,
        Writer(POSTGRESQL),
        max_batch=1,
        queue_limit=100,
        commit_timeout=5.0,
        concurrency=concurrency,
    )
    await committer.start()
    submitted = [asyncio.create_task(committer.submit(event(n))) for n in range(5)]
    await until(lambda: gated.running == concurrency, gated)
    for _ in range(50):
        await asyncio.sleep(0)
    assert gated.running == concurrency  # the others wait for a slot
    assert not any(task.done() for task in submitted)  # nothing is acknowledged before its commit

    gated.release.set()
    await asyncio.gather(*submitted)
    assert (gated.most, gated.committed) == (concurrency, 5)
    await committer.close()


async def test_a_request_that_goes_away_leaves_its_event_and_its_neighbours_committed() -> None:
    gated = GatedTransactions()
    committer = Committer(gated, Writer(POSTGRESQL), max_batch=10, queue_limit=100, commit_timeout=5.0)
    await committer.start()
    submitted = [asyncio.create_task(committer.submit(event(n))) for n in range(3)]
    await until(lambda: gated.running == 1, gated)
    submitted[1].cancel()  # its client hung up while the batch was committing

    gated.release.set()
    await asyncio.gather(submitted[0], submitted[2])
    assert submitted[1].cancelled()
    assert (gated.committed, gated.inbox_rows) == (1, 3)
    await committer.close()


class SlowTransactions:
    """Transactions that each take ``seconds``, within the commit timeout."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.committed = 0

    async def start(self) -> None:
        pass

    async def run(self, statements: Sequence[Step]) -> None:
        await asyncio.sleep(self.seconds)
        self.committed += 1

    async def probe(self) -> None:
        await self.run([])

    async def close(self) -> None:
        pass


@pytest.mark.parametrize("concurrency", [1, 3])
async def test_close_answers_every_waiting_request_even_when_it_cannot_wait_for_all_commits(concurrency: int) -> None:
    """Past its deadline, close() cancels the commits in flight: their requests get 503, never silence."""
    slow = SlowTransactions(0.15)
    committer = Committer(
        slow, Writer(POSTGRESQL), max_batch=1, queue_limit=100, commit_timeout=0.2, concurrency=concurrency
    )
    await committer.start()
    submitted = [asyncio.create_task(committer.submit(event(n))) for n in range(12)]
    await asyncio.sleep(0)
    await committer.close()  # waits 0.4 s for 12 commits of 0.15 s: some are cut off

    outcomes = await asyncio.wait_for(asyncio.gather(*submitted, return_exceptions=True), timeout=2)
    acknowledged = sum(1 for outcome in outcomes if outcome is None)
    refused = [outcome for outcome in outcomes if outcome is not None]
    assert all(isinstance(outcome, IntakeUnavailable) for outcome in refused), refused
    assert 0 < acknowledged <= slow.committed  # every 200 was committed
    assert refused  # and the rest were answered, not left waiting


async def test_the_sqlite_writer_closes_once_and_then_quietly(tmp_path: Path) -> None:
    transactions = SqliteTransactions(tmp_path / "never-opened.db", synchronous="FULL", timeout=5.0)
    await transactions.close()
    await transactions.close()  # a second close (two owners, a retried shutdown) is harmless
    assert not (tmp_path / "never-opened.db").exists()


async def test_the_engine_and_the_writer_put_a_database_in_wal_mode(tmp_path: Path) -> None:
    for name in ("by-engine.db", "by-writer.db"):
        with contextlib.closing(sqlite3.connect(tmp_path / name)) as plain:
            plain.execute("CREATE TABLE t (x)")
            assert plain.execute("PRAGMA journal_mode").fetchone() == ("delete",)
    engine = create_engine(Settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'by-engine.db'}"))
    async with engine.connect() as connection:
        assert (await connection.exec_driver_sql("PRAGMA journal_mode")).scalar_one() == "wal"
    await engine.dispose()
    writer = SqliteTransactions(tmp_path / "by-writer.db", synchronous="FULL", timeout=5.0)
    await writer.start()
    await writer.close()
    with contextlib.closing(sqlite3.connect(tmp_path / "by-writer.db")) as plain:
        assert plain.execute("PRAGMA journal_mode").fetchone() == ("wal",)


class RefusingTransactions:
    """Transactions that the database refuses, as a constraint violation, when they hold uid ``u-bad``."""

    def __init__(self) -> None:
        self.runs = 0
        self.committed_inbox_rows = 0

    async def start(self) -> None:
        pass

    async def run(self, statements: Sequence[Step]) -> None:
        self.runs += 1
        writes = [statement for statement in statements if isinstance(statement, Statement)]
        if any("u-bad" in repr(statement.rows) for statement in writes):
            raise sqlite3.IntegrityError("refused for the test")
        self.committed_inbox_rows += sum(_inbox_rows(s) for s in writes)

    async def probe(self) -> None:
        pass

    async def close(self) -> None:
        pass


async def test_one_refused_event_costs_its_batch_a_few_transactions_not_one_each() -> None:
    """The batch is halved until the refused event stands alone: about 2·log2(n) transactions, not n."""
    refusing = RefusingTransactions()
    committer = Committer(refusing, Writer(POSTGRESQL), max_batch=64, queue_limit=100, commit_timeout=5.0)
    items = [event(n) for n in range(63)]
    session = payloads.device("s-bad")
    bad = payloads.connection("u-bad", "connected", 1_700_000_000_000, session, connections=[session])
    items.insert(17, accept(orjson.dumps(bad), received_at=datetime(2026, 11, 21, tzinfo=UTC)))
    submitted = [asyncio.ensure_future(committer.submit(item)) for item in items]
    await committer.start()  # after the submissions: all 64 go into the first batch

    outcomes = await asyncio.gather(*submitted, return_exceptions=True)
    await committer.close()

    refused = [index for index, outcome in enumerate(outcomes) if isinstance(outcome, IntakeRejected)]
    assert refused == [17]
    assert all(outcome is None for index, outcome in enumerate(outcomes) if index != 17)
    assert refusing.committed_inbox_rows == 63
    assert refusing.runs <= 2 * 6 + 1  # log2(64) = 6 halvings


def big_event(n: int, size: int) -> Accepted:
    """An event of a trigger the service does not act on, kept whole: its inbox text is ``size`` bytes or more."""
    body = {"trigger": "some_future_trigger", "data": {"n": n, "padding": "x" * size}}
    return accept(orjson.dumps(body), received_at=datetime(2026, 11, 21, tzinfo=UTC))


async def test_what_waits_is_bounded_by_bytes_and_refused_at_once_beyond() -> None:
    gated = GatedTransactions()
    committer = Committer(
        gated, Writer(POSTGRESQL), max_batch=10, queue_limit=1000, queue_bytes=1_000_000, commit_timeout=5.0
    )
    await committer.start()
    submitted = [asyncio.create_task(committer.submit(big_event(n, 300_000))) for n in range(3)]
    await until(lambda: gated.running == 1, gated)
    assert committer.waiting_bytes > 900_000  # the batch in flight counts until its commit ends

    with pytest.raises(IntakeUnavailable, match="bytes"):
        await asyncio.wait_for(committer.submit(big_event(3, 300_000)), timeout=1)
    assert not committer.reserve(300_000)  # nor can a body being read take the room
    assert committer.reserve(1000)
    committer.release(1000)

    gated.release.set()
    await asyncio.gather(*submitted)
    assert committer.waiting_bytes == 0
    await committer.submit(big_event(4, 3_000_000))  # alone, an event larger than the limit goes through
    await committer.close()


async def test_an_event_whose_client_left_before_its_commit_started_is_dropped() -> None:
    """Never acknowledged, so CometChat sends it again: it is not committed; its neighbours are."""
    gated = GatedTransactions()
    committer = Committer(gated, Writer(POSTGRESQL), max_batch=10, queue_limit=100, commit_timeout=5.0)
    await committer.start()
    first = asyncio.create_task(committer.submit(event(0)))
    await until(lambda: gated.running == 1, gated)  # the next ones wait for the only slot
    hung_up = False
    waiting = [
        asyncio.create_task(committer.submit(event(1))),
        asyncio.create_task(committer.submit(event(2), client_gone=lambda: hung_up)),
        asyncio.create_task(committer.submit(event(3))),
    ]
    await asyncio.sleep(0)
    waiting[0].cancel()  # its request was cancelled
    hung_up = True  # its client hung up
    gated.release.set()
    await asyncio.gather(first, waiting[2])
    with pytest.raises(IntakeUnavailable, match="went away"):
        await waiting[1]
    assert waiting[0].cancelled()
    assert (gated.committed, gated.inbox_rows) == (2, 2)  # events 0, then 3
    assert committer.waiting_bytes == 0
    await committer.close()
