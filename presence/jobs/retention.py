"""Retention: old inbox rows, messages, receipts and ended sessions are deleted in the background.

Age is measured from when the service received an event, never from the times inside it:
an import of last year's history is kept for the whole window, like anything received today.

Each pass works table by table, at most ``retention_batch`` rows per transaction, so that no
transaction holds a lock long enough to hold up intake. Several replicas may run passes at
once: each deletes what is left, and what two of them fold into the checkpoint twice joins to
the same rows.

- **Inbox rows** are not simply deleted: in the same transaction, the facts of the events they
  hold are joined into the checkpoint tables (:data:`presence.db.models.CHECKPOINT_TABLES`), so
  that ``presence rebuild`` can start from them and lose nothing the inbox no longer holds.
- **Messages, receipts, watermarks and group aggregates** (timed and untimed) older than
  ``receipt_retention`` go, from the state and from the checkpoint alike.
- **Changes** (contract §9) recorded longer ago than ``change_retention`` go in ``seq`` order,
  and ``change_log.pruned_through`` rises to the highest deleted: an older cursor is ``410``.
- **Sessions** that have ended and whose last signal is older than ``receipt_retention`` go the
  same way: a user's history stays for the window. A live session, a user's presence, a group
  and its members are never expired.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import ColumnElement, Table, and_, delete, not_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncEngine

from presence.db import changes
from presence.db.driver import execute
from presence.db.models import (
    CHECKPOINT_TABLES,
    GroupReceipt,
    GroupReceiptFlag,
    InboxEvent,
    Message,
    Receipt,
    ReceiptWatermark,
    UserPresence,
    UserSession,
    table_of,
)
from presence.db.writes import Writer
from presence.jobs.replay import facts_of_inbox
from presence.metrics import Metrics
from presence.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Expiry:
    """Rows of ``table`` for which ``expired`` holds are deleted."""

    table: Table
    expired: ColumnElement[bool]


def expiries(settings: Settings, now: datetime) -> list[Expiry]:
    """What one pass deletes beside the inbox, at ``now``: the clock is passed in."""
    cutoff = now - settings.receipt_retention
    found = []
    for model in (Receipt, ReceiptWatermark, GroupReceipt, GroupReceiptFlag, Message, UserSession):
        for table in (table_of(model), CHECKPOINT_TABLES[table_of(model).name]):
            expired = table.c.received_at < cutoff
            if model is UserSession:
                expired = and_(expired, _ended(table))
            found.append(Expiry(table, expired))
    return found


def _ended(sessions: Table) -> ColumnElement[bool]:
    """Not live: ended by its own signal, or older than its user's newest snapshot (``facts.is_live``)."""
    user = table_of(UserPresence)
    live_now = (
        select(user.c.uid).where(user.c.uid == sessions.c.uid, sessions.c.signal_key >= user.c.snapshot_key).exists()
    )
    return not_(and_(sessions.c.live.is_(True), live_now))


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
    stopped = stop.is_set if stop is not None else (lambda: False)
    deleted = {"inbox_event": await _prune_inbox(engine, settings, now - settings.inbox_retention, stopped)}
    if not stopped():
        deleted["change"] = await _prune_changes(engine, settings, now - settings.change_retention, stopped)
    for expiry in expiries(settings, now):
        if stopped():
            break
        deleted[expiry.table.name] = await _delete(engine, settings, expiry, stopped)
    if metrics is not None:
        for table, count in deleted.items():
            if count:
                metrics.retention_deleted.labels(table=table).inc(count)
    return deleted


async def _prune_inbox(engine: AsyncEngine, settings: Settings, cutoff: datetime, stopped: Callable[[], bool]) -> int:
    """Fold the oldest inbox rows into the checkpoint and delete them, a batch per transaction."""
    writer = Writer(engine.dialect, checkpoint=True)
    inbox = table_of(InboxEvent)
    total = 0
    while True:
        async with engine.begin() as connection:
            rows = (
                await connection.execute(
                    select(inbox.c.id, inbox.c.received_at, inbox.c.body)
                    .where(inbox.c.received_at < cutoff)
                    .order_by(inbox.c.id)
                    .limit(settings.retention_batch)
                )
            ).all()
            if rows:
                changes, _unreadable = facts_of_inbox(rows, settings)
                await execute(connection, writer.statements((), changes))
                await connection.execute(delete(inbox).where(inbox.c.id.in_([row.id for row in rows])))
        total += len(rows)
        if len(rows) < settings.retention_batch or stopped():
            return total
        await asyncio.sleep(0)  # let intake's commits through between batches


async def _prune_changes(engine: AsyncEngine, settings: Settings, cutoff: datetime, stopped: Callable[[], bool]) -> int:
    total = 0
    while True:
        async with engine.begin() as connection:
            count = await changes.prune(connection, cutoff, limit=settings.retention_batch)
        total += count
        if count < settings.retention_batch or stopped():
            return total
        await asyncio.sleep(0)


async def _delete(engine: AsyncEngine, settings: Settings, expiry: Expiry, stopped: Callable[[], bool]) -> int:
    table = expiry.table
    key_columns = list(table.primary_key.columns)
    total = 0
    while True:
        expired = select(*key_columns).where(expiry.expired).limit(settings.retention_batch)
        async with engine.begin() as connection:
            result = await connection.execute(delete(table).where(tuple_(*key_columns).in_(expired)))
        count = result.rowcount or 0
        total += count
        if count < settings.retention_batch or stopped():
            return total
        await asyncio.sleep(0)


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
