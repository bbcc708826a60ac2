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
        self.release = asyncio.Event()

    async def run(self, statements: Sequence[Statement]) -> None:
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
