"""Forwarding's SQL (contract §9): the lease that makes one replica the sender, and its cursor.

The one ``forward_state`` row holds how far the changes have been delivered and which process
holds the lease to send them. Every write is a conditional ``UPDATE`` of that row, in a
transaction of its own that never waits on the app: the lease is taken only when it is free,
expired or already ours, and the cursor moves only while the lease is still ours, so a sender
that lost it (paused past its lease, then resumed) cannot move the cursor of the one that took over.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from presence.db.models import Change, ChangeLog, ForwardState, table_of

_state = table_of(ForwardState)
_log = table_of(ChangeLog)
_change = table_of(Change)


@dataclass(frozen=True, slots=True)
class Lease:
    """Who holds the lease, until when, and the cursor: every change at or below it was delivered."""

    holder: str | None
    lease_until: datetime | None
    delivered_through: int | None

    def free_for(self, holder: str, now: datetime) -> bool:
        """Whether ``holder`` may take the lease at ``now``: nobody holds it, it expired, or it is ours."""
        return self.holder is None or self.holder == holder or self.lease_until is None or self.lease_until <= now


async def read_lease(connection: AsyncConnection) -> Lease:
    row = (
        await connection.execute(
            select(_state.c.holder, _state.c.lease_until, _state.c.delivered_through).where(_state.c.id == 1)
        )
    ).one()
    return Lease(row.holder, row.lease_until, row.delivered_through)


async def take_lease(connection: AsyncConnection, holder: str, *, now: datetime, until: datetime) -> int | None:
    """Take or renew the lease until ``until``; the cursor, or ``None`` when another holds it.

    Forwarding that never ran starts from the last change recorded: what was recorded before it
    was configured is not sent (the app reads the current state with the queries instead).
    """
    started = select(_log.c.last_seq).where(_log.c.id == 1).scalar_subquery()
    result = await connection.execute(
        update(_state)
        .where(
            _state.c.id == 1,
            or_(
                _state.c.holder.is_(None),
                _state.c.holder == holder,
                _state.c.lease_until.is_(None),
                _state.c.lease_until <= now,
            ),
        )
        .values(
            holder=holder,
            lease_until=until,
            delivered_through=func.coalesce(_state.c.delivered_through, started),
        )
    )
    if result.rowcount != 1:
        return None
    return (await read_lease(connection)).delivered_through


async def advance(connection: AsyncConnection, holder: str, *, through: int, until: datetime) -> bool:
    """Every change up to ``through`` was delivered: move the cursor and renew the lease, if still ours."""
    result = await connection.execute(
        update(_state)
        .where(and_(_state.c.id == 1, _state.c.holder == holder))
        .values(delivered_through=through, lease_until=until)
    )
    return result.rowcount == 1


async def release(connection: AsyncConnection, holder: str) -> None:
    """Give the lease up (a clean stop), so that another replica takes over at once."""
    await connection.execute(
        update(_state).where(and_(_state.c.id == 1, _state.c.holder == holder)).values(holder=None, lease_until=None)
    )


async def oldest_undelivered(connection: AsyncConnection) -> datetime | None:
    """When the oldest change not yet delivered was recorded; ``None`` when every one was (or forwarding never ran)."""
    cursor = select(_state.c.delivered_through).where(_state.c.id == 1).scalar_subquery()
    return (
        await connection.execute(
            select(_change.c.recorded_at).where(_change.c.seq > cursor).order_by(_change.c.seq).limit(1)
        )
    ).scalar_one_or_none()
