"""Group commit's concurrency: how many transactions the committer keeps in flight."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import orjson
import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from presence.db.writes import Statement, Writer
from presence.intake.accept import accept
from presence.intake.committer import Accepted, Committer
from tests import payloads

#: A dialect to compile for; no connection is ever made.
POSTGRESQL = create_async_engine("postgresql+asyncpg://nobody@127.0.0.1:1/none").dialect


class GatedTransactions:
    """Transactions that each wait for ``release``, counting how many run at once."""

    def __init__(self) -> None:
        self.running = 0
        self.most = 0
        self.committed = 0
        self.inbox_rows = 0
        self.release = asyncio.Event()

    async def run(self, statements: Sequence[Statement]) -> None:
        self.inbox_rows += sum(len(s.rows) for s in statements if s.sql.startswith("INSERT INTO inbox_event"))
        self.running += 1
        self.most = max(self.most, self.running)
        try:
            await self.release.wait()
        finally:
            self.running -= 1
        self.committed += 1

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
