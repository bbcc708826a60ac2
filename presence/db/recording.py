"""The change feed's reads inside the intake transaction (contract §9; docs/design.md, "The change feed").

A batch's transaction reads what its keys hold before its writes and again after them
(``Query`` steps), and ``presence.core.changes`` says which differences are changes; their
bodies are the answers the query API gives now. Every key of a kind is read in one round trip,
never one query per key: on SQLite the keys go as one JSON array parameter (``json_each``), on
PostgreSQL as one array per field (``unnest``), each key looked up by index; there the readings
after the writes are one round trip together.

What makes the two readings of a key belong to one transaction alone:

- a reader's receipts: the lock of its watermark row, taken before the first reading;
- a group's aggregates (timed and untimed): the lock row of the staircase, likewise;
- a user's presence: on PostgreSQL a transaction-scoped advisory lock per uid, in sorted order,
  taken before anything else; SQLite has one writer. Without it, two replicas' transactions on
  one user could both read the old state, and a stale event committed after a newer one would
  record the newer state a second time.
- a member's ``read_through`` (migration 0009's triggers, kept from both sides): the same advisory
  lock of the member's uid, for every uid whose member rows or read watermarks the batch writes.
  A member row inserted while another transaction raised that member's watermark would otherwise
  miss it (each trigger reads before the other commits), and ``unread_by`` would list a reader.

With nothing changed no ``change_log`` step is run, so its row lock is taken only by batches
that record something.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Dialect,
    Select,
    String,
    and_,
    bindparam,
    func,
    literal_column,
    select,
    true,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.sql.selectable import TableValuedAlias

from presence.core import changes as decide
from presence.core.facts import Changes, order_key_ms
from presence.db import reads
from presence.db.changes import ChangeRecorder, ChangeType, NewChange
from presence.db.driver import CompiledQuery, Query, Statement, Step
from presence.db.models import GroupReceipt, GroupReceiptFlag, Message, Receipt, UserPresence, table_of
from presence.http.responses import group_receipt_change_body, presence_change_body, receipt_change_body

#: The first key of the two-key advisory locks a transaction takes per uid: "presence" less one byte.
USER_LOCK_SPACE: Final = int.from_bytes(b"pres", "big", signed=True)

_receipt = table_of(Receipt)
_group_receipt = table_of(GroupReceipt)
_flag = table_of(GroupReceiptFlag)
_message = table_of(Message)

ReceiptKey = tuple[str, str, str, int]  # conversation, reader, kind, message id
GroupKey = tuple[str, str, int]  # conversation, kind, message id


def user_lock_key(uid: str) -> int:
    """The second key of a uid's advisory lock: 32 bits of a digest (a collision only serializes more)."""
    return int.from_bytes(hashlib.blake2b(uid.encode(), digest_size=4).digest(), "big", signed=True)


@dataclass(slots=True)
class ChangeSink:
    """What one transaction recorded, for its committer once it has committed.

    Written by the transaction's steps (on SQLite in the writer thread); a transaction run again
    after losing a race writes it again from the start.
    """

    recorded_at_ms: int
    #: The changes numbered, in ``seq`` order.
    changes: list[NewChange] = field(default_factory=list)
    #: The last ``seq`` taken; ``None`` when nothing changed.
    last_seq: int | None = None

    def _numbered(self, last: int) -> None:
        self.last_seq = last


