"""``presence rebuild``: derive every table of state again, from the checkpoint and the inbox.

State is a join of facts, so it can be derived again in any order: after a fix to the
core, a rebuild gives the state the fix implies. Retention prunes the inbox, but not
before it has joined the pruned events' facts into the checkpoint tables; so the state
of every event ever received is the checkpoint joined with what the inbox still holds.
A rebuild starts from the checkpoint and replays the inbox over it.

It never loses state silently (contract §7). Rows that no checkpoint and no inbox
event can justify (their events were pruned before there was a checkpoint) would
vanish: the rebuild then refuses, says how many rows of which table it would lose,
and changes nothing, unless it is told to accept the loss.

The whole rebuild is one transaction: readers see the old state until it commits.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from sqlalchemy import Column, MetaData, Table, and_, delete, exists, func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from presence.db.conversations import recount_tallies, suspend_tallies
from presence.db.driver import execute
from presence.db.models import CHECKPOINT_TABLES, STATE_MODELS, InboxEvent, table_of
from presence.db.writes import Writer
from presence.jobs.replay import facts_of_inbox
from presence.settings import Settings

Progress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class RebuildSummary:
    replayed: int
    unreadable: int
    #: Rows the rebuild started from: the checkpoint of events retention pruned from the inbox.
    from_checkpoint: int
    #: Rows of the old state that nothing justified, by table (only with ``accept_loss``).
    lost: Mapping[str, int]


class RebuildWouldLose(Exception):
    """The rebuild would leave less state than there was; nothing was changed."""

    def __init__(self, lost: Mapping[str, int]) -> None:
        rows = ", ".join(f"{count} {table} rows" for table, count in lost.items())
        super().__init__(
            f"rebuild would lose {rows} that neither the inbox nor the checkpoint holds any more "
            "(retention pruned their events before this version kept a checkpoint); nothing was changed. "
            "Run `presence rebuild --accept-loss` to rebuild anyway"
        )
        self.lost = dict(lost)


async def rebuild(
    engine: AsyncEngine,
    *,
    settings: Settings,
    batch_size: int = 2000,
    progress: Progress | None = None,
    accept_loss: bool = False,
) -> RebuildSummary:
    writer = Writer(engine.dialect)
    inbox = table_of(InboxEvent)
    replayed = unreadable = 0
    async with engine.begin() as connection:
        total = (await connection.execute(select(func.count()).select_from(inbox))).scalar_one()
        remembered = await _remember_keys(connection)
        await suspend_tallies(connection)
        for model in STATE_MODELS:
            await connection.execute(delete(table_of(model)))
        from_checkpoint = 0
        for model in STATE_MODELS:
            from_checkpoint += await _copy(connection, CHECKPOINT_TABLES[table_of(model).name], table_of(model))
        last_id = 0
        while True:
            rows = (
                await connection.execute(
                    select(inbox.c.id, inbox.c.received_at, inbox.c.body)
                    .where(inbox.c.id > last_id)
                    .order_by(inbox.c.id)
                    .limit(batch_size)
                )
            ).all()
            if not rows:
                break
            changes, unreadable_here = facts_of_inbox(rows, settings)
            await execute(connection, writer.statements((), changes))
            unreadable += unreadable_here
            replayed += len(rows)
            last_id = rows[-1].id
            if progress is not None:
                progress(replayed, total)
        await recount_tallies(connection)
        lost = await _lost_keys(connection, remembered)
        if lost and not accept_loss:
            raise RebuildWouldLose(lost)  # leaving the block rolls everything back
    return RebuildSummary(replayed=replayed, unreadable=unreadable, from_checkpoint=from_checkpoint, lost=lost)


async def _copy(connection: AsyncConnection, source: Table, target: Table) -> int:
    columns = [column.name for column in target.columns]
    result = await connection.execute(insert(target).from_select(columns, select(*(source.c[n] for n in columns))))
    return result.rowcount or 0


def _remembered(table: Table) -> Table:
    """A temporary table for the keys ``table`` held before the rebuild."""
    keys = [Column(column.name, column.type) for column in table.primary_key.columns]
    return Table(f"rebuild_old_{table.name}", MetaData(), *keys, prefixes=["TEMPORARY"])


async def _remember_keys(connection: AsyncConnection) -> list[tuple[Table, Table]]:
    """The keys of the state before the rebuild, in temporary tables of this transaction's connection."""
    remembered = []
    for model in STATE_MODELS:
        table = table_of(model)
        old = _remembered(table)
        # SQLite's driver runs DDL outside the transaction: one left by a failed rebuild may be there.
        await connection.run_sync(old.drop, checkfirst=True)
        await connection.run_sync(old.create)
        keys = [column.name for column in old.columns]
        await connection.execute(insert(old).from_select(keys, select(*(table.c[key] for key in keys))))
        remembered.append((table, old))
    return remembered


async def _lost_keys(connection: AsyncConnection, remembered: list[tuple[Table, Table]]) -> dict[str, int]:
    """Rows, by table, whose key was in the state before the rebuild and is not now."""
    lost = {}
    for table, old in remembered:
        still_there = exists().where(and_(*(table.c[column.name] == column for column in old.columns)))
        count = (await connection.execute(select(func.count()).select_from(old).where(~still_there))).scalar_one()
        await connection.run_sync(old.drop)
        if count:
            lost[table.name] = count
    return lost
