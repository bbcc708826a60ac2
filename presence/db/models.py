"""The SQL model. The schema itself is only ever made by the Alembic migrations."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from presence.core.events import MAX_CONVERSATION_LENGTH, MAX_ID_LENGTH

#: Every constraint and index named from its table and columns, so no name is typed by hand.
#: ``column_0_N_name`` joins all of an index's columns: ``ix_receipt_conversation_id_message_id``.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Instant(TypeDecorator[datetime]):
    """A UTC instant: ``timestamptz`` on PostgreSQL; on SQLite, fixed-width UTC text.

    SQLite compares the stored text, so every value is written in UTC with
    microseconds, which keeps text order equal to time order.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not instants")
        utc = value.astimezone(UTC)
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def identifier(length: int) -> String:
    """Text that sorts and compares by code point on every backend, as SQLite and Python do.

    PostgreSQL would otherwise order by the server's locale (``Zoe`` after ``adam``).
    """
    return String(length).with_variant(String(length, collation="C"), "postgresql")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def table_of(model: type[Base]) -> Table:
    """A model's ``Table``, typed as one (``__table__`` is typed as any ``FromClause``)."""
    table = model.__table__
    assert isinstance(table, Table)
    return table


# SQLite only makes INTEGER PRIMARY KEY an alias of the rowid (auto-increment).
_BigId = BigInteger().with_variant(Integer(), "sqlite")


class InboxEvent(Base):
    """Every accepted webhook body, as received, less message content."""

    __tablename__ = "inbox_event"

    id: Mapped[int] = mapped_column(_BigId, primary_key=True, autoincrement=True)
    received_at: Mapped[datetime] = mapped_column(Instant(), index=True)
    trigger: Mapped[str] = mapped_column(String(100))
    body: Mapped[str] = mapped_column(Text)


class UserPresence(Base):
    """One row per user ever seen; see ``presence.core.facts.UserFact``."""

    __tablename__ = "user_presence"
    __table_args__ = (Index(None, "status", "uid"),)

    uid: Mapped[str] = mapped_column(identifier(MAX_ID_LENGTH), primary_key=True)
    status: Mapped[str] = mapped_column(String(255))
    status_updated_at: Mapped[datetime | None] = mapped_column(Instant())
    status_key: Mapped[bytes] = mapped_column(LargeBinary(32))
    last_seen_at: Mapped[datetime] = mapped_column(Instant())
    snapshot_key: Mapped[bytes] = mapped_column(LargeBinary(32))
    #: The key of the newest event that dates the status; ``status_updated_at`` is that event's.
    status_updated_key: Mapped[bytes] = mapped_column(LargeBinary(32))
    #: Which kind of event the status is from (contract §10): ``webhook`` or ``reconcile``.
    status_source: Mapped[str] = mapped_column(String(16))


class UserSession(Base):
    """One row per session of a user ever seen; see ``presence.core.facts.SessionFact``."""

    __tablename__ = "user_session"
    __table_args__ = (
        Index(None, "uid", "live"),
        # Live sessions by platform: the /users?platform= pages and /stats. SQLite uses a partial
        # index only for a query term that matches its WHERE, and SQLAlchemy says "live = 1" there.
        Index(
            "ix_user_session_live_platform_uid",
            "platform",
            "uid",
            sqlite_where=text("live = 1"),
            postgresql_where=text("live"),
        ),
    )

    uid: Mapped[str] = mapped_column(identifier(MAX_ID_LENGTH), primary_key=True)
    session_id: Mapped[str] = mapped_column(identifier(MAX_ID_LENGTH), primary_key=True)
    signal_key: Mapped[bytes] = mapped_column(LargeBinary(32))
    live: Mapped[bool] = mapped_column(Boolean(create_constraint=True, name="live"))
    device_id: Mapped[str | None] = mapped_column(String(255))
    platform: Mapped[str | None] = mapped_column(String(255))
    connected_at: Mapped[datetime | None] = mapped_column(Instant())
    disconnected_at: Mapped[datetime | None] = mapped_column(Instant())
    #: When the service received the newest signal; an ended session expires by it.
    received_at: Mapped[datetime] = mapped_column(Instant(), index=True)