class Recording:
    """The change feed's queries of one backend, compiled once."""

    def __init__(self, dialect: Dialect) -> None:
        self._postgres = dialect.name == "postgresql"
        self.recorder = ChangeRecorder(dialect)
        if self._postgres:
            self._presences, self._receipts, self._group_receipts, self._flags = _postgres_reads(dialect)
        else:
            self._presences, self._receipts, self._group_receipts, self._flags = _sqlite_reads(dialect)
        #: Every uid's lock in one statement, in key order: the subquery's ORDER BY (which keeps it from
        #: being flattened) sorts the keys before the outer query takes any lock.
        self._together: dict[tuple[str, ...], CompiledQuery] = {}
        self._lock = (
            "SELECT pg_advisory_xact_lock($1::INTEGER, key)"
            " FROM (SELECT key FROM unnest($2::INTEGER[]) AS keys (key) ORDER BY key) AS sorted"
        )

    def together(self, queries: Sequence[CompiledQuery]) -> CompiledQuery:
        """PostgreSQL's ``queries`` as one, its one row an array of each one's rows (asyncpg decodes them).

        Each query's ``ORDER BY`` holds: a subquery that sorts is not flattened, and a plain scan of
        it keeps its order. Built once per combination of queries.
        """
        key = tuple(query.sql for query in queries)
        found = self._together.get(key)
        if found is None:
            arrays, offset = [], 0
            for query in queries:
                # Its placeholders after the previous queries' ($1 of the second is $3 after two).
                sql = _shifted(query.sql, offset)
                # Our own compiled SQL, composed: no value is ever formatted into it.
                arrays.append(f"ARRAY(SELECT ROW(reading.*) FROM ({sql}) AS reading)")  # noqa: S608
                offset += len(query.names)
            found = CompiledQuery(
                sql="SELECT " + ", ".join(arrays),
                names=tuple(f"p{index}" for index in range(offset)),
                defaults={},
                processors=(None,) * len(queries),
            )
            self._together[key] = found
        return found

    def batch(self, changes: Changes, sink: ChangeSink) -> BatchRecording:
        return BatchRecording(self, changes, sink)


