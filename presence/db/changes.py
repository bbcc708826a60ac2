"""The change feed's SQL (contract §9): numbering and storing a transaction's changes, reading them back.

A change is numbered as its transaction's last act: one ``UPDATE change_log … RETURNING`` takes
the next ``seq`` numbers, and the row stays locked until the commit. On PostgreSQL that update,
the changes' insert and the ``NOTIFY`` are one statement, so the lock is held for that statement
and the ``COMMIT`` alone: it serializes every commit that records changes, on every replica. So numbers are taken in
commit order on every backend, with any number of replicas: a transaction that took 10 has
committed (or rolled back, giving 10 back) before another can take 11. A reader that has seen N
never later finds a change below N appear, which a plain sequence would not promise
(docs/design.md, "The change feed"). On PostgreSQL the same transaction sends a ``NOTIFY``,
delivered at commit, to wake the streams of every replica.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal

from sqlalchemy import Dialect, Row, and_, bindparam, case, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from presence.db.driver import CompiledQuery, CompiledUpsert, Query, Statement, Step, instant_encoder
from presence.db.models import Change, ChangeLog, table_of

ChangeType = Literal["presence", "receipt", "group_receipt"]
#: The channel of the ``NOTIFY`` a PostgreSQL transaction sends when it recorded changes.
CHANNEL: Final = "presence_changes"

_change = table_of(Change)
_log = table_of(ChangeLog)


@dataclass(frozen=True, slots=True)
class NewChange:
    """A change to record: its type, what it is filtered by, and its JSON less ``seq``."""

    type: ChangeType
    uid: str | None
    conversation_id: str | None
    #: The change as the API shows it, without ``seq``: a JSON object.
    body: str


class ChangeRecorder:
    """The steps that number and store a transaction's changes, compiled once per dialect."""

    def __init__(self, dialect: Dialect) -> None:
        self._postgres = dialect.name == "postgresql"
        self._instant = instant_encoder(dialect)
        self._take = CompiledQuery.of(
            update(_log)
            .where(_log.c.id == 1)
            .values(last_seq=_log.c.last_seq + bindparam("count"))
            .returning(_log.c.last_seq),
            dialect,
        )
        self._insert = CompiledUpsert(
            insert(_change), dialect, ("seq", "type", "uid", "conversation_id", "recorded_at", "body")
        )
        self._notify = "SELECT pg_notify($1, $2)"
        self._take_store_notify = CompiledQuery(_TAKE_STORE_NOTIFY, _TAKE_STORE_NOTIFY_NAMES, {}, (None,))

    def steps(
        self, changes: Sequence[NewChange], *, recorded_at_ms: int, numbered: Callable[[int], None] | None = None
    ) -> list[Step]:
        """Number ``changes`` in order and store them; ``numbered`` hears the last ``seq`` taken.

        Run these last in the transaction: the ``change_log`` row is locked from here to the commit.
        """
        if not changes:
            return []
        count = len(changes)
        recorded_at = self._instant(recorded_at_ms)
        if self._postgres:
            return [self._in_one_statement(changes, count, recorded_at, numbered)]

        def store(rows: list[tuple[object, ...]]) -> list[Step]:
            last = rows[0][0]
            assert isinstance(last, int)
            first = last - count + 1
            values = (
                {
                    "seq": first + index,
                    "type": change.type,
                    "uid": change.uid,
                    "conversation_id": change.conversation_id,
                    "recorded_at": recorded_at,
                    "body": change.body,
                }
                for index, change in enumerate(changes)
            )
            steps: list[Step] = [Statement(self._insert.sql, self._insert.rows(values))]
            if self._postgres:
                steps.append(Statement(self._notify, [(CHANNEL, str(last))]))
            if numbered is not None:
                numbered(last)
            return steps

        return [Query(self._take, self._take.parameters(count=count), store)]

    def _in_one_statement(
        self, changes: Sequence[NewChange], count: int, recorded_at: Any, numbered: Callable[[int], None] | None
    ) -> Query:
        def heard(rows: list[tuple[object, ...]]) -> list[Step]:
            last = rows[0][0]
            assert isinstance(last, int)
            if numbered is not None:
                numbered(last)
            return []

        given = {
            "count": count,
            "recorded_at": recorded_at,
            "types": [change.type for change in changes],
            "uids": [change.uid for change in changes],
            "conversation_ids": [change.conversation_id for change in changes],
            "bodies": [change.body for change in changes],
            "channel": CHANNEL,
        }
        return Query(self._take_store_notify, self._take_store_notify.parameters(**given), heard)


