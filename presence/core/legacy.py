"""CometChat's legacy webhooks (``cometchat/webhooks-legacy-*.md``) read into typed events."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

from presence.core.events import (
    MAX_CONVERSATION_LENGTH,
    UNTRACKED_CATEGORIES,
    ConnectionChanged,
    ConnectionKind,
    InvalidEvent,
    MessageSent,
    ReceiptKind,
    ReceiptMarked,
    Session,
    group_conversation_id,
    user_conversation_id,
)
from presence.core.fields import (
    Fields,
    checked_conversation,
    message_id,
    optional_instant,
    optional_string,
    required_instant,
    required_object,
    required_string,
)

CONNECTION_TRIGGERS: Final = frozenset({"after_connection_status_changed", "user_connection_status_change"})
MESSAGE_TRIGGER: Final = "after_message"
IN_FLIGHT_TRIGGER: Final = "before_message"

_CONNECTION_KINDS: Final[dict[str, ConnectionKind]] = {"connected": "connected", "disconnected": "disconnected"}
#: Fields only a legacy receipt has: a body with one of them is read as legacy.
RECEIPT_SHAPE: Final = frozenset(
    {"receiptType", "messageId", "receiptSender", "receiptReceiver", "deliveredAt", "readAt"}
)


def connection(data: Fields) -> ConnectionChanged:
    user = required_object(data, "user", "data.user")
    event = required_object(data, "event", "data.event")
    kind = _CONNECTION_KINDS.get(required_string(event, "type", "data.event.type"))
    if kind is None:
        raise InvalidEvent("data.event.type", "expected 'connected' or 'disconnected'")
    raw_connections = data.get("connections")
    snapshot: tuple[Session, ...] | None = None
    if raw_connections is not None:
        if not isinstance(raw_connections, list):
            raise InvalidEvent("data.connections", "expected a list")
        snapshot = distinct_sessions(
            [_session(entry, f"data.connections[{index}]") for index, entry in enumerate(raw_connections)]
        )
    return ConnectionChanged(
        uid=required_string(user, "uid", "data.user.uid"),
        kind=kind,
        at_ms=required_instant(event, "at", "data.event.at"),
        status=required_string(user, "status", "data.user.status"),
        status_updated_at_ms=optional_instant(user, "status_updated_at", "data.user.status_updated_at"),
        session=_session(event.get("event_for"), "data.event.event_for"),
        snapshot=snapshot,
    )


def distinct_sessions(sessions: Sequence[Session]) -> tuple[Session, ...]:
    """One entry per session id; of repeated ones, the greatest, so the choice is order-free."""
    if len(sessions) < 2:
        return tuple(sessions)
    chosen: dict[str, Session] = {}
    for session in sessions:
        current = chosen.get(session.session_id)
        if current is None or _session_order(session) > _session_order(current):
            chosen[session.session_id] = session
    return tuple(sorted(chosen.values(), key=lambda s: s.session_id))


def _session_order(session: Session) -> tuple[str, str, int]:
    return (session.device_id or "", session.platform or "", session.connected_at_ms or -1)


def _session(value: object, where: str) -> Session:
    if not isinstance(value, Mapping):
        raise InvalidEvent(where, "expected an object")
    return Session(
        session_id=required_string(value, "session_id", f"{where}.session_id"),
        device_id=optional_string(value, "cometchat_device_id", f"{where}.cometchat_device_id"),
        platform=optional_string(value, "platform", f"{where}.platform"),
        connected_at_ms=optional_instant(value, "connected_at", f"{where}.connected_at"),
    )


def message(data: Fields, where: str = "data") -> MessageSent:
    """``after_message``'s ``data``; also the message object of a current ``message_sent`` (``where``)."""
    category = optional_string(data, "category", f"{where}.category")
    return MessageSent(
        message_id=message_id(data, "id", f"{where}.id"),
        conversation_id=required_string(data, "conversationId", f"{where}.conversationId", MAX_CONVERSATION_LENGTH),
        sender=optional_string(data, "sender", f"{where}.sender"),
        sent_at_ms=optional_instant(data, "sentAt", f"{where}.sentAt"),
        tracked=category not in UNTRACKED_CATEGORIES,
    )


def receipt(data: Fields, kind: ReceiptKind) -> ReceiptMarked:
    reader = required_string(data, "receiptSender", "data.receiptSender")
    receiver_type = required_string(data, "receiverType", "data.receiverType")
    time_field = "deliveredAt" if kind == "delivered" else "readAt"
    message_sender: str | None
    if receiver_type == "user":
        message_sender = required_string(data, "messageSender", "data.messageSender")
        conversation_id = user_conversation_id(reader, message_sender)
    elif receiver_type == "group":
        message_sender = optional_string(data, "messageSender", "data.messageSender")
        conversation_id = group_conversation_id(required_string(data, "receiptReceiver", "data.receiptReceiver"))
    else:
        raise InvalidEvent("data.receiverType", "expected 'user' or 'group'")
    return ReceiptMarked(
        kind=kind,
        message_id=message_id(data, "messageId", "data.messageId"),
        conversation_id=checked_conversation(conversation_id, culprit="data.receiptSender"),
        reader=reader,
        message_sender=message_sender,
        at_ms=required_instant(data, time_field, f"data.{time_field}"),
    )
