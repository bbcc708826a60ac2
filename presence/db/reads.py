"""The queries behind the API. Each is answered from an index: none scans all users or all receipts.

Liveness is ``presence.core.facts.is_live`` in SQL (:data:`_LIVE`): a session
is live when its newest signal says so and is not older than its user's newest
snapshot. The writer also clears the ``live`` flag of superseded sessions
(``presence.db.writes``), so the rows with ``live`` set, and the indexes on
them, hold only live sessions; the check here stays the definition.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    Boolean,
    ColumnElement,
    Select,
    String,
    and_,
    bindparam,
    exists,
    func,
    literal,
    null,
    or_,
    select,
    true,
    type_coerce,
)
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.orm import aliased

from presence.core.facts import NO_KEY, answered_status, expiry_floor, is_fresh
from presence.db.models import (
    GroupReceipt,
    GroupReceiptFlag,
    Instant,
    Message,
    Receipt,
    ReceiptWatermark,
    UserPresence,
    UserSession,
    table_of,
)

_LIVE = and_(UserSession.live == true(), UserSession.signal_key >= UserPresence.snapshot_key)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Connection:
    session_id: str
    device_id: str | None
    platform: str | None
    connected_at: datetime | None
    #: The key of the session's newest signal: the TTL expires it by that (:func:`as_of`).
    signal_key: bytes = field(default=NO_KEY, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Presence:
    uid: str
    status: str
    status_updated_at: datetime | None
    last_seen_at: datetime
    connections: tuple[Connection, ...]
    #: ``webhook`` or ``reconcile`` as stored; ``expired`` only from :func:`as_of`.
    status_source: str = "webhook"
    #: The key of the user's newest event: the TTL expires the status by that.
    status_key: bytes = field(default=NO_KEY, compare=False, repr=False)


def ttl_floor(ttl: timedelta | None, now: datetime) -> bytes | None:
    """The order key below which a signal is older than ``PRESENCE_CONNECTION_TTL`` at ``now``; ``None``: no TTL."""
    if ttl is None:
        return None
    return expiry_floor(int(now.timestamp() * 1000), int(ttl.total_seconds() * 1000))


def as_of(presence: Presence, floor: bytes | None) -> Presence:
    """The presence as answered under the TTL whose floor is ``floor`` (contract §10); itself without one.

    Sessions without a signal at or above the floor are no longer live; the status is
    ``facts.answered_status``'s. Derived from the stored keys and the clock, never written.
    """
    if floor is None:
        return presence
    live = tuple(c for c in presence.connections if is_fresh(c.signal_key, floor))
    status, source = answered_status(
        presence.status,
        presence.status_source,
        presence.status_key,
        floor,
        live=len(presence.connections),
        fresh=len(live),
    )
    return replace(presence, status=status, status_source=source, connections=live)


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """One session of a user's history."""

    session_id: str
    device_id: str | None
    platform: str | None
    connected_at: datetime | None
    live: bool
    disconnected_at: datetime | None
    #: Whether the newest snapshot ended the session without an event of its own.
    ended_by_snapshot: bool


@dataclass(frozen=True, slots=True)
class SessionHistory:
    snapshot_key: bytes
    sessions: tuple[SessionRecord, ...]


@dataclass(frozen=True, slots=True)
class ReaderReceipt:
    uid: str
    delivered_at: datetime | None
    read_at: datetime | None


@dataclass(frozen=True, slots=True)
class MessageReceipts:
    message_id: int
    conversation_id: str
    sender: str | None
    receipts: tuple[ReaderReceipt, ...]
    edited_at: datetime | None = None
    deleted_at: datetime | None = None
    #: A group's aggregates (contract §8): whether one covers the message, and the earliest time
    #: known; always false and ``None`` for a one-to-one message.
    delivered_to_all: bool = False
    delivered_to_all_at: datetime | None = None
    read_by_all: bool = False
    read_by_all_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ReaderWatermark:
    uid: str
    delivered_up_to: int | None
    delivered_at: datetime | None
    read_up_to: int | None
    read_at: datetime | None


@dataclass(frozen=True, slots=True)
class Stats:
    users_online: int
    connections: int
    connections_by_platform: dict[str | None, int]


