"""The change feed from the test's side: changes recorded as intake records them, and its tables read back."""

from __future__ import annotations

import time
from collections.abc import Sequence
from types import TracebackType
from typing import Self

import orjson
from sqlalchemy import delete, update
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from presence.db.changes import ChangeRecorder, NewChange, latest_seq
from presence.db.driver import execute
from presence.db.forwarding import Lease, read_lease
from presence.db.models import Change, ChangeLog, table_of


def presence_change(uid: str, status: str = "online", *, at: str = "2026-11-30T12:00:00.000Z") -> NewChange:
    """A ``presence`` change as the contract shapes it (§9); what is inside matters to no one here."""
    body = {
        "type": "presence",
        "uid": uid,
        "at": at,
        "presence": {"uid": uid, "status": status, "last_seen_at": at, "platforms": []},
    }
    return NewChange("presence", uid, None, orjson.dumps(body).decode())


class ChangeFeed:
    """A database's change tables, through an engine of the test's own (``async with``)."""

    def __init__(self, url: str) -> None:
        self.engine: AsyncEngine = create_async_engine(url)
        self._recorder = ChangeRecorder(self.engine.dialect)

    async def record(self, changes: Sequence[NewChange], *, recorded_at_ms: int | None = None) -> int:
        """Record ``changes`` in one transaction, through the steps intake runs; the last ``seq`` taken."""
        taken: list[int] = []
        at = int(time.time() * 1000) if recorded_at_ms is None else recorded_at_ms
        async with self.engine.begin() as connection:
            await execute(connection, self._recorder.steps(changes, recorded_at_ms=at, numbered=taken.append))
        return taken[0]

    async def lease(self) -> Lease:
        async with self.engine.connect() as connection:
            return await read_lease(connection)

    async def last_seq(self) -> int:
        async with self.engine.connect() as connection:
            return await latest_seq(connection)

    async def prune_through(self, seq: int) -> None:
        """What retention does to the feed: every change up to ``seq`` gone, and cursors below it expired."""
        change, log = table_of(Change), table_of(ChangeLog)
        async with self.engine.begin() as connection:
            await connection.execute(delete(change).where(change.c.seq <= seq))
            await connection.execute(update(log).where(log.c.id == 1).values(pruned_through=seq))

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        await self.engine.dispose()