#: PostgreSQL's numbering, storing and ``NOTIFY`` in one round trip (one statement, run last): the
#: ``change_log`` row is locked from it to the commit, with no round trip between but the ``COMMIT``,
#: so the committers that record changes, which it serializes, each hold it as briefly as can be.
#: The changes are numbered in the order of the arrays (``WITH ORDINALITY``), as the other backends do.
_TAKE_STORE_NOTIFY: Final = """\
WITH taken AS (
    UPDATE change_log SET last_seq = change_log.last_seq + $1::BIGINT WHERE change_log.id = 1 RETURNING last_seq
), stored AS (
    INSERT INTO change (seq, type, uid, conversation_id, recorded_at, body)
    SELECT taken.last_seq - $1::BIGINT + new.position, new.type, new.uid, new.conversation_id, $2::TIMESTAMPTZ, new.body
    FROM taken, unnest($3::VARCHAR[], $4::VARCHAR[], $5::VARCHAR[], $6::TEXT[])
        WITH ORDINALITY AS new (type, uid, conversation_id, body, position)
)
SELECT taken.last_seq, pg_notify($7::TEXT, taken.last_seq::TEXT) FROM taken"""
_TAKE_STORE_NOTIFY_NAMES: Final = ("count", "recorded_at", "types", "uids", "conversation_ids", "bodies", "channel")


def render(seq: int, body: str) -> str:
    """The change as the API answers it: ``seq`` first, then the stored JSON's members."""
    return f'{{"seq":{seq},{body[1:]}' if body != "{}" else f'{{"seq":{seq}}}'


class CursorExpired(Exception):
    """A cursor below what retention kept: the caller must read the current state again (``410``)."""

    def __init__(self, oldest_kept: int) -> None:
        super().__init__(f"changes up to {oldest_kept} have been pruned")
        self.oldest_kept = oldest_kept


@dataclass(frozen=True, slots=True)
class ChangePage:
    """Changes after a cursor, rendered, and the cursor to ask from next."""

    changes: list[tuple[int, str]]
    next_after: int


@dataclass(frozen=True, slots=True)
class ChangeFilter:
    uid: str | None = None
    type: ChangeType | None = None
    conversation_id: str | None = None

    def matches(self, change_type: str, uid: str | None, conversation_id: str | None) -> bool:
        """The same test as :func:`changes_after`'s ``WHERE``, for changes already in memory."""
        return (
            (self.uid is None or uid == self.uid)
            and (self.type is None or change_type == self.type)
            and (self.conversation_id is None or conversation_id == self.conversation_id)
        )


async def horizon(connection: AsyncConnection) -> tuple[int, int]:
    """``(pruned_through, last_seq)``: every change kept is above the first, none above the second."""
    row = (await connection.execute(select(_log.c.pruned_through, _log.c.last_seq).where(_log.c.id == 1))).one()
    return int(row[0]), int(row[1])


async def changes_after(
    connection: AsyncConnection, after: int, *, limit: int, where: ChangeFilter = ChangeFilter()
) -> ChangePage:
    """The changes above ``after`` that ``where`` matches, in ``seq`` order, at most ``limit``.

    The last ``seq`` is read first: everything at or below it has committed (numbers are taken in
    commit order and never skipped), so when fewer than ``limit`` match, the next cursor can skip
    to it, past every change that did not match. ``CursorExpired`` when ``after`` is below what
    retention kept.
    """
    live, next_after = await tail_after(connection, after, limit=limit, where=where)
    return ChangePage([(change.seq, change.json) for change in live], next_after)