class BatchRecording:
    """The reading steps of one batch, to place among its writes, and the numbering at the end."""

    def __init__(self, recording: Recording, changes: Changes, sink: ChangeSink) -> None:
        self._recording = recording
        self._sink = sink
        self._users = sorted(changes.users)
        #: Whose advisory lock the transaction takes first: the users whose presence it records, and
        #: those whose member rows or read watermarks it writes. The latter two keep each other's
        #: ``read_through`` (migration 0009's triggers), which a member row inserted while another
        #: transaction raises the member's watermark would miss: each sees neither the other's row.
        self._locked = sorted(
            {
                *self._users,
                *(uid for _, uid in changes.members),
                *(uid for _, uid in changes.participants),
                *(reader for _, reader, kind in changes.watermarks if kind == "read"),
            }
        )
        #: The time of each user's newest event in the batch: its joined status key's.
        self._user_at = {uid: order_key_ms(changes.users[uid].status_key) for uid in self._users}
        receipts = changes.receipts
        self._receipt_keys: list[ReceiptKey] = sorted(
            {(c, reader, kind, step.message_id) for (c, reader, kind), stairs in receipts.items() for step in stairs}
        )
        self._group_keys: list[GroupKey] = sorted(
            {(c, kind, step.message_id) for (c, kind), stairs in changes.group_receipts.items() for step in stairs}
        )
        self._flag_keys: list[GroupKey] = sorted(changes.group_flags)
        self._presences_before: dict[str, tuple[str, frozenset[Hashable]]] = {}
        self._receipts_before: dict[ReceiptKey, datetime] = {}
        self._groups_before: dict[GroupKey, datetime] = {}
        self._flags_before: set[GroupKey] = set()

    def lock_users(self) -> list[Step]:
        """On PostgreSQL, the advisory lock of each uid, in order: the transaction's first step."""
        if not self._locked or not self._recording._postgres:
            return []
        keys = sorted({user_lock_key(uid) for uid in self._locked})
        return [Statement(self._recording._lock, [(USER_LOCK_SPACE, keys)])]

    def users_before(self) -> list[Step]:
        if not self._users:
            return []

        def keep(rows: list[tuple[Any, ...]]) -> list[Step]:
            self._presences_before = _views(rows)
            return []

        return [self._read(self._recording._presences, self._users, keep)]

    def receipts_before(self) -> list[Step]:
        """After the watermark rows' upsert (their locks), before the receipts' writes."""
        if not self._receipt_keys:
            return []

        def keep(rows: list[tuple[Any, ...]]) -> list[Step]:
            self._receipts_before = {(c, u, k, m): at for c, u, k, m, at in rows}
            return []

        return [self._read(self._recording._receipts, self._receipt_keys, keep)]

    def groups_before(self) -> list[Step]:
        """After the lock rows' upsert, before the group aggregates' writes."""
        steps: list[Step] = []
        if self._group_keys:

            def keep(rows: list[tuple[Any, ...]]) -> list[Step]:
                self._groups_before = {(c, k, m): at for c, k, m, at in rows}
                return []

            steps.append(self._read(self._recording._group_receipts, self._group_keys, keep))
        if self._flag_keys:

            def keep_flags(rows: list[tuple[Any, ...]]) -> list[Step]:
                self._flags_before = {(c, k, m) for c, k, m, _ in rows}
                return []

            steps.append(self._read(self._recording._flags, self._flag_keys, keep_flags))
        return steps

    def finish(self) -> list[Step]:
        """The readings after every write, then the changes numbered and stored: the last steps."""
        found: list[NewChange] = []
        readings: list[tuple[CompiledQuery, Sequence[Any], Callable[[list[tuple[Any, ...]]], None]]] = []
        recording = self._recording

        def users(rows: list[tuple[Any, ...]]) -> None:
            changed = decide.changed_presences(self._presences_before, _views(rows))
            if not changed:
                return
            # The answers only of the users that changed: most of a busy batch's users did not.
            picked = set(changed)
            after = reads.presences_from_rows(row for row in rows if row[0] in picked)
            for uid in changed:
                found.append(
                    NewChange("presence", uid, None, presence_change_body(uid, self._user_at[uid], after[uid]))
                )

        def receipts(rows: list[tuple[Any, ...]]) -> None:
            after = {(c, u, k, m): at for c, u, k, m, at in rows}
            for c, u, k, m in decide.earlier_or_new(self._receipts_before, after):
                found.append(NewChange("receipt", u, c, receipt_change_body(c, u, k, m, after[c, u, k, m])))

        def groups(rows: list[tuple[Any, ...]]) -> None:
            after = {(c, k, m): at for c, k, m, at in rows}
            for c, k, m in decide.earlier_or_new(self._groups_before, after):
                found.append(NewChange("group_receipt", None, c, group_receipt_change_body(c, k, m, after[c, k, m])))

        def flags(rows: list[tuple[Any, ...]]) -> None:
            sent_at = {(c, k, m): at for c, k, m, at in rows}
            for c, k, m in decide.new_keys(self._flags_before, sent_at):
                found.append(NewChange("group_receipt", None, c, group_receipt_change_body(c, k, m, sent_at[c, k, m])))

        if self._users:
            readings.append((recording._presences, self._users, users))
        if self._receipt_keys:
            readings.append((recording._receipts, self._receipt_keys, receipts))
        if self._group_keys:
            readings.append((recording._group_receipts, self._group_keys, groups))
        if self._flag_keys:
            readings.append((recording._flags, self._flag_keys, flags))
        sink = self._sink

        def numbered() -> list[Step]:
            sink.changes = list(found)
            sink.last_seq = None
            return recording.recorder.steps(found, recorded_at_ms=sink.recorded_at_ms, numbered=sink._numbered)

        if not readings:
            return []
        query, keys, first = readings[0]

        def afresh(rows: list[tuple[Any, ...]]) -> None:
            # A transaction run again (it lost a race with a peer) reads and decides again.
            found.clear()
            first(rows)

        readings[0] = (query, keys, afresh)
        if recording._postgres and len(readings) > 1:
            return [self._together(readings, numbered)]
        # Each reading's rows decide, then the next reading runs; after the last, the numbering.
        following: Callable[[], list[Step]] = numbered
        for query, keys, handle in reversed(readings):
            following = _then(self, query, keys, handle, following)
        return following()

    def _together(
        self,
        readings: Sequence[tuple[CompiledQuery, Sequence[Any], Callable[[list[tuple[Any, ...]]], None]]],
        following: Callable[[], list[Step]],
    ) -> Query:
        """On PostgreSQL, the readings after the writes in one round trip: one row of an array each.

        They read one snapshot rather than one each, which changes nothing: every key they read is
        locked by this transaction (advisory, watermark and staircase locks), and its writes are done.
        """
        queries = [query for query, _, _ in readings]
        together = self._recording.together(queries)
        params = tuple(value for query, keys, _ in readings for value in self._read(query, keys, _unused).params)

        def then(rows: list[tuple[Any, ...]]) -> list[Step]:
            for (query, _, handle), found in zip(readings, rows[0], strict=True):
                handle(query.convert([tuple(row) for row in found]))
            return following()

        return Query(together, params, then)

    def _read(
        self, query: CompiledQuery, keys: Sequence[Any], keep: Callable[[list[tuple[Any, ...]]], list[Step]]
    ) -> Query:
        if not self._recording._postgres:
            return Query(query, query.parameters(keys=json.dumps(list(keys))), keep)
        if keys and isinstance(keys[0], tuple):
            # One array per field of the keys: what unnest() takes apart again, row by row.
            return Query(query, tuple(list(field) for field in zip(*keys, strict=True)), keep)
        return Query(query, (list(keys),), keep)


