"""Everything the database holds, to assert that a request changed nothing (or what it changed)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from presence.db.models import Base


async def dump(database: str | AsyncEngine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, sorted, by table name: of a database URL, or through an engine kept open."""
    engine = create_async_engine(database) if isinstance(database, str) else database
    try:
        async with engine.connect() as connection:
            tables = {}
            for table in Base.metadata.sorted_tables:
                rows = (await connection.execute(select(table))).all()
                tables[table.name] = sorted((tuple(row) for row in rows), key=repr)
            return tables
    finally:
        if isinstance(database, str):
            await engine.dispose()


#: The change feed's tables (contract §9).
CHANGE_FEED_TABLES = ("change", "change_log", "forward_state")
#: Whose turn it is to reconcile (contract §10): bookkeeping, not state.
RECONCILE_TABLES = ("reconcile_state",)


async def state_tables(database_url: str, *, without_checkpoint: bool = False) -> dict[str, list[tuple[Any, ...]]]:
    """Every table but the inbox: the state the service derives (and its checkpoint, unless told not to).

    Not the change feed's tables: its changes say how the state was reached (which commits, in which
    order, when), which differs between two intakes of the same events that reach the same state.
    Nor reconciliation's turn.
    """
    tables = await dump(database_url)
    for name in ("inbox_event", *CHANGE_FEED_TABLES, *RECONCILE_TABLES):
        del tables[name]
    if without_checkpoint:
        tables = {name: rows for name, rows in tables.items() if not name.startswith("checkpoint_")}
    return tables


def without_reception(tables: dict[str, list[tuple[Any, ...]]]) -> dict[str, list[tuple[Any, ...]]]:
    """``tables`` without their ``received_at`` columns: what two intakes of the same events share."""
    stripped = {}
    for name, rows in tables.items():
        columns = [column.name for column in Base.metadata.tables[name].columns]
        if "received_at" not in columns:
            stripped[name] = rows
            continue
        at = columns.index("received_at")
        stripped[name] = sorted((row[:at] + row[at + 1 :] for row in rows), key=repr)
    return stripped


async def inbox_count(database_url: str) -> int:
    return len((await dump(database_url))["inbox_event"])