async def latest_seq(connection: AsyncConnection) -> int:
    return (await horizon(connection))[1]


async def prune(connection: AsyncConnection, cutoff: datetime, *, limit: int) -> int:
    """Delete the oldest changes recorded before ``cutoff``, at most about ``limit``; the rows deleted.

    In ``seq`` order: the first ``limit`` changes recorded before ``cutoff``, and any lower ``seq``
    still there. ``pruned_through`` rises to the highest ``seq`` deleted (it never falls), in the
    same transaction and as its last statement, so the ``change_log`` row is locked only until the
    commit: a cursor below it is told it expired (``410``) rather than silently missing changes.
    """
    oldest = select(_change.c.seq).where(_change.c.recorded_at < cutoff).order_by(_change.c.seq).limit(limit).subquery()
    through = (await connection.execute(select(func.max(oldest.c.seq)))).scalar_one_or_none()
    if through is None:
        return 0
    deleted = await connection.execute(delete(_change).where(_change.c.seq <= through))
    await connection.execute(
        update(_log)
        .where(_log.c.id == 1)
        .values(pruned_through=case((_log.c.pruned_through < through, through), else_=_log.c.pruned_through))
    )
    return deleted.rowcount or 0


@dataclass(frozen=True, slots=True)
class LiveChange:
    """A change as the streams fan it out: what :class:`ChangeFilter` tests, and its JSON."""

    seq: int
    type: str
    uid: str | None
    conversation_id: str | None
    #: The change as the API answers it (:func:`render`).
    json: str


async def tail_after(
    connection: AsyncConnection, after: int, *, limit: int, where: ChangeFilter = ChangeFilter()
) -> tuple[list[LiveChange], int]:
    """:func:`changes_after`, each change with what filters test: for the streams, which filter in memory too."""
    pruned_through, last_seq = await horizon(connection)
    if after < pruned_through:
        raise CursorExpired(pruned_through)
    conditions = [_change.c.seq > after, _change.c.seq <= last_seq]
    if where.uid is not None:
        conditions.append(_change.c.uid == where.uid)
    if where.type is not None:
        conditions.append(_change.c.type == where.type)
    if where.conversation_id is not None:
        conditions.append(_change.c.conversation_id == where.conversation_id)
    rows = (
        await connection.execute(
            select(_change.c.seq, _change.c.type, _change.c.uid, _change.c.conversation_id, _change.c.body)
            .where(and_(*conditions))
            .order_by(_change.c.seq)
            .limit(limit)
        )
    ).all()
    changes = _live(rows)
    return changes, changes[-1].seq if len(changes) == limit else max(after, last_seq)


_tail = (
    select(_change.c.seq, _change.c.type, _change.c.uid, _change.c.conversation_id, _change.c.body)
    .where(_change.c.seq > bindparam("after"))
    .order_by(_change.c.seq)
    .limit(bindparam("limit"))
)


async def tail_from(connection: AsyncConnection, after: int, *, limit: int) -> list[LiveChange]:
    """Every change above ``after``, at most ``limit``, in ``seq`` order: in one statement, for the hub's tail.

    Unfiltered, what a statement sees is a prefix of ``seq``: numbers are taken in commit order and
    never skipped (a transaction rolled back gives its numbers back with its ``change_log`` update).
    So a first ``seq`` other than ``after + 1`` can only be retention's doing, and only then is the
    horizon read: ``CursorExpired`` when ``after`` is below what was kept.
    """
    rows = (await connection.execute(_tail, {"after": after, "limit": limit})).all()
    if rows and rows[0][0] != after + 1:
        pruned_through, _ = await horizon(connection)
        if after < pruned_through:
            raise CursorExpired(pruned_through)
    return _live(rows)


def _live(rows: Sequence[Row[Any, Any, Any, Any, Any]]) -> list[LiveChange]:
    """Rows of ``(seq, type, uid, conversation_id, body)`` as the streams fan them out."""
    return [
        LiveChange(int(seq), change_type, uid, conversation_id, render(int(seq), body))
        for seq, change_type, uid, conversation_id, body in rows
    ]
