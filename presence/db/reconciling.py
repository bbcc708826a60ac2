"""Reconciliation's SQL (contract §10): what a pass reads of the service's users, and whose turn it is.

Every read is one bounded batch on a connection of its own, never a transaction held across
requests to CometChat: a pass's corrections are written by the committer, like webhooks.
The one ``reconcile_state`` row says when the next background pass is due; a replica runs
one only after moving that time forward with a conditional ``UPDATE``, so at most one
replica at a time asks CometChat (on PostgreSQL as on a shared SQLite file).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from presence.core.facts import order_key_ms
from presence.core.reconcile import Known
from presence.db import reads
from presence.db.models import ReconcileState, UserPresence, table_of

_state = table_of(ReconcileState)


async def online_after(connection: AsyncConnection, after: str | None, limit: int) -> list[tuple[str, Known]]:
    """Up to ``limit`` users stored ``online``, in uid order after ``after`` (the ``(status, uid)`` index)."""
    query = (
        select(UserPresence.uid, UserPresence.status, UserPresence.status_key)
        .where(UserPresence.status == "online")
        .order_by(UserPresence.uid)
        .limit(limit)
    )
    if after is not None:
        query = query.where(UserPresence.uid > after)
    rows = await connection.execute(query)
    return [(uid, Known(status, order_key_ms(key))) for uid, status, key in rows]


async def known_of(connection: AsyncConnection, uids: Sequence[str], floor: bytes | None = None) -> dict[str, Known]:
    """What the service holds of each of ``uids`` it has seen, its status as the API answers it now.

    ``floor``: ``PRESENCE_CONNECTION_TTL``'s (``reads.ttl_floor``): a user stored ``online`` whom the TTL
    expired answers ``offline``, and CometChat listing them online is a correction to make.
    """
    if not uids:
        return {}
    rows = await connection.execute(
        select(UserPresence.uid, UserPresence.status, UserPresence.status_key, reads.answers_online(floor)).where(
            UserPresence.uid.in_(uids)
        )
    )
    return {
        uid: Known("online" if online else "offline" if status == "online" else status, order_key_ms(key))
        for uid, status, key, online in rows
    }


async def claim_pass(connection: AsyncConnection, holder: str, *, now: datetime, next_at: datetime) -> bool:
    """Take the pass due at ``now``, if no replica took it: the next is then due at ``next_at``."""
    result = await connection.execute(
        update(_state)
        .where(_state.c.id == 1, or_(_state.c.next_pass_at.is_(None), _state.c.next_pass_at <= now))
        .values(next_pass_at=next_at, holder=holder)
    )
    return result.rowcount == 1