#: A user's row and live sessions, in one query: a user with none has one row of NULL sessions.
_PRESENCES_COLUMNS = (
    UserPresence.uid,
    UserPresence.status,
    UserPresence.status_updated_at,
    UserPresence.last_seen_at,
    UserSession.session_id,
    UserSession.device_id,
    UserSession.platform,
    UserSession.connected_at,
    # After the columns the change feed's views read by position (``presence.db.recording``).
    UserPresence.status_source,
    UserPresence.status_key,
    UserSession.signal_key,
)
# A user's connections come in no order: :func:`presences_from_rows` sorts them (§3), in Python, as
# ``presence.db.inline`` sorts the raw rows. An ``ORDER BY`` here cost SQLite a sorter per lookup,
# about a fifth of a point lookup's time, for the few rows of one user.
_WITH_LIVE_SESSIONS = select(*_PRESENCES_COLUMNS).outerjoin(
    UserSession, and_(UserSession.uid == UserPresence.uid, _LIVE)
)
#: Built once: building a ``select()`` costs more than running it (statements below are reused likewise).
PRESENCE_OF = _WITH_LIVE_SESSIONS.where(UserPresence.uid == bindparam("uid"))
_PRESENCES_OF = _WITH_LIVE_SESSIONS.where(UserPresence.uid.in_(bindparam("uids", expanding=True))).order_by(
    UserPresence.uid
)


def presences_where(condition: ColumnElement[bool]) -> Select[*tuple[Any, ...]]:
    """The columns of :data:`PRESENCE_OF` for the users ``condition`` picks, by uid (the change feed's reads)."""
    return _WITH_LIVE_SESSIONS.where(condition).order_by(UserPresence.uid)


def connection_order(connection: Connection) -> tuple[bool, datetime, str]:
    """§3: by ``connected_at`` (those without one last), then ``session_id`` by code point."""
    return connection.connected_at is None, connection.connected_at or _EPOCH, connection.session_id


_EPOCH = datetime.fromtimestamp(0, UTC)


def presences_from_rows(rows: Iterable[Sequence[Any]]) -> dict[str, Presence]:
    """Presences from rows of :data:`PRESENCE_OF`'s columns, grouped by uid, connections in :func:`connection_order`."""
    users: dict[str, tuple[Any, ...]] = {}
    connections: dict[str, list[Connection]] = {}
    for row in rows:
        uid, status, status_updated_at, last_seen_at, session_id, device_id, platform, connected_at, *more = row
        source, status_key, signal_key = more
        if uid not in users:
            users[uid] = (status, status_updated_at, last_seen_at, source, status_key)
            connections[uid] = []
        if session_id is not None:
            connections[uid].append(Connection(session_id, device_id, platform, connected_at, signal_key))
    return {
        uid: Presence(uid, status, updated_at, seen, tuple(sorted(connections[uid], key=connection_order)), source, key)
        for uid, (status, updated_at, seen, source, key) in users.items()
    }


async def presence_of(connection: AsyncConnection, uid: str) -> Presence | None:
    return presences_from_rows(await connection.execute(PRESENCE_OF, {"uid": uid})).get(uid)


async def presences_of(connection: AsyncConnection, uids: Sequence[str]) -> dict[str, Presence]:
    """The presence of each known uid among ``uids``: one query, whatever their number."""
    if not uids:
        return {}
    return presences_from_rows(await connection.execute(_PRESENCES_OF, {"uids": list(uids)}))


def _answered_as(status: str, floor: bytes | None) -> ColumnElement[bool]:
    """The users whose status answers ``status`` under the TTL's ``floor`` (``facts.answered_status`` in SQL)."""
    if floor is None:
        return UserPresence.status == status
    # Of the user row's live sessions, through an alias: the outer query may join user_session itself.
    session = aliased(UserSession)
    live = and_(
        session.uid == UserPresence.uid, session.live == true(), session.signal_key >= UserPresence.snapshot_key
    )
    left_with_none = and_(
        UserPresence.status_source != "reconcile",
        exists().where(live),
        ~exists().where(live, session.signal_key >= floor),
    )
    expired = and_(UserPresence.status == "online", or_(UserPresence.status_key < floor, left_with_none))
    if status == "online":
        return and_(UserPresence.status == "online", ~expired)
    return or_(UserPresence.status == status, expired) if status == "offline" else UserPresence.status == status


def answers_online(floor: bytes | None) -> ColumnElement[bool]:
    """Whether a ``user_presence`` row answers ``online`` under the TTL's ``floor``, as a column (reconciliation)."""
    return _answered_as("online", floor)


def _fresh_session(floor: bytes | None) -> ColumnElement[bool]:
    return _LIVE if floor is None else and_(_LIVE, UserSession.signal_key >= floor)