#: A placeholder of compiled PostgreSQL SQL, ``$1``.
_PLACEHOLDER: Final = re.compile(r"\$(\d+)")


def _shifted(sql: str, offset: int) -> str:
    """Compiled PostgreSQL ``sql`` with each placeholder ``$n`` made ``$(n + offset)``."""

    def shift(number: re.Match[str]) -> str:
        return f"${int(number[1]) + offset}"

    return _PLACEHOLDER.sub(shift, sql)


def _unused(_rows: list[tuple[Any, ...]]) -> list[Step]:
    return []


def _then(
    batch: BatchRecording,
    query: CompiledQuery,
    keys: Sequence[Any],
    handle: Callable[[list[tuple[Any, ...]]], None],
    following: Callable[[], list[Step]],
) -> Callable[[], list[Step]]:
    def step() -> list[Step]:
        def then(rows: list[tuple[Any, ...]]) -> list[Step]:
            handle(rows)
            return following()

        return [batch._read(query, keys, then)]

    return step


def _sqlite_reads(dialect: Dialect) -> tuple[CompiledQuery, CompiledQuery, CompiledQuery, CompiledQuery]:
    """The four readings on SQLite: the keys as one JSON array parameter, ``json_each``'s rows."""

    def keys() -> TableValuedAlias:
        return func.json_each(bindparam("keys", type_=String)).table_valued("value")

    def field(keys: TableValuedAlias, index: int) -> ColumnElement[Any]:
        return func.json_extract(keys.c.value, literal_column(f"'$[{index}]'"))

    uids = keys()
    presences = CompiledQuery.of(reads.presences_where(UserPresence.uid.in_(select(uids.c.value))), dialect)
    r, g, f = _receipt.c, _group_receipt.c, _flag.c
    k = keys()
    receipts = select(r.conversation_id, r.reader_uid, r.kind, r.message_id, r.at).join_from(
        k,
        _receipt,
        and_(
            r.conversation_id == field(k, 0),
            r.reader_uid == field(k, 1),
            r.kind == field(k, 2),
            r.message_id == field(k, 3),
        ),
    )
    k = keys()
    groups = select(g.conversation_id, g.kind, g.message_id, g.at).join_from(
        k,
        _group_receipt,
        and_(g.conversation_id == field(k, 0), g.kind == field(k, 1), g.message_id == field(k, 2)),
    )
    k = keys()
    flags = (
        select(f.conversation_id, f.kind, f.message_id, _message.c.sent_at)
        .join_from(k, _flag, and_(f.conversation_id == field(k, 0), f.kind == field(k, 1), f.message_id == field(k, 2)))
        .outerjoin(_message, _message.c.id == f.message_id)
    )
    return (
        presences,
        CompiledQuery.of(receipts, dialect),
        CompiledQuery.of(groups, dialect),
        CompiledQuery.of(flags, dialect),
    )


