"""The commonest legacy bodies read in one step: decoded into typed structs, checked, scrubbed.

Most of what CometChat sends is legacy connection events, ``after_message`` and receipts, in
the shapes its documentation gives (``cometchat/webhooks-legacy-events.md``). For those,
:func:`read` converts the decoded body into ``msgspec`` structs that name every key the
body may have (``forbid_unknown_fields``) and every value's type, in C, then makes the few
checks no type says (lengths, NUL characters, the instants' ranges) in Python. What it
returns is exactly what :func:`presence.core.parse.parse_event` and
:func:`presence.core.inbox.without_content` make of the same body: the same event, the same
kept body. Anything else (another key, another type, any value a reader would refuse) makes it
return ``None``, and the general readers take the body and say what is wrong, in their own
words: this module never refuses anything, so every error stays theirs.

Why the kept body needs no walk: a struct lists every key, and none of them is one the scrub
acts on (``presence.core.inbox``'s rule: a uid-keyed object, a ``data`` inside ``data``), except the
content of an ``after_message`` (``data.data``), which the scrub drops whole, whatever it
holds. ``tests/test_typed.py`` checks the promise against the general path.
"""

from __future__ import annotations

from typing import Final

import msgspec

from presence.core import legacy
from presence.core.events import (
    MAX_CONVERSATION_LENGTH,
    MAX_ID_LENGTH,
    UNTRACKED_CATEGORIES,
    ConnectionChanged,
    ConnectionKind,
    Event,
    MessageSent,
    ReceiptKind,
    ReceiptMarked,
    Session,
    group_conversation_id,
    parse_message_id,
    user_conversation_id,
)
from presence.core.times import MAX_MS, MILLISECONDS_ABOVE, InvalidInstant, parse_instant

#: A value no reader looks at: any JSON scalar (an object or a list could hold content).
Scalar = str | int | float | bool | None
#: An instant as the fast path takes it; a float goes the general way.
Instant = int | str


class _Struct(msgspec.Struct, forbid_unknown_fields=True):
    """Every key a body may have, named: any other makes the conversion fail."""


class _Origin(_Struct):
    platform: Scalar = None


class _Device(_Struct):
    session_id: str
    cometchat_device_id: str | None = None
    platform: str | None = None
    connected_at: Instant | None = None


class _User(_Struct):
    uid: str
    status: str
    status_updated: Scalar = None
    status_updated_at: Instant | None = None


class _ConnectionEvent(_Struct):
    type: str
    at: Instant
    event_for: _Device


class _ConnectionData(_Struct):
    user: _User
    event: _ConnectionEvent
    connections: list[_Device] | None = None


class _MessageData(_Struct):
    id: int | str
    conversationId: str  # CometChat's spelling, as every key here
    sender: str | None = None
    category: str | None = None
    sentAt: Instant | None = None
    receiverType: Scalar = None
    receiver: Scalar = None
    type: Scalar = None
    updatedAt: Scalar = None
    # The content: dropped whole by the scrub, never read.
    data: object = None


class _ReceiptData(_Struct):
    messageId: int | str
    receiptSender: str
    receiverType: str
    messageSender: str | None = None
    receiptReceiver: str | None = None
    receiptType: Scalar = None
    deliveredAt: Instant | None = None
    readAt: Instant | None = None


class _Envelope(_Struct, kw_only=True):
    """A body's top level but its ``data``: scalars no reader looks at."""

    trigger: str
    appId: Scalar = None
    origin: _Origin | None = None
    chatAPIVersion: Scalar = None
    region: Scalar = None
    webhook: Scalar = None


class _ConnectionBody(_Envelope, kw_only=True):
    data: _ConnectionData


class _MessageBody(_Envelope, kw_only=True):
    data: _MessageData


class _ReceiptBody(_Envelope, kw_only=True):
    data: _ReceiptData


_SHAPES: Final[dict[str, type[_ConnectionBody | _MessageBody | _ReceiptBody]]] = {
    **dict.fromkeys(legacy.CONNECTION_TRIGGERS, _ConnectionBody),
    legacy.MESSAGE_TRIGGER: _MessageBody,
    "message_delivery_receipt": _ReceiptBody,
    "message_read_receipt": _ReceiptBody,
}
_RECEIPT_KINDS: Final[dict[str, ReceiptKind]] = {
    "message_delivery_receipt": "delivered",
    "message_read_receipt": "read",
}
_CONNECTION_KINDS: Final[dict[str, ConnectionKind]] = {"connected": "connected", "disconnected": "disconnected"}