async def list_users(
    connection: AsyncConnection,
    *,
    status: str | None,
    platform: str | None,
    after: str | None,
    limit: int,
    floor: bytes | None = None,
) -> list[Presence]:
    """Up to ``limit`` users in uid order after ``after``, with the given status and a live session on ``platform``.

    ``floor``: the TTL's (:func:`ttl_floor`), which the status, the sessions and the answers are read under.
    """
    if platform is not None:
        # Driven by the partial index of live sessions by (platform, uid).
        query = (
            select(UserSession.uid)
            .distinct()
            .join(UserPresence, UserPresence.uid == UserSession.uid)
            .where(UserSession.platform == platform, _fresh_session(floor))
            .order_by(UserSession.uid)
            .limit(limit)
        )
        if after is not None:
            query = query.where(UserSession.uid > after)
    else:
        query = select(UserPresence.uid).order_by(UserPresence.uid).limit(limit)
        if after is not None:
            query = query.where(UserPresence.uid > after)
    if status is not None:
        query = query.where(_answered_as(status, floor))
    uids = list((await connection.execute(query)).scalars())
    found = await presences_of(connection, uids)
    return [as_of(found[uid], floor) for uid in uids if uid in found]


async def sessions_of(
    connection: AsyncConnection, uid: str, *, before: tuple[datetime, str] | None, limit: int
) -> SessionHistory | None:
    """A user's sessions, newest connection first, strictly after the cursor ``before``."""
    snapshot_key = (
        await connection.execute(select(UserPresence.snapshot_key).where(UserPresence.uid == uid))
    ).scalar_one_or_none()
    if snapshot_key is None:
        return None
    connected = func.coalesce(UserSession.connected_at, literal(_EPOCH, Instant()))
    query = (
        select(
            UserSession.session_id,
            UserSession.device_id,
            UserSession.platform,
            UserSession.connected_at,
            UserSession.live,
            UserSession.signal_key,
            UserSession.disconnected_at,
        )
        .where(UserSession.uid == uid)
        .order_by(connected.desc(), UserSession.session_id.desc())
        .limit(limit)
    )
    if before is not None:
        at, session_id = before
        query = query.where(
            or_(
                connected < literal(at, Instant()),
                and_(connected == literal(at, Instant()), UserSession.session_id < session_id),
            )
        )
    records = []
    for row in await connection.execute(query):
        superseded = row.signal_key < snapshot_key
        live = row.live and not superseded
        # A signal that ended the session carries its time, one that left it live carries none: so a
        # superseded session without one was ended by a snapshot, whether or not its flag was cleared yet.
        records.append(
            SessionRecord(
                session_id=row.session_id,
                device_id=row.device_id,
                platform=row.platform,
                connected_at=row.connected_at,
                live=live,
                disconnected_at=None if live else row.disconnected_at,
                ended_by_snapshot=superseded and row.disconnected_at is None,
            )
        )
    return SessionHistory(snapshot_key=snapshot_key, sessions=tuple(records))


def _message_conversation() -> Any:
    return select(Message.conversation_id).where(Message.id == bindparam("message_id")).scalar_subquery()


def _readers_of_the_message_conversation() -> Any:
    """The distinct readers of the message's conversation, one index seek each (a "skip scan").

    Neither backend skips through an index by itself: each step asks for the first reader after
    the previous one, and the last step yields ``NULL``.
    """
    receipt = table_of(Receipt).alias("first_reader")
    first = (
        select(receipt.c.reader_uid)
        .where(receipt.c.conversation_id == _message_conversation())
        .order_by(receipt.c.reader_uid)
        .limit(1)
        .scalar_subquery()
    )
    readers = select(first.label("uid")).cte("readers", recursive=True)
    later = table_of(Receipt).alias("next_reader")
    following = (
        select(later.c.reader_uid)
        .where(later.c.conversation_id == _message_conversation(), later.c.reader_uid > readers.c.uid)
        .order_by(later.c.reader_uid)
        .limit(1)
        .scalar_subquery()
    )
    return readers.union_all(select(following).where(readers.c.uid.is_not(None)))


def _first_receipt_at(kind: str, reader: Any) -> Any:
    """The reader's first receipt of ``kind`` at or above the message: on a staircase, the earliest."""
    receipt = table_of(Receipt).alias(f"first_{kind}")
    return (
        select(receipt.c.at)
        .where(
            receipt.c.conversation_id == Message.conversation_id,
            receipt.c.reader_uid == reader,
            receipt.c.kind == kind,
            receipt.c.message_id >= Message.id,
        )
        .order_by(receipt.c.message_id)
        .limit(1)
        .scalar_subquery()
    )