def _postgres_reads(dialect: Dialect) -> tuple[CompiledQuery, CompiledQuery, CompiledQuery, CompiledQuery]:
    """The four readings on PostgreSQL: one array parameter per field of the keys, ``unnest``'s rows.

    Each key's rows are found by a ``LATERAL`` subquery that ``OFFSET 0`` keeps from being flattened
    into a join: the planner then looks each key up by index, whatever the statistics say. Joined
    plainly, a batch's few keys met tables the planner took for small (intake fills them from empty,
    faster than autovacuum analyzes them) and it scanned the whole of ``user_session`` and
    ``user_presence`` twice per batch: 3 ms per reading at 3,000 users, most of PostgreSQL's time.
    """

    def keys(*types: tuple[str, type[String] | type[BigInteger]]) -> TableValuedAlias:
        arrays = [bindparam(f"k{index}", type_=ARRAY(kind)) for index, (_, kind) in enumerate(types)]
        return func.unnest(*arrays).table_valued(*(name for name, _ in types)).render_derived(name="keys")

    def each(keys: TableValuedAlias, found: Select[*tuple[Any, ...]]) -> Select[*tuple[Any, ...]]:
        per_key = found.offset(literal_column("0")).lateral("found")
        return select(*per_key.c).select_from(keys.join(per_key, true()))

    uids = keys(("uid", String))
    presences = each(uids, reads.presences_where(UserPresence.uid == uids.c.uid))
    p = presences.selected_columns
    presences = presences.order_by(p.uid, p.connected_at.is_(None), p.connected_at, p.session_id)
    r, g, f = _receipt.c, _group_receipt.c, _flag.c
    k = keys(("c", String), ("u", String), ("k", String), ("m", BigInteger))
    receipts = each(
        k,
        select(r.conversation_id, r.reader_uid, r.kind, r.message_id, r.at).where(
            r.conversation_id == k.c.c, r.reader_uid == k.c.u, r.kind == k.c.k, r.message_id == k.c.m
        ),
    )
    k = keys(("c", String), ("k", String), ("m", BigInteger))
    groups = each(
        k,
        select(g.conversation_id, g.kind, g.message_id, g.at).where(
            g.conversation_id == k.c.c, g.kind == k.c.k, g.message_id == k.c.m
        ),
    )
    k = keys(("c", String), ("k", String), ("m", BigInteger))
    flags = each(
        k,
        select(f.conversation_id, f.kind, f.message_id, _message.c.sent_at)
        .outerjoin(_message, _message.c.id == f.message_id)
        .where(f.conversation_id == k.c.c, f.kind == k.c.k, f.message_id == k.c.m),
    )
    return (
        CompiledQuery.of(presences, dialect),
        CompiledQuery.of(receipts, dialect),
        CompiledQuery.of(groups, dialect),
        CompiledQuery.of(flags, dialect),
    )


def _views(rows: Iterable[Sequence[Any]]) -> dict[str, tuple[str, frozenset[Hashable]]]:
    """Each user's :func:`presence.core.changes.presence_view` from rows of ``reads.presences_where``'s columns."""
    statuses: dict[str, str] = {}
    connections: dict[str, list[Hashable]] = {}
    for row in rows:
        uid = row[0]
        if uid not in statuses:
            statuses[uid] = row[1]
            connections[uid] = []
        if row[4] is not None:
            # The connection as the answer shows it: session, device, platform, connected_at.
            connections[uid].append(tuple(row[4:8]))
    return {uid: decide.presence_view(status, connections[uid]) for uid, status in statuses.items()}


def change_types(changes: Iterable[NewChange]) -> dict[ChangeType, int]:
    """How many changes of each type (the metrics count them once their commit succeeded)."""
    counts: dict[ChangeType, int] = {}
    for change in changes:
        counts[change.type] = counts.get(change.type, 0) + 1
    return counts
