"""Changes recorded straight into a test's database, by the service's own ``ChangeRecorder``.

Until intake records changes itself, this is how the stream's tests make them: each call is
one transaction that numbers and stores its changes (and, on PostgreSQL, sends the ``NOTIFY``
that wakes every replica's streams), exactly as a group commit will.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncEngine

from presence.db.changes import ChangeRecorder, ChangeType, NewChange
from presence.db.driver import execute
from presence.db.engine import create_engine
from presence.settings import Settings

#: 2026-11-20T12:00:00.000Z, the recording time of every test change.
RECORDED_AT_MS = 1_795_176_000_000


def presence_change(
    uid: str, status: str = "online", *, at: str = "2026-11-20T12:00:00.000Z", **extra: Any
) -> NewChange:
    body = {
        "type": "presence",
        "uid": uid,
        "at": at,
        "presence": {"uid": uid, "status": status, "last_seen_at": at, "connections": []},
        **extra,
    }
    return NewChange("presence", uid, None, orjson.dumps(body).decode())


def receipt_change(conversation_id: str, reader: str, message_id: int, kind: str = "read") -> NewChange:
    body = {
        "type": "receipt",
        "conversation_id": conversation_id,
        "uid": reader,
        "kind": kind,
        "message_id": str(message_id),
        "at": "2026-11-20T12:00:00.000Z",
    }
    return NewChange("receipt", reader, conversation_id, orjson.dumps(body).decode())


def group_receipt_change(conversation_id: str, message_id: int, kind: str = "read") -> NewChange:
    body = {
        "type": "group_receipt",
        "conversation_id": conversation_id,
        "kind": kind,
        "message_id": str(message_id),
        "at": "2026-11-20T12:00:00.000Z",
    }
    return NewChange("group_receipt", None, conversation_id, orjson.dumps(body).decode())


def change_of(change_type: ChangeType, uid: str | None, conversation_id: str | None) -> NewChange:
    if change_type == "presence":
        assert uid is not None
        return presence_change(uid)
    assert conversation_id is not None
    if change_type == "receipt":
        assert uid is not None
        return receipt_change(conversation_id, uid, 1)
    return group_receipt_change(conversation_id, 1)


class ChangeWriter:
    """Records changes on one database, a transaction per :meth:`record`."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._recorder = ChangeRecorder(engine.dialect)

    async def record(self, *changes: NewChange) -> int:
        """Commit ``changes`` in one transaction; the last ``seq`` they took."""
        return await self.record_all(changes)

    async def record_all(self, changes: Sequence[NewChange]) -> int:
        taken: list[int] = []
        async with self.engine.begin() as connection:
            await execute(
                connection, self._recorder.steps(changes, recorded_at_ms=RECORDED_AT_MS, numbered=taken.append)
            )
        return taken[-1]


@contextlib.asynccontextmanager
async def change_writer(database_url: str) -> AsyncIterator[ChangeWriter]:
    engine = create_engine(Settings(database_url=database_url))
    try:
        yield ChangeWriter(engine)
    finally:
        await engine.dispose()
