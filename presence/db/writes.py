"""The joins of ``presence.core.facts`` as conditional upserts.

Each statement inserts a fact's row or, if the row exists, keeps whichever of
the two the join keeps: a stale or repeated fact matches the ``WHERE`` of no
update and changes nothing, by construction. Rows are written in key order so
that two transactions touching the same rows take their locks in one order.

The two backends differ only in the ``INSERT … ON CONFLICT`` construct and in
the name of the two-argument maximum; both live in :class:`Dialect`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Insert, Table, and_, case, func, insert, or_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from presence.core.facts import Changes, MessageFact, ReceiptFact, SessionFact, UserFact, WatermarkFact
from presence.core.times import ms_to_datetime
from presence.db.models import InboxEvent, Message, Receipt, ReceiptWatermark, UserPresence, UserSession, table_of


@dataclass(frozen=True, slots=True)
class Dialect:
    """What differs between SQLite and PostgreSQL, in one place."""

    insert: Callable[[Table], Any]
    greatest: Callable[[ColumnElement[Any], ColumnElement[Any]], ColumnElement[Any]]

    @classmethod
    def named(cls, name: str) -> Dialect:
        if name == "sqlite":
            return cls(insert=sqlite.insert, greatest=func.max)
        if name == "postgresql":
            return cls(insert=postgresql.insert, greatest=func.greatest)
        raise ValueError(f"unsupported database backend: {name}")


@dataclass(frozen=True, slots=True)
class InboxRow:
    received_at: datetime
    trigger: str
    body: str


class Writer:
    """The statements of one backend, built once per engine."""

    def __init__(self, dialect_name: str) -> None:
        dialect = Dialect.named(dialect_name)
        self._inbox = insert(table_of(InboxEvent))
        self._user = _user_upsert(dialect)
        self._session = _session_upsert(dialect)
        self._message = _message_upsert(dialect)
        self._receipt = _receipt_upsert(dialect)
        self._watermark = _watermark_upsert(dialect)

    async def append_inbox(self, connection: AsyncConnection, rows: Sequence[InboxRow]) -> None:
        if rows:
            await connection.execute(
                self._inbox, [{"received_at": r.received_at, "trigger": r.trigger, "body": r.body} for r in rows]
            )

    async def apply(self, connection: AsyncConnection, changes: Changes) -> None:
        # Users before sessions: on PostgreSQL the user row's lock orders every
        # writer of that user's sessions.
        if changes.users:
            await connection.execute(self._user, [_user_row(changes.users[k]) for k in sorted(changes.users)])
        if changes.sessions:
            await connection.execute(
                self._session, [_session_row(changes.sessions[k]) for k in sorted(changes.sessions)]
            )
        if changes.messages:
            await connection.execute(
                self._message, [_message_row(changes.messages[k]) for k in sorted(changes.messages)]
            )
        if changes.receipts:
            await connection.execute(self._receipt, [_mark_row(changes.receipts[k]) for k in sorted(changes.receipts)])
        if changes.watermarks:
            await connection.execute(
                self._watermark, [_mark_row(changes.watermarks[k]) for k in sorted(changes.watermarks)]
            )


def _user_upsert(dialect: Dialect) -> Insert:
    row = table_of(UserPresence).c
    statement = dialect.insert(table_of(UserPresence))
    new = statement.excluded
    newer_status = new.status_key > row.status_key
    return statement.on_conflict_do_update(  # type: ignore[no-any-return]
        index_elements=[row.uid],
        set_={
            "status": case((newer_status, new.status), else_=row.status),
            "status_updated_at": case((newer_status, new.status_updated_at), else_=row.status_updated_at),
            "status_key": dialect.greatest(new.status_key, row.status_key),
            "last_seen_at": dialect.greatest(new.last_seen_at, row.last_seen_at),
            "snapshot_key": dialect.greatest(new.snapshot_key, row.snapshot_key),
        },
        where=or_(
            newer_status,
            new.last_seen_at > row.last_seen_at,
            new.snapshot_key > row.snapshot_key,
        ),
    )


def _session_upsert(dialect: Dialect) -> Insert:
    row = table_of(UserSession).c
    statement = dialect.insert(table_of(UserSession))
    new = statement.excluded
    replaced = ("signal_key", "live", "device_id", "platform", "connected_at", "disconnected_at")
    return statement.on_conflict_do_update(  # type: ignore[no-any-return]
        index_elements=[row.uid, row.session_id],
        set_={name: new[name] for name in replaced},
        where=new.signal_key > row.signal_key,
    )


def _message_upsert(dialect: Dialect) -> Insert:
    row = table_of(Message).c
    statement = dialect.insert(table_of(Message))
    new = statement.excluded
    stronger = new.claim > row.claim
    earlier = or_(row.noted_at.is_(None), new.noted_at < row.noted_at)
    claimed = ("claim", "conversation_id", "sender", "sent_at")
    return statement.on_conflict_do_update(  # type: ignore[no-any-return]
        index_elements=[row.id],
        set_={
            **{name: case((stronger, new[name]), else_=row[name]) for name in claimed},
            "noted_at": case((and_(new.noted_at.is_not(None), earlier), new.noted_at), else_=row.noted_at),
        },
        where=or_(stronger, and_(new.noted_at.is_not(None), earlier)),
    )


def _receipt_upsert(dialect: Dialect) -> Insert:
    row = table_of(Receipt).c
    statement = dialect.insert(table_of(Receipt))
    new = statement.excluded
    return statement.on_conflict_do_update(  # type: ignore[no-any-return]
        index_elements=[row.conversation_id, row.reader_uid, row.kind, row.message_id],
        set_={"at": new.at},
        where=new.at < row.at,
    )


def _watermark_upsert(dialect: Dialect) -> Insert:
    row = table_of(ReceiptWatermark).c
    statement = dialect.insert(table_of(ReceiptWatermark))
    new = statement.excluded
    return statement.on_conflict_do_update(  # type: ignore[no-any-return]
        index_elements=[row.conversation_id, row.reader_uid, row.kind],
        set_={"message_id": new.message_id, "at": new.at},
        where=or_(new.message_id > row.message_id, and_(new.message_id == row.message_id, new.at < row.at)),
    )


def _instant(ms: int | None) -> datetime | None:
    return None if ms is None else ms_to_datetime(ms)


def _user_row(fact: UserFact) -> dict[str, Any]:
    return {
        "uid": fact.uid,
        "status": fact.status,
        "status_updated_at": _instant(fact.status_updated_at_ms),
        "status_key": fact.status_key,
        "last_seen_at": ms_to_datetime(fact.last_seen_at_ms),
        "snapshot_key": fact.snapshot_key,
    }


def _session_row(fact: SessionFact) -> dict[str, Any]:
    return {
        "uid": fact.uid,
        "session_id": fact.session_id,
        "signal_key": fact.signal_key,
        "live": fact.live,
        "device_id": fact.device_id,
        "platform": fact.platform,
        "connected_at": _instant(fact.connected_at_ms),
        "disconnected_at": _instant(fact.disconnected_at_ms),
    }


def _message_row(fact: MessageFact) -> dict[str, Any]:
    return {
        "id": fact.message_id,
        "claim": fact.claim,
        "conversation_id": fact.conversation_id,
        "sender": fact.sender,
        "sent_at": _instant(fact.sent_at_ms),
        "noted_at": _instant(fact.noted_at_ms),
    }


def _mark_row(fact: ReceiptFact | WatermarkFact) -> dict[str, Any]:
    """A receipt and a watermark have the same columns; only their joins differ."""
    return {
        "conversation_id": fact.conversation_id,
        "reader_uid": fact.reader,
        "kind": fact.kind,
        "message_id": fact.message_id,
        "at": ms_to_datetime(fact.at_ms),
    }
