"""The joins of ``presence.core.facts`` as conditional upserts.

Each statement inserts a fact's row or, if the row exists, keeps whichever of
the two the join keeps: a stale or repeated fact matches the ``WHERE`` of no
update and changes nothing, by construction. Rows are written in key order so
that two transactions touching the same rows take their locks in one order.

The two backends differ only in the ``INSERT … ON CONFLICT`` construct and in
the name of the two-argument maximum; both live in :class:`Dialect`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Insert, Table, and_, case, func, insert, or_
from sqlalchemy import Dialect as SADialect
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from presence.core.facts import Changes, MessageFact, ReceiptFact, SessionFact, UserFact, WatermarkFact
from presence.core.inbox import InboxRow
from presence.db.driver import CompiledUpsert, Statement, execute, instant_encoder, moment_encoder
from presence.db.models import (
    CHECKPOINT_TABLES,
    Base,
    InboxEvent,
    Message,
    Receipt,
    ReceiptWatermark,
    UserPresence,
    UserSession,
    table_of,
)


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


class Writer:
    """The statements of one backend, compiled once per engine.

    :meth:`statements` turns a batch into the driver's SQL and parameter tuples, values
    already in the form the driver takes, so executing them costs SQLAlchemy nothing per
    row. On SQLite an instant is text in the format of SQLAlchemy's ``DATETIME``
    (``2026-11-21 10:15:30.123000``), on PostgreSQL a timezone-aware ``datetime``: what
    :class:`presence.db.models.Instant` would bind (``tests/test_writes.py`` checks it).
    """

    def __init__(self, dialect: SADialect, *, checkpoint: bool = False) -> None:
        """``checkpoint``: write the checkpoint tables (retention folds pruned inbox rows into them)."""
        backend = Dialect.named(dialect.name)
        self._instant = instant_encoder(dialect)
        self._moment = moment_encoder(dialect)

        def table(model: type[Base]) -> Table:
            return CHECKPOINT_TABLES[table_of(model).name] if checkpoint else table_of(model)

        self._inbox = CompiledUpsert(insert(table_of(InboxEvent)), dialect, ("received_at", "trigger", "body"))
        self._user = CompiledUpsert(_user_upsert(backend, table(UserPresence)), dialect)
        self._session = CompiledUpsert(_session_upsert(backend, table(UserSession)), dialect)
        self._message = CompiledUpsert(_message_upsert(backend, table(Message)), dialect)
        self._receipt = CompiledUpsert(_receipt_upsert(backend, table(Receipt)), dialect)
        self._watermark = CompiledUpsert(_watermark_upsert(backend, table(ReceiptWatermark)), dialect)

    def statements(self, inbox: Sequence[InboxRow], changes: Changes) -> list[Statement]:
        """The inbox rows, then the joined facts, each table's rows in key order.

        Users come before sessions, and every table's rows are sorted by key: on PostgreSQL
        the user row's lock orders every writer of that user's sessions, and two transactions
        touching the same rows take their locks in one order.
        """
        instant, moment = self._instant, self._moment
        optional = self._optional_instant
        statements = []
        if inbox:
            rows = ({"received_at": moment(r.received_at), "trigger": r.trigger, "body": r.body} for r in inbox)
            statements.append(self._of(self._inbox, rows))
        if changes.users:
            users = (changes.users[k] for k in sorted(changes.users))
            statements.append(self._of(self._user, (_user_row(f, instant, optional) for f in users)))
        if changes.sessions:
            sessions = (changes.sessions[k] for k in sorted(changes.sessions))
            statements.append(self._of(self._session, (_session_row(f, instant, optional) for f in sessions)))
        if changes.messages:
            messages = (changes.messages[k] for k in sorted(changes.messages))
            statements.append(self._of(self._message, (_message_row(f, instant, optional) for f in messages)))
        if changes.receipts:
            receipts = (changes.receipts[k] for k in sorted(changes.receipts))
            statements.append(self._of(self._receipt, (_mark_row(f, instant) for f in receipts)))
        if changes.watermarks:
            watermarks = (changes.watermarks[k] for k in sorted(changes.watermarks))
            statements.append(self._of(self._watermark, (_mark_row(f, instant) for f in watermarks)))
        return statements

    async def apply(self, connection: AsyncConnection, changes: Changes) -> None:
        """Write ``changes`` in the transaction of ``connection`` (``presence rebuild``, tests)."""
        await execute(connection, self.statements((), changes))

    def _optional_instant(self, ms: int | None) -> Any:
        return None if ms is None else self._instant(ms)

    @staticmethod
    def _of(compiled: CompiledUpsert, rows: Iterable[dict[str, Any]]) -> Statement:
        return Statement(compiled.sql, compiled.rows(rows))


def _user_upsert(dialect: Dialect, table: Table) -> Insert:
    row = table.c
    statement = dialect.insert(table)
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


def _session_upsert(dialect: Dialect, table: Table) -> Insert:
    row = table.c
    statement = dialect.insert(table)
    new = statement.excluded
    replaced = ("signal_key", "live", "device_id", "platform", "connected_at", "disconnected_at", "received_at")
    return statement.on_conflict_do_update(  # type: ignore[no-any-return]
        index_elements=[row.uid, row.session_id],
        set_={name: new[name] for name in replaced},
        # The newer signal; the same one received again keeps its first reception.
        where=or_(
            new.signal_key > row.signal_key,
            and_(new.signal_key == row.signal_key, new.received_at < row.received_at),
        ),
    )


def _message_upsert(dialect: Dialect, table: Table) -> Insert:
    row = table.c
    statement = dialect.insert(table)
    new = statement.excluded
    # facts.join_message: the greater claim, then the later sent_at (a known one beats none).
    stronger = or_(
        new.claim > row.claim,
        and_(
            new.claim == row.claim,
            new.sent_at.is_not(None),
            or_(row.sent_at.is_(None), new.sent_at > row.sent_at),
        ),
    )
    earlier = new.received_at < row.received_at
    claimed = ("claim", "conversation_id", "sender", "sent_at")
    return statement.on_conflict_do_update(  # type: ignore[no-any-return]
        index_elements=[row.id],
        set_={
            **{name: case((stronger, new[name]), else_=row[name]) for name in claimed},
            "received_at": case((earlier, new.received_at), else_=row.received_at),
        },
        where=or_(stronger, earlier),
    )


def _receipt_upsert(dialect: Dialect, table: Table) -> Insert:
    row = table.c
    statement = dialect.insert(table)
    new = statement.excluded
    return statement.on_conflict_do_update(  # type: ignore[no-any-return]
        index_elements=[row.conversation_id, row.reader_uid, row.kind, row.message_id],
        set_={"at": new.at, "received_at": new.received_at},
        where=or_(new.at < row.at, and_(new.at == row.at, new.received_at < row.received_at)),
    )


def _watermark_upsert(dialect: Dialect, table: Table) -> Insert:
    row = table.c
    statement = dialect.insert(table)
    new = statement.excluded
    same_id = new.message_id == row.message_id
    return statement.on_conflict_do_update(  # type: ignore[no-any-return]
        index_elements=[row.conversation_id, row.reader_uid, row.kind],
        set_={"message_id": new.message_id, "at": new.at, "received_at": new.received_at},
        where=or_(
            new.message_id > row.message_id,
            and_(same_id, new.at < row.at),
            and_(same_id, new.at == row.at, new.received_at < row.received_at),
        ),
    )


def _user_row(fact: UserFact, instant: Callable[[int], Any], optional: Callable[[int | None], Any]) -> dict[str, Any]:
    return {
        "uid": fact.uid,
        "status": fact.status,
        "status_updated_at": optional(fact.status_updated_at_ms),
        "status_key": fact.status_key,
        "last_seen_at": instant(fact.last_seen_at_ms),
        "snapshot_key": fact.snapshot_key,
    }


def _session_row(
    fact: SessionFact, instant: Callable[[int], Any], optional: Callable[[int | None], Any]
) -> dict[str, Any]:
    return {
        "uid": fact.uid,
        "session_id": fact.session_id,
        "signal_key": fact.signal_key,
        "live": fact.live,
        "device_id": fact.device_id,
        "platform": fact.platform,
        "connected_at": optional(fact.connected_at_ms),
        "disconnected_at": optional(fact.disconnected_at_ms),
        "received_at": instant(fact.received_at_ms),
    }


def _message_row(
    fact: MessageFact, instant: Callable[[int], Any], optional: Callable[[int | None], Any]
) -> dict[str, Any]:
    return {
        "id": fact.message_id,
        "claim": fact.claim,
        "conversation_id": fact.conversation_id,
        "sender": fact.sender,
        "sent_at": optional(fact.sent_at_ms),
        "received_at": instant(fact.received_at_ms),
    }


def _mark_row(fact: ReceiptFact | WatermarkFact, instant: Callable[[int], Any]) -> dict[str, Any]:
    """A receipt and a watermark have the same columns; only their joins differ."""
    return {
        "conversation_id": fact.conversation_id,
        "reader_uid": fact.reader,
        "kind": fact.kind,
        "message_id": fact.message_id,
        "at": instant(fact.at_ms),
        "received_at": instant(fact.received_at_ms),
    }
