"""``presence rebuild``: derive every table of state again from the inbox.

State is a join of facts, so replaying the inbox in any order gives the state
that intake built; after a fix to the core, it gives the state the fix implies.
The whole rebuild is one transaction: readers see the old state until it commits.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import orjson
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from presence.core.events import InvalidEvent, parse_event
from presence.core.facts import Changes
from presence.db.models import InboxEvent, Message, Receipt, ReceiptWatermark, UserPresence, UserSession
from presence.db.writes import Writer

STATE_TABLES = (ReceiptWatermark, Receipt, Message, UserSession, UserPresence)


@dataclass(frozen=True, slots=True)
class RebuildSummary:
    replayed: int
    unreadable: int


Progress = Callable[[int, int], None]


async def rebuild(engine: AsyncEngine, *, batch_size: int = 2000, progress: Progress | None = None) -> RebuildSummary:
    writer = Writer(engine.dialect)
    replayed = unreadable = 0
    async with engine.begin() as connection:
        total = (await connection.execute(select(func.count()).select_from(InboxEvent))).scalar_one()
        for table in STATE_TABLES:
            await connection.execute(delete(table))
        last_id = 0
        while True:
            rows = (
                await connection.execute(
                    select(InboxEvent.id, InboxEvent.body)
                    .where(InboxEvent.id > last_id)
                    .order_by(InboxEvent.id)
                    .limit(batch_size)
                )
            ).all()
            if not rows:
                break
            changes = Changes()
            for row in rows:
                try:
                    changes.add(parse_event(orjson.loads(row.body)))
                except (orjson.JSONDecodeError, InvalidEvent):
                    unreadable += 1
            await writer.apply(connection, changes)
            replayed += len(rows)
            last_id = rows[-1].id
            if progress is not None:
                progress(replayed, total)
    return RebuildSummary(replayed=replayed, unreadable=unreadable)