def _first_group_receipt_at(kind: str) -> Any:
    """The group's first timed aggregate of ``kind`` at or above the message: on its staircase, the earliest."""
    step = table_of(GroupReceipt).alias(f"group_{kind}")
    return (
        select(step.c.at)
        .where(step.c.conversation_id == Message.conversation_id, step.c.kind == kind, step.c.message_id >= Message.id)
        .order_by(step.c.message_id)
        .limit(1)
        .scalar_subquery()
    )


def _flagged(kind: str) -> Any:
    """Whether an untimed aggregate of ``kind`` covers the message (one at or above it)."""
    flag = table_of(GroupReceiptFlag).alias(f"flag_{kind}")
    return exists().where(
        flag.c.conversation_id == Message.conversation_id, flag.c.kind == kind, flag.c.message_id >= Message.id
    )


def _flagged_at(kind: str) -> Any:
    """The earliest ``sentAt`` known of the messages the untimed aggregates covering the message name.

    A range of the flags at or above the message: untimed aggregates are the exception (a body
    without a time), and a flag is one row per aggregate, never one per message it covers.
    """
    flag = table_of(GroupReceiptFlag).alias(f"flag_{kind}_at")
    named = table_of(Message).alias(f"flagged_{kind}")
    return (
        select(func.min(named.c.sent_at))
        .select_from(flag)
        .join(named, named.c.id == flag.c.message_id)
        .where(flag.c.conversation_id == Message.conversation_id, flag.c.kind == kind, flag.c.message_id >= Message.id)
        .scalar_subquery()
    )


def _nothing(type_: Any) -> Any:
    return type_coerce(null(), type_)


_READERS = _readers_of_the_message_conversation()
#: A message's own facts: one row with a NULL reader, evaluated once (not once per reader row).
_MESSAGE_FACTS = select(
    Message.conversation_id,
    Message.sender,
    _nothing(String()).label("uid"),
    _nothing(Instant()).label("delivered_at"),
    _nothing(Instant()).label("read_at"),
    Message.edited_at,
    Message.deleted_at,
    _first_group_receipt_at("delivered").label("group_delivered_at"),
    _flagged("delivered").label("flagged_delivered"),
    _flagged_at("delivered").label("flagged_delivered_at"),
    _first_group_receipt_at("read").label("group_read_at"),
    _flagged("read").label("flagged_read"),
    _flagged_at("read").label("flagged_read_at"),
).where(Message.id == bindparam("message_id"))
#: For each reader of the message's conversation but its sender, the first delivery and read
#: receipt at or above it: two index seeks a reader (contract §4; the receipts of a reader form a
#: staircase, docs/design.md). A reader with no receipt at or above the message has NULL times
#: (:func:`receipts_from_rows` drops it).
_READER_RECEIPTS = (
    select(
        Message.conversation_id,
        Message.sender,
        _READERS.c.uid,
        _first_receipt_at("delivered", _READERS.c.uid).label("delivered_at"),
        _first_receipt_at("read", _READERS.c.uid).label("read_at"),
        _nothing(Instant()),
        _nothing(Instant()),
        _nothing(Instant()),
        _nothing(Boolean()),
        _nothing(Instant()),
        _nothing(Instant()),
        _nothing(Boolean()),
        _nothing(Instant()),
    )
    .select_from(Message)
    .join(
        _READERS,
        and_(_READERS.c.uid.is_not(None), or_(Message.sender.is_(None), _READERS.c.uid != Message.sender)),
    )
    .where(Message.id == bindparam("message_id"))
)
#: A message, its own facts and its readers' receipts, in one query: no rows for an unknown message.
RECEIPTS_OF = _MESSAGE_FACTS.union_all(_READER_RECEIPTS)


def receipts_from_rows(message_id: int, rows: Iterable[Sequence[Any]]) -> MessageReceipts | None:
    """A message's receipts from rows of :data:`RECEIPTS_OF`'s columns; ``None`` without rows.

    Reading implies delivery: ``delivered_at`` is the earlier of the two, and a group's "read by
    all" counts for "delivered to all" likewise (``facts.group_receipt_at`` says what each is).
    """
    found: MessageReceipts | None = None
    receipts: list[ReaderReceipt] = []
    for conversation_id, sender, reader_uid, delivered_at, read_at, *own in rows:
        if reader_uid is None:
            found = _message_of(message_id, conversation_id, sender, own)
            continue
        if delivered_at is None and read_at is None:
            continue
        receipts.append(ReaderReceipt(uid=reader_uid, delivered_at=_earliest(delivered_at, read_at), read_at=read_at))
    receipts.sort(key=lambda receipt: receipt.uid)
    return None if found is None else replace(found, receipts=tuple(receipts))


