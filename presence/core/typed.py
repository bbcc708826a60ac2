"""The commonest legacy bodies read in one step: decoded into typed structs, checked, scrubbed.

Most of what CometChat sends is legacy connection events, ``after_message`` and receipts, in
the shapes its documentation gives (``cometchat/webhooks-legacy-events.md``). For those,
:func:`read` converts the decoded body into ``msgspec`` structs that name every key the
body may have (``forbid_unknown_fields``), every value's type and the identifiers' and
integer instants' limits (``Meta``), in C; Python makes the few checks no type says (a
connection's kind, a message id's digits, an instant given as text, a derived conversation
id's length; a NUL character, by one look at the raw text). What it
returns is exactly what :func:`presence.core.parse.parse_event` and
:func:`presence.core.inbox.without_content` make of the same body: the same event, the same
kept body. Anything else (another key, another type, any value a reader would refuse) makes it
return ``None``, and the general readers take the body and say what is wrong, in their own
words: this module never refuses anything, so every error stays theirs.

Why the kept body needs no walk: a struct lists every key, every value it does not type as a
struct is a scalar, and no key is one the scrub acts on (``presence.core.inbox``: a content,
text or profile key, a uid-keyed object, a ``data`` inside ``data``), except the content of an
``after_message`` (``data.data``), which the scrub drops whole, whatever it holds.
``tests/test_typed.py`` checks the promise against the general path.
"""

from __future__ import annotations

from typing import Annotated, Final

import msgspec
from msgspec import Meta

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
#: ``fields.required_string``'s limits, checked by msgspec; NUL characters are refused by :func:`read`.
Id = Annotated[str, Meta(min_length=1, max_length=MAX_ID_LENGTH)]
ConversationId = Annotated[str, Meta(min_length=1, max_length=MAX_CONVERSATION_LENGTH)]
#: An instant as the fast path takes it: an integer ``times.parse_instant`` takes (in either unit, it
#: is within the year 9999 exactly when it is at most :data:`MAX_MS`), or a string; a float goes the
#: general way.
Instant = Annotated[int, Meta(ge=0, le=MAX_MS)] | str


class _Struct(msgspec.Struct, forbid_unknown_fields=True):
    """Every key a body may have, named: any other makes the conversion fail."""


class _Origin(_Struct):
    platform: Scalar = None


class _Device(_Struct):
    session_id: Id
    cometchat_device_id: Id | None = None
    platform: Id | None = None
    connected_at: Instant | None = None


class _User(_Struct):
    uid: Id
    status: Id
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
    conversationId: ConversationId  # CometChat's spelling, as every key here
    sender: Id | None = None
    category: Id | None = None
    sentAt: Instant | None = None
    receiverType: Scalar = None
    receiver: Scalar = None
    type: Scalar = None
    updatedAt: Scalar = None
    # The content: dropped whole by the scrub, never read.
    data: object = None


class _ReceiptData(_Struct):
    messageId: int | str
    receiptSender: Id
    receiverType: str
    messageSender: Id | None = None
    receiptReceiver: Id | None = None
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


def read(body: dict[str, object], raw: bytes) -> tuple[Event, dict[str, object]] | None:
    """The event ``body`` (decoded from the JSON text ``raw``) describes and what the inbox keeps of it,
    or ``None``: ask the general readers.

    JSON text cannot hold a NUL character but as the escape ``\\u0000``, so without one in ``raw``
    no string of ``body`` holds one, and no identifier needs that check.
    """
    trigger = body.get("trigger")
    if type(trigger) is not str or (shape := _SHAPES.get(trigger)) is None or b"\\u0000" in raw:
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
    updated_at = user.status_updated_at
    return ConnectionChanged(
        uid=user.uid,
        kind=kind,
        at_ms=_instant(event.at),
        status=user.status,
        status_updated_at_ms=None if updated_at is None else _instant(updated_at),
        session=_session(event.event_for),
        snapshot=snapshot,
    )


def _session(device: _Device) -> Session:
    at = device.connected_at
    return Session(device.session_id, device.cometchat_device_id, device.platform, None if at is None else _instant(at))


def _message(data: _MessageData) -> MessageSent:
    return MessageSent(
        message_id=_message_id(data.id),
        conversation_id=data.conversationId,
        sender=data.sender,
        sent_at_ms=None if data.sentAt is None else _instant(data.sentAt),
        tracked=data.category not in UNTRACKED_CATEGORIES,
    )


def _receipt(data: _ReceiptData, kind: ReceiptKind) -> ReceiptMarked:
    reader, message_sender = data.receiptSender, data.messageSender
    if data.receiverType == "user" and message_sender is not None:
        conversation_id = user_conversation_id(reader, message_sender)
    elif data.receiverType == "group" and data.receiptReceiver is not None:
        conversation_id = group_conversation_id(data.receiptReceiver)
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


def _instant(value: int | str) -> int:
    """``times.parse_instant``; an integer's range is already checked (:data:`Instant`)."""
    if type(value) is int:
        return value if value > MILLISECONDS_ABOVE else value * 1000
    try:
        return parse_instant(value)
    except InvalidInstant:
        raise _Other from None


def _message_id(value: int | str) -> int:
    parsed = parse_message_id(str(value))
    if parsed is None:
        raise _Other
    return parsed