class Message(Base):
    """A message named by an ``after_message`` or a receipt. Never its content."""

    __tablename__ = "message"
    __table_args__ = (
        # A conversation's messages by id: the rows next to a watermark an unread count reads, the last one.
        Index(None, "conversation_id", "id"),
        # The first message sent at or after a member joined a group.
        Index(None, "conversation_id", "sent_at", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    claim: Mapped[bytes] = mapped_column(LargeBinary)
    conversation_id: Mapped[str] = mapped_column(identifier(MAX_CONVERSATION_LENGTH), index=True)
    sender: Mapped[str | None] = mapped_column(identifier(MAX_ID_LENGTH))
    sent_at: Mapped[datetime | None] = mapped_column(Instant())
    #: When the service first received an event that named this message; retention goes by it.
    received_at: Mapped[datetime] = mapped_column(Instant(), index=True)
    #: The latest edit known, and the deletion (the earliest time it is known by).
    edited_at: Mapped[datetime | None] = mapped_column(Instant())
    deleted_at: Mapped[datetime | None] = mapped_column(Instant())


class Receipt(Base):
    """A receipt no other of its reader, kind and conversation dominates; see ``facts.join_receipt``.

    Per reader, kind and conversation the rows form a staircase: message ids and times both increase.
    """

    __tablename__ = "receipt"
    __table_args__ = (
        CheckConstraint("kind IN ('delivered', 'read')", name="kind"),
        # A reader's steps by time: where the run of steps a new receipt dominates begins.
        Index(None, "conversation_id", "reader_uid", "kind", "at"),
    )

    conversation_id: Mapped[str] = mapped_column(identifier(MAX_CONVERSATION_LENGTH), primary_key=True)
    reader_uid: Mapped[str] = mapped_column(identifier(MAX_ID_LENGTH), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    message_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(Instant())
    #: When the service received the receipt whose time this is; retention goes by it.
    received_at: Mapped[datetime] = mapped_column(Instant(), index=True)


class ReceiptWatermark(Base):
    """How far each reader has delivered or read a conversation; see ``WatermarkFact``."""

    __tablename__ = "receipt_watermark"
    __table_args__ = (CheckConstraint("kind IN ('delivered', 'read')", name="kind"),)

    conversation_id: Mapped[str] = mapped_column(identifier(MAX_CONVERSATION_LENGTH), primary_key=True)
    reader_uid: Mapped[str] = mapped_column(identifier(MAX_ID_LENGTH), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    message_id: Mapped[int] = mapped_column(BigInteger, autoincrement=False)
    at: Mapped[datetime] = mapped_column(Instant())
    #: When the service received the receipt that set this watermark; retention goes by it.
    received_at: Mapped[datetime] = mapped_column(Instant(), index=True)


class GroupReceipt(Base):
    """A group aggregate (delivered to all, read by all) no other of its kind dominates; see
    ``facts.GroupReceiptFact``. Per conversation and kind the rows form a staircase, like ``receipt``'s."""

    __tablename__ = "group_receipt"
    __table_args__ = (
        CheckConstraint("kind IN ('delivered', 'read')", name="kind"),
        # The steps by time: where the run of steps a new aggregate dominates begins.
        Index(None, "conversation_id", "kind", "at"),
    )

    conversation_id: Mapped[str] = mapped_column(identifier(MAX_CONVERSATION_LENGTH), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    message_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(Instant())
    #: When the service received the aggregate whose time this is; retention goes by it.
    received_at: Mapped[datetime] = mapped_column(Instant(), index=True)


class GroupReceiptLock(Base):
    """One row per group conversation and kind, never read: only locked.

    On PostgreSQL every writer of a conversation's group aggregates of one kind first upserts
    this row, which serializes them as ``receipt_watermark``'s row serializes a reader's receipts
    (docs/design.md, "Receipts"). Not state: a rebuild leaves it, retention keeps it.
    """

    __tablename__ = "group_receipt_lock"
    __table_args__ = (CheckConstraint("kind IN ('delivered', 'read')", name="kind"),)

    conversation_id: Mapped[str] = mapped_column(identifier(MAX_CONVERSATION_LENGTH), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)


class GroupReceiptFlag(Base):
    """A group aggregate whose body gave no time; see ``facts.GroupReceiptFlag``."""

    __tablename__ = "group_receipt_flag"
    __table_args__ = (CheckConstraint("kind IN ('delivered', 'read')", name="kind"),)

    conversation_id: Mapped[str] = mapped_column(identifier(MAX_CONVERSATION_LENGTH), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    message_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    #: When the service first received it; retention goes by it.
    received_at: Mapped[datetime] = mapped_column(Instant(), index=True)


class ChatGroup(Base):
    """A group as its newest membership event left it; see ``facts.GroupFact``."""

    __tablename__ = "chat_group"

    guid: Mapped[str] = mapped_column(identifier(MAX_ID_LENGTH), primary_key=True)
    key: Mapped[bytes] = mapped_column(LargeBinary(32))
    #: CometChat's own count, from the newest group event that gave one.
    members_count: Mapped[int | None] = mapped_column(Integer)
    #: The key of the newest ``group_deleted`` (empty if none): older memberships are over.
    deleted_key: Mapped[bytes] = mapped_column(LargeBinary(32))


class GroupMember(Base):
    """The newest membership event about one user in one group; see ``facts.MemberFact``."""

    __tablename__ = "group_member"
    __table_args__ = (Index(None, "uid"), Index("ix_group_member_guid_read_through", "guid", "read_through"))

    guid: Mapped[str] = mapped_column(identifier(MAX_ID_LENGTH), primary_key=True)
    uid: Mapped[str] = mapped_column(identifier(MAX_ID_LENGTH), primary_key=True)
    key: Mapped[bytes] = mapped_column(LargeBinary(32))
    member: Mapped[bool] = mapped_column(Boolean(create_constraint=True, name="member"))
    joined_at: Mapped[datetime | None] = mapped_column(Instant())
    #: The member's read watermark in the group's conversation, ``-1`` without one: kept by
    #: triggers (migration 0009), never written by the service. ``unread_by`` reads it as a range.
    read_through: Mapped[int] = mapped_column(BigInteger, server_default=text("-1"))


class ConversationParticipant(Base):
    """A user an event showed in a conversation; see ``facts.ParticipantFact``."""

    __tablename__ = "conversation_participant"
    __table_args__ = (
        CheckConstraint("known_from IN ('party', 'activity')", name="known_from"),
        Index(None, "uid"),
        Index("ix_conversation_participant_conversation_id_read_through", "conversation_id", "read_through"),
    )

    conversation_id: Mapped[str] = mapped_column(identifier(MAX_CONVERSATION_LENGTH), primary_key=True)
    uid: Mapped[str] = mapped_column(identifier(MAX_ID_LENGTH), primary_key=True)
    known_from: Mapped[str] = mapped_column(String(16))
    #: As ``GroupMember.read_through``: the participant's read watermark, ``-1`` without one (triggers).
    read_through: Mapped[int] = mapped_column(BigInteger, server_default=text("-1"))


class MessageTally(Base):
    """How many unread candidates (known, not deleted) a block of a conversation's message ids holds.

    Per sender, and over all senders with ``sender`` empty; ``presence.core.conversations`` says
    what the levels and blocks are. Kept by triggers on ``message`` (migration 0008), so every
    writer of messages (intake, retention, a rebuild) keeps it: it is a function of the
    ``message`` rows, with no row for an empty block. Not state: a rebuild rederives it.
    """

    __tablename__ = "message_tally"

    conversation_id: Mapped[str] = mapped_column(identifier(MAX_CONVERSATION_LENGTH), primary_key=True)
    sender: Mapped[str] = mapped_column(identifier(MAX_ID_LENGTH), primary_key=True)
    level: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    block: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    n: Mapped[int] = mapped_column(BigInteger)


class Change(Base):
    """One change of what the query API answers (contract §9), in commit order.

    ``body`` is the change as the API shows it, less its ``seq`` (``presence.db.changes``
    puts that in front). ``uid`` and ``conversation_id`` are what ``GET /changes`` filters by.
    """

    __tablename__ = "change"
    __table_args__ = (
        CheckConstraint("type IN ('presence', 'receipt', 'group_receipt')", name="type"),
        Index(None, "uid", "seq"),
        Index(None, "conversation_id", "seq"),
    )

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    type: Mapped[str] = mapped_column(String(16))
    uid: Mapped[str | None] = mapped_column(identifier(MAX_ID_LENGTH))
    conversation_id: Mapped[str | None] = mapped_column(identifier(MAX_CONVERSATION_LENGTH))
    #: When the transaction that recorded it ran; retention goes by it.
    recorded_at: Mapped[datetime] = mapped_column(Instant(), index=True)
    body: Mapped[str] = mapped_column(Text)


class ChangeLog(Base):
    """One row: the highest ``seq`` assigned, and the highest pruned.

    Every transaction that records changes takes its ``seq`` numbers by updating this row as its
    last statement before commit; the row's lock is held until the commit, so numbers are taken
    in commit order and never skipped (a rolled-back transaction gives its numbers back).
    """

    __tablename__ = "change_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    last_seq: Mapped[int] = mapped_column(BigInteger)
    #: Every change at or below it has been pruned: a cursor below it is ``410 cursor_expired``.
    pruned_through: Mapped[int] = mapped_column(BigInteger)


class ForwardState(Base):
    """One row: how far the changes have been forwarded to the app, and which replica holds the lease."""

    __tablename__ = "forward_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    #: Every change at or below it has been delivered (``None``: forwarding never started).
    delivered_through: Mapped[int | None] = mapped_column(BigInteger)
    holder: Mapped[str | None] = mapped_column(String(255))
    lease_until: Mapped[datetime | None] = mapped_column(Instant())


class ReconcileState(Base):
    """One row: when the next background reconciliation pass is due, and which replica claimed the last.

    A replica runs a pass only after moving ``next_pass_at`` forward with a conditional ``UPDATE``
    (``presence.db.reconciling``), so one replica at a time asks CometChat.
    """

    __tablename__ = "reconcile_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    next_pass_at: Mapped[datetime | None] = mapped_column(Instant())
    holder: Mapped[str | None] = mapped_column(String(255))


#: The state tables, in the order a rebuild empties them (watermarks first, users last).
STATE_MODELS: tuple[type[Base], ...] = (
    ReceiptWatermark,
    Receipt,
    GroupReceipt,
    GroupReceiptFlag,
    Message,
    GroupMember,
    ChatGroup,
    ConversationParticipant,
    UserSession,
    UserPresence,
)


def _checkpoint_of(model: type[Base]) -> Table:
    """A table like ``model``'s, holding the joined facts of inbox events that retention pruned.

    Same columns and key (so the same upserts write it), no secondary index but the
    ``received_at`` one that retention uses, no constraint a rebuild could trip on.
    """
    table = table_of(model)
    columns = []
    for column in table.columns:
        copy = column._copy()
        copy.index = column.name == "received_at" or None
        columns.append(copy)
    return Table(f"checkpoint_{table.name}", Base.metadata, *columns)


#: ``presence rebuild`` starts from these, then replays the inbox: the join of the two is the
#: state every event ever received implies, though retention pruned the oldest from the inbox.
CHECKPOINT_TABLES: dict[str, Table] = {table_of(m).name: _checkpoint_of(m) for m in STATE_MODELS}