def _message_of(message_id: int, conversation_id: str, sender: str | None, own: Sequence[Any]) -> MessageReceipts:
    """The message's own row of :data:`RECEIPTS_OF`: the columns after the reader's, as in :data:`_MESSAGE_FACTS`."""
    (
        edited_at,
        deleted_at,
        group_delivered_at,
        flagged_delivered,
        flagged_delivered_at,
        group_read_at,
        flagged_read,
        flagged_read_at,
    ) = own
    read_by_all = group_read_at is not None or bool(flagged_read)
    read_by_all_at = _earliest(group_read_at, flagged_read_at)
    return MessageReceipts(
        message_id,
        conversation_id,
        sender,
        (),
        edited_at=edited_at,
        deleted_at=deleted_at,
        delivered_to_all=read_by_all or group_delivered_at is not None or bool(flagged_delivered),
        delivered_to_all_at=_earliest(group_delivered_at, flagged_delivered_at, read_by_all_at),
        read_by_all=read_by_all,
        read_by_all_at=read_by_all_at,
    )


def _earliest(*times: datetime | None) -> datetime | None:
    """The earliest of the known ``times``; ``None`` when none is known."""
    return min((t for t in times if t is not None), default=None)


async def receipts_of(connection: AsyncConnection, message_id: int) -> MessageReceipts | None:
    """Contract §4: for each reader, the earliest receipt at or above the message in its conversation."""
    return receipts_from_rows(message_id, await connection.execute(RECEIPTS_OF, {"message_id": message_id}))


async def watermarks_of(connection: AsyncConnection, conversation_id: str) -> list[ReaderWatermark] | None:
    """Each reader's delivery and read watermark in a conversation; ``None`` if no event named it."""
    rows = (
        await connection.execute(
            select(ReceiptWatermark.reader_uid, ReceiptWatermark.kind, ReceiptWatermark.message_id, ReceiptWatermark.at)
            .where(ReceiptWatermark.conversation_id == conversation_id)
            .order_by(ReceiptWatermark.reader_uid)
        )
    ).all()
    if not rows:
        known = await connection.execute(select(exists().where(Message.conversation_id == conversation_id)))
        return [] if known.scalar_one() else None
    readers: dict[str, dict[str, tuple[int, datetime]]] = {}
    for row in rows:
        readers.setdefault(row.reader_uid, {})[row.kind] = (row.message_id, row.at)
    result = []
    for uid, kinds in readers.items():
        delivered, read = kinds.get("delivered"), kinds.get("read")
        result.append(
            ReaderWatermark(
                uid=uid,
                delivered_up_to=None if delivered is None else delivered[0],
                delivered_at=None if delivered is None else delivered[1],
                read_up_to=None if read is None else read[0],
                read_at=None if read is None else read[1],
            )
        )
    return result


def connections_by_platform(floor: bytes | None = None) -> Select[str | None, int]:
    """Live sessions by platform, driven by the partial index of live sessions (``/stats``)."""
    return (
        select(UserSession.platform, func.count().label("sessions"))
        .join(UserPresence, UserPresence.uid == UserSession.uid)
        .where(_fresh_session(floor))
        .group_by(UserSession.platform)
    )


CONNECTIONS_BY_PLATFORM = connections_by_platform()


async def users_online(connection: AsyncConnection, floor: bytes | None = None) -> int:
    """How many users answer ``online`` (their newest status, under the TTL's ``floor``): ``/stats``, the gauge."""
    query = select(func.count()).select_from(UserPresence).where(_answered_as("online", floor))
    online: int = (await connection.execute(query)).scalar_one()
    return online


async def stats(connection: AsyncConnection, floor: bytes | None = None) -> Stats:
    online = await users_online(connection, floor)
    by_platform = await connection.execute(CONNECTIONS_BY_PLATFORM if floor is None else connections_by_platform(floor))
    counts: dict[str | None, int] = {row.platform: row.sessions for row in by_platform}
    return Stats(users_online=online, connections=sum(counts.values()), connections_by_platform=counts)