class _Other(Exception):
    """Not for this module: the general readers take the body."""


def read(body: dict[str, object]) -> tuple[Event, dict[str, object]] | None:
    """The event ``body`` describes and what the inbox keeps of it, or ``None``: ask the general readers."""
    trigger = body.get("trigger")
    if type(trigger) is not str or (shape := _SHAPES.get(trigger)) is None:
        return None
    try:
        typed = msgspec.convert(body, shape)
        if isinstance(typed, _ConnectionBody):
            return _connection(typed.data), body
        if isinstance(typed, _MessageBody):
            return _message(typed.data), _without_message_content(body)
        return _receipt(typed.data, _RECEIPT_KINDS[trigger]), body
    except (msgspec.ValidationError, _Other):
        return None


def _connection(data: _ConnectionData) -> ConnectionChanged:
    event, user = data.event, data.user
    kind = _CONNECTION_KINDS.get(event.type)
    if kind is None:
        raise _Other
    snapshot: tuple[Session, ...] | None = None
    if data.connections is not None:
        snapshot = legacy.distinct_sessions([_session(entry) for entry in data.connections])
    return ConnectionChanged(
        uid=_id(user.uid),
        kind=kind,
        at_ms=_instant(event.at),
        status=_id(user.status),
        status_updated_at_ms=_optional_instant(user.status_updated_at),
        session=_session(event.event_for),
        snapshot=snapshot,
    )


def _session(device: _Device) -> Session:
    return Session(
        session_id=_id(device.session_id),
        device_id=_optional_id(device.cometchat_device_id),
        platform=_optional_id(device.platform),
        connected_at_ms=_optional_instant(device.connected_at),
    )


def _message(data: _MessageData) -> MessageSent:
    return MessageSent(
        message_id=_message_id(data.id),
        conversation_id=_id(data.conversationId, MAX_CONVERSATION_LENGTH),
        sender=_optional_id(data.sender),
        sent_at_ms=_optional_instant(data.sentAt),
        tracked=_optional_id(data.category) not in UNTRACKED_CATEGORIES,
    )


def _receipt(data: _ReceiptData, kind: ReceiptKind) -> ReceiptMarked:
    reader = _id(data.receiptSender)
    message_sender = _optional_id(data.messageSender)
    if data.receiverType == "user" and message_sender is not None:
        conversation_id = user_conversation_id(reader, message_sender)
    elif data.receiverType == "group" and data.receiptReceiver is not None:
        conversation_id = group_conversation_id(_id(data.receiptReceiver))
    else:
        raise _Other
    if len(conversation_id) > MAX_CONVERSATION_LENGTH:
        raise _Other
    at = data.deliveredAt if kind == "delivered" else data.readAt
    if at is None:
        raise _Other
    return ReceiptMarked(
        kind=kind,
        message_id=_message_id(data.messageId),
        conversation_id=conversation_id,
        reader=reader,
        message_sender=message_sender,
        at_ms=_instant(at),
    )


def _without_message_content(body: dict[str, object]) -> dict[str, object]:
    """``inbox.without_content`` of an ``after_message`` of :class:`_MessageBody`'s shape: all but ``data.data``."""
    data = body["data"]
    assert isinstance(data, dict)
    kept = dict(body)
    kept["data"] = {key: value for key, value in data.items() if key != "data"}
    return kept


def _id(value: str, max_length: int = MAX_ID_LENGTH) -> str:
    """``fields.required_string``'s checks (``events.is_storable_id``)."""
    if not 0 < len(value) <= max_length or "\x00" in value:
        raise _Other
    return value


def _optional_id(value: str | None) -> str | None:
    return None if value is None else _id(value)


def _instant(value: Instant) -> int:
    """``times.parse_instant``, with an integer's common case inline."""
    if type(value) is int:
        if value < 0:
            raise _Other
        ms = value if value > MILLISECONDS_ABOVE else value * 1000
        if ms > MAX_MS:
            raise _Other
        return ms
    try:
        return parse_instant(value)
    except InvalidInstant:
        raise _Other from None


def _optional_instant(value: Instant | None) -> int | None:
    return None if value is None else _instant(value)


def _message_id(value: int | str) -> int:
    parsed = parse_message_id(str(value))
    if parsed is None:
        raise _Other
    return parsed
