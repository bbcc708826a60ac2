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
from typing import Any, Final, cast

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Delete,
    FromClause,
    Insert,
    Table,
    Update,
    and_,
    any_,
    bindparam,
    case,
    delete,
    false,
    func,
    insert,
    or_,
    select,
    true,
    update,
)
from sqlalchemy import Dialect as SADialect
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from presence.core.facts import (
    Changes,
    GroupFact,
    GroupReceiptFact,
    MemberFact,
    MessageFact,
    ParticipantFact,
    ReceiptFact,
    SessionFact,
    UserFact,
    WatermarkFact,
)
from presence.core.facts import GroupReceiptFlag as GroupReceiptFlagFact
from presence.core.inbox import InboxRow
from presence.db.driver import (
    CompiledUpsert,
    Query,
    Statement,
    Step,
    execute,
    instant_encoder,
    moment_encoder,
    with_writes,
)
from presence.db.models import (
    CHECKPOINT_TABLES,
    Base,
    ChatGroup,
    ConversationParticipant,
    GroupMember,
    GroupReceipt,
    GroupReceiptFlag,
    GroupReceiptLock,
    InboxEvent,
    Message,
    Receipt,
    ReceiptWatermark,
    UserPresence,
    UserSession,
    table_of,
)
from presence.db.recording import BatchRecording, ChangeSink, Recording


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
        self._postgres = dialect.name == "postgresql"

        def table(model: type[Base]) -> Table:
            return CHECKPOINT_TABLES[table_of(model).name] if checkpoint else table_of(model)

        # The rows of a statement checked by ``expect`` are built as tuples in its columns' order.
        self._inbox = CompiledUpsert(insert(table_of(InboxEvent)), dialect, _INBOX).expect(_INBOX)
        self._user = CompiledUpsert(_user_upsert(backend, table(UserPresence)), dialect).expect(_USER)
        self._session = CompiledUpsert(_session_upsert(backend, table(UserSession)), dialect).expect(_SESSION)
        self._superseded = CompiledUpsert(
            _superseded_sessions_cleared(table(UserSession), table(UserPresence)), dialect
        )
        #: On PostgreSQL the same for every user of a batch in one execution, not one per user.
        self._superseded_at_once = (
            CompiledUpsert(_superseded_sessions_cleared_at_once(table(UserSession), table(UserPresence)), dialect)
            if dialect.name == "postgresql"
            else None
        )
        self._message = CompiledUpsert(_message_upsert(backend, table(Message)), dialect).expect(_MESSAGE)
        self._receipt_prune = CompiledUpsert(_receipt_prune(table(Receipt)), dialect)
        self._receipt = CompiledUpsert(_receipt_insert(backend, table(Receipt)), dialect)
        self._watermark = CompiledUpsert(_watermark_upsert(backend, table(ReceiptWatermark)), dialect).expect(_MARK)
        # The lock rows are not state: the checkpoint's writers take the same ones.
        self._group_lock = CompiledUpsert(_lock_upsert(backend, table_of(GroupReceiptLock)), dialect)
        self._group_receipt_prune = CompiledUpsert(_receipt_prune(table(GroupReceipt)), dialect)
        self._group_receipt = CompiledUpsert(_receipt_insert(backend, table(GroupReceipt)), dialect)
        self._group_flag = CompiledUpsert(_flag_upsert(backend, table(GroupReceiptFlag)), dialect).expect(_FLAG)
        self._group = CompiledUpsert(_group_upsert(backend, table(ChatGroup)), dialect).expect(_GROUP)
        # read_through is the triggers' (migration 0009): never among the columns written.
        self._member = CompiledUpsert(_member_upsert(backend, table(GroupMember)), dialect, _MEMBER).expect(_MEMBER)
        self._participant = CompiledUpsert(
            _participant_upsert(backend, table(ConversationParticipant)), dialect, _PARTICIPANT
        ).expect(_PARTICIPANT)
        self._recording = None if checkpoint else Recording(dialect)

    def statements(self, inbox: Sequence[InboxRow], changes: Changes) -> list[Statement]:
        """The inbox rows, then the joined facts, each table's rows in key order; no change recorded.

        Users come before sessions, and every table's rows are sorted by key: on PostgreSQL
        the user row's lock orders every writer of that user's sessions, and two transactions
        touching the same rows take their locks in one order. ``presence rebuild`` and
        retention's checkpoint write this way: they record no changes.
        """
        return cast(list[Statement], self.steps(inbox, changes, record=None))

    def steps(self, inbox: Sequence[InboxRow], changes: Changes, *, record: ChangeSink | None) -> list[Step]:
        """:meth:`statements`, and with ``record`` the batch's changes (contract §9) in the same transaction.

        The changes are derived by reads among the writes and numbered and stored as the last
        steps (``presence.db.recording``); ``record`` hears what was recorded. Without it the
        steps are only statements.
        """
        if record is not None and self._recording is None:
            raise ValueError("a checkpoint writer records no changes")
        batch = None if record is None or self._recording is None else self._recording.batch(changes, record)
        # On PostgreSQL, a recording batch sends statements that do not depend on one another as one
        # (presence.db.driver.with_writes): a round trip each costs both sides more than most of
        # the statements do. The uids' advisory locks, taken first, keep every other recording
        # writer off the rows that the parts of one statement write in an order of its own
        # (PostgreSQL 15 runs the main query, then the WITH clauses last to first). A writer that
        # takes no such lock (``presence rebuild`` beside intake) can deadlock with one: PostgreSQL
        # then fails one of the two (40P01), which is transient and retried.
        merge = batch is not None and self._postgres
        steps: list[Step] = []
        lock = [] if batch is None else batch.lock_users()
        inbox_rows = None
        if inbox:
            moment = self._moment
            inbox_rows = Statement(self._inbox.sql, [(moment(r.received_at), r.trigger, r.body) for r in inbox])
        if merge and inbox_rows is not None and len(lock) == 1 and isinstance(lock[0], Statement):
            # The inbox rows with the locks: they take no lock a peer could wait for.
            steps += with_writes([inbox_rows], lock[0], unmerged="after")
        else:
            steps += lock
            if inbox_rows is not None:
                steps.append(inbox_rows)
        presence = self._presence_steps(changes, batch, merge=merge)
        if changes.messages:
            instant = self._instant
            # By conversation, then id: on PostgreSQL each message's tally trigger locks its
            # conversation's tally rows (migration 0010), so concurrent batches meet in one order.
            facts = changes.messages
            messages = (facts[k] for k in sorted(facts, key=lambda k: (facts[k].conversation_id, k)))
            message_rows = Statement(self._message.sql, [_message_row(f, instant) for f in messages])
            if merge and changes.users and isinstance(presence[-1], Statement):
                # With the clearing of superseded sessions, presence's last step: neither reads the other's rows.
                *presence, superseded = presence
                presence += with_writes([message_rows], superseded, unmerged="after")
            else:
                presence.append(message_rows)
        steps += presence
        steps += self._receipt_steps(changes, batch)
        groups = self._group_steps(changes, batch)
        finish = [] if batch is None else batch.finish()
        if merge and changes.participants and finish and isinstance(finish[0], Query):
            # The participants (group_steps' last) with the first reading after the writes, which
            # does not read them; their trigger reads the watermarks, written by then.
            *groups, participants = groups
            if isinstance(participants, Statement):
                finish = [*with_writes([participants], finish[0], unmerged="before"), *finish[1:]]
            else:
                groups.append(participants)
        steps += groups
        steps += finish
        return steps

    def _presence_steps(self, changes: Changes, batch: BatchRecording | None, *, merge: bool) -> list[Step]:
        instant = self._instant
        before = [] if batch is None else batch.users_before()
        writes: list[Statement] = []
        if changes.users:
            users = (changes.users[k] for k in sorted(changes.users))
            writes.append(Statement(self._user.sql, [_user_row(f, instant) for f in users]))
        if changes.sessions:
            sessions = (changes.sessions[k] for k in sorted(changes.sessions))
            writes.append(Statement(self._session.sql, [_session_row(f, instant) for f in sessions]))
        steps: list[Step]
        if merge and writes and len(before) == 1 and isinstance(before[0], Query):
            # The reading of the users before the writes, in the same statement: it sees what was there before.
            steps = with_writes(writes, before[0], unmerged="after")
        else:
            steps = [*before, *writes]
        if changes.users:
            # After the sessions: a late signal older than the stored snapshot is cleared as well.
            uids = sorted(changes.users)
            if self._superseded_at_once is not None:
                steps.append(Statement(self._superseded_at_once.sql, [(uids,)]))
            else:
                steps.append(self._of(self._superseded, ({"uid": uid} for uid in uids)))
        return steps

    def _receipt_steps(self, changes: Changes, batch: BatchRecording | None) -> list[Step]:
        instant = self._instant
        steps: list[Step] = []
        if changes.watermarks:
            # Before the receipts: the watermark row's lock serializes every writer of its reader's receipts.
            watermarks = (changes.watermarks[k] for k in sorted(changes.watermarks))
            steps.append(Statement(self._watermark.sql, [_watermark_row(f, instant) for f in watermarks]))
        if changes.receipts:
            # The batch's staircases hold no receipt that dominates another, so all the deletes can go
            # before all the inserts (docs/design.md, "Receipts").
            receipts = [_mark_row(f, instant) for k in sorted(changes.receipts) for f in changes.receipts[k]]
            if batch is not None:
                steps += batch.receipts_before()
            steps.append(self._of(self._receipt_prune, receipts))
            steps.append(self._of(self._receipt, receipts))
        return steps

    def _group_steps(self, changes: Changes, batch: BatchRecording | None) -> list[Step]:
        instant, optional = self._instant, self._optional_instant
        steps: list[Step] = []
        # The lock row of each staircase first, in key order: it serializes the writers of that
        # staircase (and, when changes are recorded, of its untimed aggregates) as the watermark
        # rows serialize a reader's receipts.
        staircases = set(changes.group_receipts)
        if batch is not None:
            staircases.update((c, k) for c, k, _ in changes.group_flags)
        if staircases:
            locks = ({"conversation_id": c, "kind": k} for c, k in sorted(staircases))
            steps.append(self._of(self._group_lock, locks))
        if batch is not None:
            steps += batch.groups_before()
        if changes.group_receipts:
            stairs = changes.group_receipts
            rows = [_group_receipt_row(f, instant) for k in sorted(stairs) for f in stairs[k]]
            steps.append(self._of(self._group_receipt_prune, rows))
            steps.append(self._of(self._group_receipt, rows))
        if changes.group_flags:
            flags = (changes.group_flags[k] for k in sorted(changes.group_flags))
            steps.append(Statement(self._group_flag.sql, [_group_flag_row(f, instant) for f in flags]))
        if changes.groups:
            groups = (changes.groups[k] for k in sorted(changes.groups))
            steps.append(Statement(self._group.sql, [_group_row(f) for f in groups]))
        if changes.members:
            members = (changes.members[k] for k in sorted(changes.members))
            steps.append(Statement(self._member.sql, [_member_row(f, optional) for f in members]))
        if changes.participants:
            participants = (changes.participants[k] for k in sorted(changes.participants))
            steps.append(Statement(self._participant.sql, [_participant_row(f) for f in participants]))
        return steps

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
    # facts.join_user: the status from the newest event, its time from the newest that dates it.
    newer_dating = new.status_updated_key > row.status_updated_key
    return statement.on_conflict_do_update(  # type: ignore[no-any-return]
        index_elements=[row.uid],
        set_={
            "status": case((newer_status, new.status), else_=row.status),
            "status_source": case((newer_status, new.status_source), else_=row.status_source),
            "status_updated_at": case((newer_dating, new.status_updated_at), else_=row.status_updated_at),
            "status_key": dialect.greatest(new.status_key, row.status_key),
            "last_seen_at": dialect.greatest(new.last_seen_at, row.last_seen_at),
            "snapshot_key": dialect.greatest(new.snapshot_key, row.snapshot_key),
            "status_updated_key": dialect.greatest(new.status_updated_key, row.status_updated_key),
        },
        where=or_(
            newer_status,
            newer_dating,
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


def _superseded_sessions_cleared(session: Table, user: Table) -> Update:
    """Clear ``live`` on the user's sessions whose newest signal is older than the user's snapshot.

    ``facts.is_live`` already says they are not live; clearing the flag keeps the live rows (and
    the indexes on them) to the live sessions. Snapshot keys only grow and a session's flag is only
    set again by a newer signal, so this is idempotent and monotone (docs/design.md).
    """
    snapshot = select(user.c.snapshot_key).where(user.c.uid == bindparam("uid")).scalar_subquery()
    return (
        update(session)
        .where(session.c.uid == bindparam("uid"), session.c.live == true(), session.c.signal_key < snapshot)
        .values(live=false())
    )


def _superseded_sessions_cleared_at_once(session: Table, user: Table) -> Update:
    """:func:`_superseded_sessions_cleared` for every uid of an array at once (PostgreSQL).

    One execution rather than one per user: each session row is compared with its own user's
    snapshot, so it clears what the per-user statements would. The rows it locks are of users
    whose rows this transaction has upserted (and locked) just before, as those statements do.
    """
    snapshot = select(user.c.snapshot_key).where(user.c.uid == session.c.uid).scalar_subquery()
    uids: BindParameter[Any] = bindparam("uids", type_=postgresql.ARRAY(session.c.uid.type))
    return (
        update(session)
        .where(session.c.uid == any_(uids), session.c.live == true(), session.c.signal_key < snapshot)
        .values(live=false())
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
    # The latest edit and the earliest deletion known; a known time beats none.
    later_edit = _known_and(new.edited_at, row.edited_at, new.edited_at > row.edited_at)
    earlier_deletion = _known_and(new.deleted_at, row.deleted_at, new.deleted_at < row.deleted_at)
    claimed = ("claim", "conversation_id", "sender", "sent_at")
    return statement.on_conflict_do_update(  # type: ignore[no-any-return]
        index_elements=[row.id],
        set_={
            **{name: case((stronger, new[name]), else_=row[name]) for name in claimed},
            "received_at": case((earlier, new.received_at), else_=row.received_at),
            "edited_at": case((later_edit, new.edited_at), else_=row.edited_at),
            "deleted_at": case((earlier_deletion, new.deleted_at), else_=row.deleted_at),
        },
        where=or_(stronger, earlier, later_edit, earlier_deletion),
    )


def _known_and(new: ColumnElement[Any], stored: ColumnElement[Any], better: ColumnElement[bool]) -> ColumnElement[bool]:
    """``new`` is known and either nothing is stored or it is ``better`` than what is."""
    return and_(new.is_not(None), or_(stored.is_(None), better))


def _staircase(table: Table) -> tuple[str, ...]:
    """The columns that name a staircase: the key less the message id.

    ``receipt``: conversation, reader and kind; ``group_receipt``: conversation and kind. The
    statements below serve both.
    """
    return tuple(column.name for column in table.primary_key.columns if column.name != "message_id")


def _same_reader(table: FromClause, staircase: Sequence[str]) -> ColumnElement[bool]:
    """The rows of the staircase (reader, kind and conversation) of the receipt bound as parameters."""
    return and_(*(table.c[name] == bindparam(name) for name in staircase))


def _receipt_prune(table: Table) -> Delete:
    """Delete the stored receipts that the new one dominates (``facts.dominates``), itself excepted.

    On a staircase they are one run of steps: from the first step at or after the new time (found
    by the ``(…, at)`` index) up to the new message id. Bounding the scan by both ends touches only
    the rows deleted; ``message_id <= new`` alone would read every earlier step of the reader.
    """
    staircase = _staircase(table)
    new_id: BindParameter[int] = bindparam("message_id")
    new_at: BindParameter[Any] = bindparam("at")
    first_later = table.alias("first_later")
    run_start = (
        select(first_later.c.message_id)
        .where(_same_reader(first_later, staircase), first_later.c.at >= new_at)
        .order_by(first_later.c.at)
        .limit(1)
        .scalar_subquery()
    )
    return delete(table).where(
        _same_reader(table, staircase),
        table.c.message_id >= run_start,
        table.c.message_id <= new_id,
        table.c.at >= new_at,
        # Itself excepted; but the same receipt received later is dominated by its first reception.
        or_(table.c.message_id < new_id, table.c.at > new_at, table.c.received_at > bindparam("received_at")),
    )


def _receipt_insert(dialect: Dialect, table: Table) -> Insert:
    """Insert the new receipt unless a stored one dominates it (``facts.join_receipt``).

    On a staircase the earliest receipt at or above the new message id is the first step there,
    so only that step is read. Run after :func:`_receipt_prune`, under the lock of the reader's
    watermark row, no stored row has the new message id and a later time, so the conflict clause
    never acts; it keeps the statement a join should that ever be untrue.
    """
    staircase = _staircase(table)
    columns = (*staircase, "message_id", "at", "received_at")
    values = [bindparam(name, type_=table.c[name].type) for name in columns]
    first_above = table.alias("first_above")
    earliest_above = (
        select(first_above.c.at)
        .where(_same_reader(first_above, staircase), first_above.c.message_id >= bindparam("message_id"))
        .order_by(first_above.c.message_id)
        .limit(1)
        .scalar_subquery()
    )
    dominated = earliest_above <= bindparam("at")
    statement = dialect.insert(table).from_select(
        columns, select(*values).where(or_(earliest_above.is_(None), ~dominated))
    )
    row = table.c
    return statement.on_conflict_do_update(  # type: ignore[no-any-return]
        index_elements=[row[name] for name in (*staircase, "message_id")],
        set_={"at": statement.excluded.at, "received_at": statement.excluded.received_at},
        where=or_(
            statement.excluded.at < row.at,
            and_(statement.excluded.at == row.at, statement.excluded.received_at < row.received_at),
        ),
    )


def _lock_upsert(dialect: Dialect, table: Table) -> Insert:
    """Take the lock of a staircase's row (made if new), changing nothing.

    PostgreSQL locks the conflicting row of an ``INSERT … ON CONFLICT DO UPDATE`` even when its
    ``WHERE`` holds for no row, and a concurrent insert of the same new key waits for the first
    to commit; so the statements after this one run only once the transaction holds the lock.
    """
    row = table.c
    statement = dialect.insert(table)
    return statement.on_conflict_do_update(  # type: ignore[no-any-return]
        index_elements=[row.conversation_id, row.kind],
        set_={"kind": statement.excluded.kind},
        where=false(),
    )


def _flag_upsert(dialect: Dialect, table: Table) -> Insert:
    """``facts.join_flag``: the same aggregate received again keeps its first reception."""
    row = table.c
    statement = dialect.insert(table)
    new = statement.excluded
    return statement.on_conflict_do_update(  # type: ignore[no-any-return]
        index_elements=[row.conversation_id, row.kind, row.message_id],
        set_={"received_at": new.received_at},
        where=new.received_at < row.received_at,
    )


def _group_upsert(dialect: Dialect, table: Table) -> Insert:
    """``facts.join_group``: the newest event's count, the newest deletion."""
    row = table.c
    statement = dialect.insert(table)
    new = statement.excluded
    newer = new.key > row.key
    return statement.on_conflict_do_update(  # type: ignore[no-any-return]
        index_elements=[row.guid],
        set_={
            "key": dialect.greatest(new.key, row.key),
            "members_count": case((newer, new.members_count), else_=row.members_count),
            "deleted_key": dialect.greatest(new.deleted_key, row.deleted_key),
        },
        where=or_(newer, new.deleted_key > row.deleted_key),
    )


def _member_upsert(dialect: Dialect, table: Table) -> Insert:
    """``facts.join_member``: the newest event about the member."""
    row = table.c
    statement = dialect.insert(table)
    new = statement.excluded
    return statement.on_conflict_do_update(  # type: ignore[no-any-return]
        index_elements=[row.guid, row.uid],
        set_={name: new[name] for name in ("key", "member", "joined_at")},
        where=new.key > row.key,
    )


def _participant_upsert(dialect: Dialect, table: Table) -> Insert:
    """``facts.ParticipantFact``'s join, set union: a row already there is left as it is."""
    return dialect.insert(table).on_conflict_do_nothing(  # type: ignore[no-any-return]
        index_elements=[table.c.conversation_id, table.c.uid]
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


# The rows of the statements ``Writer`` checks with ``CompiledUpsert.expect``: tuples, in the order
# of these columns (the tables' own order), values as the driver takes them.
_INBOX: Final = ("received_at", "trigger", "body")
_USER: Final = (
    "uid",
    "status",
    "status_updated_at",
    "status_key",
    "last_seen_at",
    "snapshot_key",
    "status_updated_key",
    "status_source",
)
_SESSION: Final = (
    "uid",
    "session_id",
    "signal_key",
    "live",
    "device_id",
    "platform",
    "connected_at",
    "disconnected_at",
    "received_at",
)
_MESSAGE: Final = ("id", "claim", "conversation_id", "sender", "sent_at", "received_at", "edited_at", "deleted_at")
_MARK: Final = ("conversation_id", "reader_uid", "kind", "message_id", "at", "received_at")
_FLAG: Final = ("conversation_id", "kind", "message_id", "received_at")
_GROUP: Final = ("guid", "key", "members_count", "deleted_key")
_MEMBER: Final = ("guid", "uid", "key", "member", "joined_at")
_PARTICIPANT: Final = ("conversation_id", "uid", "known_from")

Row = tuple[Any, ...]


# The optional instants are tested inline: these run for every row of every batch.


def _user_row(fact: UserFact, instant: Callable[[int], Any]) -> Row:
    updated_at = fact.status_updated_at_ms
    return (
        fact.uid,
        fact.status,
        None if updated_at is None else instant(updated_at),
        fact.status_key,
        instant(fact.last_seen_at_ms),
        fact.snapshot_key,
        fact.status_updated_key,
        fact.status_source,
    )


def _session_row(fact: SessionFact, instant: Callable[[int], Any]) -> Row:
    connected_at, disconnected_at = fact.connected_at_ms, fact.disconnected_at_ms
    return (
        fact.uid,
        fact.session_id,
        fact.signal_key,
        fact.live,
        fact.device_id,
        fact.platform,
        None if connected_at is None else instant(connected_at),
        None if disconnected_at is None else instant(disconnected_at),
        instant(fact.received_at_ms),
    )


def _message_row(fact: MessageFact, instant: Callable[[int], Any]) -> Row:
    sent_at, edited_at, deleted_at = fact.sent_at_ms, fact.edited_at_ms, fact.deleted_at_ms
    return (
        fact.message_id,
        fact.claim,
        fact.conversation_id,
        fact.sender,
        None if sent_at is None else instant(sent_at),
        instant(fact.received_at_ms),
        None if edited_at is None else instant(edited_at),
        None if deleted_at is None else instant(deleted_at),
    )


def _watermark_row(fact: WatermarkFact, instant: Callable[[int], Any]) -> Row:
    at, received_at = instant(fact.at_ms), instant(fact.received_at_ms)
    return (fact.conversation_id, fact.reader, fact.kind, fact.message_id, at, received_at)


def _mark_row(fact: ReceiptFact, instant: Callable[[int], Any]) -> dict[str, Any]:
    """A receipt's values by name: its prune and insert take them in orders of their own."""
    return {
        "conversation_id": fact.conversation_id,
        "reader_uid": fact.reader,
        "kind": fact.kind,
        "message_id": fact.message_id,
        "at": instant(fact.at_ms),
        "received_at": instant(fact.received_at_ms),
    }


def _group_receipt_row(fact: GroupReceiptFact, instant: Callable[[int], Any]) -> dict[str, Any]:
    return {
        "conversation_id": fact.conversation_id,
        "kind": fact.kind,
        "message_id": fact.message_id,
        "at": instant(fact.at_ms),
        "received_at": instant(fact.received_at_ms),
    }


def _group_flag_row(fact: GroupReceiptFlagFact, instant: Callable[[int], Any]) -> Row:
    return (fact.conversation_id, fact.kind, fact.message_id, instant(fact.received_at_ms))


def _group_row(fact: GroupFact) -> Row:
    return (fact.guid, fact.key, fact.members_count, fact.deleted_key)


def _member_row(fact: MemberFact, optional: Callable[[int | None], Any]) -> Row:
    return (fact.guid, fact.uid, fact.key, fact.member, optional(fact.joined_at_ms))


def _participant_row(fact: ParticipantFact) -> Row:
    return (fact.conversation_id, fact.uid, fact.known_from)
