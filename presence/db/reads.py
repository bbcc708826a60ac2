"""The queries behind the API: one user's presence, one message's receipts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from presence.db.models import Message, Receipt, UserPresence, UserSession


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


async def presence_of(connection: AsyncConnection, uid: str) -> Presence | None:
    user = (
        await connection.execute(
            select(
                UserPresence.status,
                UserPresence.status_updated_at,
                UserPresence.last_seen_at,
                UserPresence.snapshot_key,
            ).where(UserPresence.uid == uid)
        )
    ).one_or_none()
    if user is None:
        return None
    # presence.core.facts.is_live, in SQL: live, and not older than the newest snapshot.
    sessions = await connection.execute(
        select(UserSession.session_id, UserSession.device_id, UserSession.platform, UserSession.connected_at)
        .where(UserSession.uid == uid, UserSession.live.is_(True), UserSession.signal_key >= user.snapshot_key)
        .order_by(UserSession.connected_at.is_(None), UserSession.connected_at, UserSession.session_id)
    )
    return Presence(
        uid=uid,
        status=user.status,
        status_updated_at=user.status_updated_at,
        last_seen_at=user.last_seen_at,
        connections=tuple(Connection(*row) for row in sessions),
    )


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
