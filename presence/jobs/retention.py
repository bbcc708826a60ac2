"""Retention: old inbox rows, messages and receipts are deleted in the background.

Each pass deletes, table by table, the rows older than their cutoff, at most
``retention_batch`` rows per transaction, so that no transaction holds a lock
long enough to hold up intake. A user's presence and sessions are never
expired. Several replicas may run passes at once: each deletes what is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Table, delete, select, tuple_
from sqlalchemy.ext.asyncio import AsyncEngine

from presence.db.models import InboxEvent, Message, Receipt, ReceiptWatermark, table_of
from presence.metrics import Metrics
from presence.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Expiry:
    """Rows of ``table`` whose ``column`` is older than ``cutoff`` are expired."""

    table: Table
    column: str
    cutoff: datetime


def expiries(settings: Settings, now: datetime) -> list[Expiry]:
    """What one pass deletes at ``now``: the clock is passed in."""
    receipts = now - settings.receipt_retention
    return [
        Expiry(table_of(InboxEvent), "received_at", now - settings.inbox_retention),
        Expiry(table_of(Receipt), "at", receipts),
        Expiry(table_of(ReceiptWatermark), "at", receipts),
        Expiry(table_of(Message), "noted_at", receipts),
    ]


async def run_pass(
    engine: AsyncEngine,
    settings: Settings,
    now: datetime,
    metrics: Metrics | None = None,
    stop: asyncio.Event | None = None,
) -> dict[str, int]:
    """Delete every expired row, a bounded batch per transaction; the rows deleted, by table.

    With ``stop`` set, the pass ends after the batch in progress.
    """
    deleted: dict[str, int] = {}
    for expiry in expiries(settings, now):
        if stop is not None and stop.is_set():
            break
        table = expiry.table
        key_columns = list(table.primary_key.columns)
        total = 0
        while True:
            expired = select(*key_columns).where(table.c[expiry.column] < expiry.cutoff).limit(settings.retention_batch)
            async with engine.begin() as connection:
                result = await connection.execute(delete(table).where(tuple_(*key_columns).in_(expired)))
            count = result.rowcount or 0
            total += count
            if count < settings.retention_batch or (stop is not None and stop.is_set()):
                break
            await asyncio.sleep(0)  # let intake's commits through between batches
        deleted[table.name] = total
        if metrics is not None and total:
            metrics.retention_deleted.labels(table=table.name).inc(total)
    return deleted


async def run_forever(
    engine: AsyncEngine,
    settings: Settings,
    metrics: Metrics,
    stop: asyncio.Event,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> None:
    """A pass every ``retention_interval`` seconds until ``stop`` is set; a failed pass is logged and retried.

    Stopping is never a cancellation in the middle of a query: the batch in
    progress commits, then the loop returns.
    """
    while not stop.is_set():
        try:
            deleted = await run_pass(engine, settings, clock(), metrics, stop)
            if any(deleted.values()):
                log.info("retention deleted %s", ", ".join(f"{n} {t}" for t, n in deleted.items() if n))
        except Exception as error:
            metrics.database_errors.labels(operation="retention").inc()
            log.warning("retention pass failed: %s: %s", type(error).__name__, error)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(settings.retention_interval):
                await stop.wait()
