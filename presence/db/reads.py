"""The queries behind the API. Each is answered from an index: none scans all users or all receipts.

Liveness is ``presence.core.facts.is_live`` in SQL (:data:`_LIVE`): a session
is live when its newest signal says so and is not older than its user's newest
snapshot.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import and_, case, exists, func, literal, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from presence.db.models import Instant, Message, Receipt, ReceiptWatermark, UserPresence, UserSession

_LIVE = and_(UserSession.live.is_(True), UserSession.signal_key >= UserPresence.snapshot_key)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Connection:
    session_id: str
    device_id: str | None
    platform: str | None
    connected_at: datetime | None


@dataclass(frozen=True, slots=True)
class Presence:
    uid: str
    status: str
    status_updated_at: datetime | None
    last_seen_at: datetime
    connections: tuple[Connection, ...]


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


async def presence_of(connection: AsyncConnection, uid: str) -> Presence | None:
    return (await presences_of(connection, [uid])).get(uid)


async def presences_of(connection: AsyncConnection, uids: Sequence[str]) -> dict[str, Presence]:
    """The presence of each known uid among ``uids``: two queries, whatever their number."""
    if not uids:
        return {}
    users = (
        await connection.execute(
            select(
                UserPresence.uid, UserPresence.status, UserPresence.status_updated_at, UserPresence.last_seen_at
            ).where(UserPresence.uid.in_(uids))
        )
    ).all()
    if not users:
        return {}
    sessions = await connection.execute(
        select(
            UserSession.uid,
            UserSession.session_id,
            UserSession.device_id,
            UserSession.platform,
            UserSession.connected_at,
        )
        .join(UserPresence, UserPresence.uid == UserSession.uid)
        .where(UserSession.uid.in_([u.uid for u in users]), _LIVE)
        .order_by(UserSession.uid, UserSession.connected_at.is_(None), UserSession.connected_at, UserSession.session_id)
    )
    connections: dict[str, list[Connection]] = {}
    for row in sessions:
        connections.setdefault(row.uid, []).append(
            Connection(row.session_id, row.device_id, row.platform, row.connected_at)
        )
    return {
        u.uid: Presence(u.uid, u.status, u.status_updated_at, u.last_seen_at, tuple(connections.get(u.uid, ())))
        for u in users
    }


async def list_users(
    connection: AsyncConnection, *, status: str | None, platform: str | None, after: str | None, limit: int
) -> list[Presence]:
    """Up to ``limit`` users in uid order after ``after``, with the given status and a live session on ``platform``."""
    if platform is not None:
        # Driven by the partial index of live sessions by (platform, uid).
        query = (
            select(UserSession.uid)
            .distinct()
            .join(UserPresence, UserPresence.uid == UserSession.uid)
            .where(UserSession.platform == platform, _LIVE)
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
        query = query.where(UserPresence.status == status)
    uids = list((await connection.execute(query)).scalars())
    found = await presences_of(connection, uids)
    return [found[uid] for uid in uids if uid in found]


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
        records.append(
            SessionRecord(
                session_id=row.session_id,
                device_id=row.device_id,
                platform=row.platform,
                connected_at=row.connected_at,
                live=live,
                disconnected_at=None if live else row.disconnected_at,
                ended_by_snapshot=row.live and superseded,
            )
        )
    return SessionHistory(snapshot_key=snapshot_key, sessions=tuple(records))


async def receipts_of(connection: AsyncConnection, message_id: int) -> MessageReceipts | None:
    """Contract §4: for each reader, the earliest receipt at or above the message in its conversation."""
    message = (
        await connection.execute(select(Message.conversation_id, Message.sender).where(Message.id == message_id))
    ).one_or_none()
    if message is None:
        return None
    query = (
        select(
            Receipt.reader_uid,
            func.min(Receipt.at).label("delivered_at"),
            func.min(case((Receipt.kind == "read", Receipt.at))).label("read_at"),
        )
        .where(Receipt.conversation_id == message.conversation_id, Receipt.message_id >= message_id)
        .group_by(Receipt.reader_uid)
        .order_by(Receipt.reader_uid)
    )
    if message.sender is not None:
        query = query.where(Receipt.reader_uid != message.sender)
    rows = (await connection.execute(query)).all()
    return MessageReceipts(
        message_id=message_id,
        conversation_id=message.conversation_id,
        sender=message.sender,
        receipts=tuple(ReaderReceipt(uid=r.reader_uid, delivered_at=r.delivered_at, read_at=r.read_at) for r in rows),
    )


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


async def stats(connection: AsyncConnection) -> Stats:
    online = (
        await connection.execute(select(func.count()).select_from(UserPresence).where(UserPresence.status == "online"))
    ).scalar_one()
    by_platform = await connection.execute(
        select(UserSession.platform, func.count().label("sessions"))
        .join(UserPresence, UserPresence.uid == UserSession.uid)
        .where(_LIVE)
        .group_by(UserSession.platform)
    )
    counts: dict[str | None, int] = {row.platform: row.sessions for row in by_platform}
    return Stats(users_online=online, connections=sum(counts.values()), connections_by_platform=counts)
