"""Webhook bodies parsed into typed events.

Everything CometChat sends is checked here, before anything is written: a known
trigger with a missing or mistyped field raises :class:`InvalidEvent`, which the
HTTP layer answers with ``400``. Parsing is pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final, Literal

from presence.core.times import InvalidInstant, parse_instant

CONNECTION_TRIGGERS: Final = frozenset({"after_connection_status_changed", "user_connection_status_change"})
DELIVERY_TRIGGER: Final = "message_delivery_receipt"
READ_TRIGGER: Final = "message_read_receipt"
MESSAGE_TRIGGER: Final = "after_message"
IN_FLIGHT_TRIGGER: Final = "before_message"
KNOWN_TRIGGERS: Final = CONNECTION_TRIGGERS | {DELIVERY_TRIGGER, READ_TRIGGER, MESSAGE_TRIGGER, IN_FLIGHT_TRIGGER}

#: ``after_message`` categories that are acknowledged and kept but are not messages.
UNTRACKED_CATEGORIES: Final = frozenset({"action", "call"})

MAX_ID_LENGTH: Final = 255
MAX_CONVERSATION_LENGTH: Final = 512
MAX_TRIGGER_LENGTH: Final = 100
#: Message ids are compared as integers and stored in a signed 64-bit column.
MAX_MESSAGE_ID: Final = 2**63 - 1
#: How far an event's times may run ahead of its arrival (``PRESENCE_MAX_CLOCK_SKEW``).
DEFAULT_MAX_SKEW_MS: Final = 3_600_000

ConnectionKind = Literal["connected", "disconnected"]
ReceiptKind = Literal["delivered", "read"]
_CONNECTION_KINDS: Final[dict[str, ConnectionKind]] = {"connected": "connected", "disconnected": "disconnected"}


class InvalidEvent(ValueError):
    """A known trigger whose body lacks a required field or has one of the wrong type."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


@dataclass(frozen=True, slots=True)
class Session:
    """One device connection as CometChat describes it (``event_for`` or a ``connections`` entry)."""

    session_id: str
    device_id: str | None
    platform: str | None
    connected_at_ms: int | None


@dataclass(frozen=True, slots=True)
class ConnectionChanged:
    """``after_connection_status_changed``: a user connected or disconnected one session."""

    uid: str
    kind: ConnectionKind
    at_ms: int
    status: str
    status_updated_at_ms: int | None
    session: Session
    #: The user's live sessions after this event, or ``None`` when the payload has no snapshot.
    snapshot: tuple[Session, ...] | None


@dataclass(frozen=True, slots=True)
class MessageSent:
    """``after_message``: a message now exists in a conversation."""

    message_id: int
    conversation_id: str
    sender: str | None
    sent_at_ms: int | None
    tracked: bool


@dataclass(frozen=True, slots=True)
class MessageInFlight:
    """``before_message``: a message being sent; it has no id yet and changes no state."""


@dataclass(frozen=True, slots=True)
class ReceiptMarked:
    """``message_delivery_receipt`` / ``message_read_receipt``: a reader's watermark."""

    kind: ReceiptKind
    message_id: int
    conversation_id: str
    reader: str
    message_sender: str | None
    at_ms: int


@dataclass(frozen=True, slots=True)
class UnknownTrigger:
    """A trigger this service does not act on: acknowledged, kept, ignored."""

    trigger: str


Event = ConnectionChanged | MessageSent | MessageInFlight | ReceiptMarked | UnknownTrigger


def parse_event(body: object) -> Event:
    """The event a decoded webhook body describes, or :class:`InvalidEvent`."""
    if not isinstance(body, Mapping):
        raise InvalidEvent("body", "expected a JSON object")
    trigger = _string(body, "trigger", "trigger", MAX_TRIGGER_LENGTH)
    if trigger not in KNOWN_TRIGGERS:
        return UnknownTrigger(trigger)
    data = _object(body, "data", "data")
    if trigger in CONNECTION_TRIGGERS:
        return _connection(data)
    if trigger == MESSAGE_TRIGGER:
        return _message(data)
    if trigger == IN_FLIGHT_TRIGGER:
        return MessageInFlight()
    return _receipt(data, "delivered" if trigger == DELIVERY_TRIGGER else "read")


def check_not_ahead(event: Event, *, received_at_ms: int, max_skew_ms: int) -> None:
    """Refuse an event whose times run further ahead of its arrival than clocks can drift apart.

    A ``connected`` dated 9999 would otherwise be the newest event for ever, and keep its
    user online after every real ``disconnected``. The arrival is passed in: ``/hook`` and
    ``presence import`` give the time they received the body, ``presence rebuild`` the one
    the inbox recorded.
    """
    latest = received_at_ms + max_skew_ms
    for where, at_ms in _times_of(event):
        if at_ms is not None and at_ms > latest:
            raise InvalidEvent(where, f"more than {max_skew_ms // 1000} s ahead of the time the event was received")


def _times_of(event: Event) -> Iterable[tuple[str, int | None]]:
    if isinstance(event, ConnectionChanged):
        yield "data.event.at", event.at_ms
        yield "data.user.status_updated_at", event.status_updated_at_ms
        yield "data.event.event_for.connected_at", event.session.connected_at_ms
        for member in event.snapshot or ():
            yield "data.connections[].connected_at", member.connected_at_ms
    elif isinstance(event, MessageSent):
        yield "data.sentAt", event.sent_at_ms
    elif isinstance(event, ReceiptMarked):
        yield ("data.deliveredAt" if event.kind == "delivered" else "data.readAt"), event.at_ms


def is_storable_id(value: str, max_length: int = MAX_ID_LENGTH) -> bool:
    """Whether intake could ever have stored ``value`` as an id (so a lookup can be skipped)."""
    return 0 < len(value) <= max_length and "\x00" not in value


def user_conversation_id(first_uid: str, second_uid: str) -> str:
    """CometChat's id of a one-to-one conversation: the two uids sorted, joined by ``_user_``."""
    low, high = sorted((first_uid, second_uid))
    return f"{low}_user_{high}"


def group_conversation_id(guid: str) -> str:
    return f"group_{guid}"


def _connection(data: Mapping[str, object]) -> ConnectionChanged:
    user = _object(data, "user", "data.user")
    event = _object(data, "event", "data.event")
    kind = _CONNECTION_KINDS.get(_string(event, "type", "data.event.type"))
    if kind is None:
        raise InvalidEvent("data.event.type", "expected 'connected' or 'disconnected'")
    raw_connections = data.get("connections")
    snapshot: tuple[Session, ...] | None = None
    if raw_connections is not None:
        if not isinstance(raw_connections, list):
            raise InvalidEvent("data.connections", "expected a list")
        snapshot = _distinct_sessions(
            _session(entry, f"data.connections[{index}]") for index, entry in enumerate(raw_connections)
        )
    return ConnectionChanged(
        uid=_string(user, "uid", "data.user.uid"),
        kind=kind,
        at_ms=_instant(event, "at", "data.event.at"),
        status=_string(user, "status", "data.user.status"),
        status_updated_at_ms=_optional_instant(user, "status_updated_at", "data.user.status_updated_at"),
        session=_session(event.get("event_for"), "data.event.event_for"),
        snapshot=snapshot,
    )


def _distinct_sessions(sessions: Iterable[Session]) -> tuple[Session, ...]:
    """One entry per session id; of repeated ones, the greatest, so the choice is order-free."""
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
        session_id=_string(value, "session_id", f"{where}.session_id"),
        device_id=_optional_string(value, "cometchat_device_id", f"{where}.cometchat_device_id"),
        platform=_optional_string(value, "platform", f"{where}.platform"),
        connected_at_ms=_optional_instant(value, "connected_at", f"{where}.connected_at"),
    )


def _message(data: Mapping[str, object]) -> MessageSent:
    category = _optional_string(data, "category", "data.category")
    return MessageSent(
        message_id=_message_id(data, "id", "data.id"),
        conversation_id=_string(data, "conversationId", "data.conversationId", MAX_CONVERSATION_LENGTH),
        sender=_optional_string(data, "sender", "data.sender"),
        sent_at_ms=_optional_instant(data, "sentAt", "data.sentAt"),
        tracked=category not in UNTRACKED_CATEGORIES,
    )


def _receipt(data: Mapping[str, object], kind: ReceiptKind) -> ReceiptMarked:
    reader = _string(data, "receiptSender", "data.receiptSender")
    receiver_type = _string(data, "receiverType", "data.receiverType")
    time_field = "deliveredAt" if kind == "delivered" else "readAt"
    message_sender: str | None
    if receiver_type == "user":
        sender = _string(data, "messageSender", "data.messageSender")
        conversation_id = user_conversation_id(reader, sender)
        message_sender = sender
    elif receiver_type == "group":
        message_sender = _optional_string(data, "messageSender", "data.messageSender")
        conversation_id = group_conversation_id(_string(data, "receiptReceiver", "data.receiptReceiver"))
    else:
        raise InvalidEvent("data.receiverType", "expected 'user' or 'group'")
    if len(conversation_id) > MAX_CONVERSATION_LENGTH:
        # Every derived id is held to the column it is stored in, here, the same for every backend.
        raise InvalidEvent(
            "data.receiptSender",
            f"with data.messageSender it makes a conversation id longer than {MAX_CONVERSATION_LENGTH} characters",
        )
    return ReceiptMarked(
        kind=kind,
        message_id=_message_id(data, "messageId", "data.messageId"),
        conversation_id=conversation_id,
        reader=reader,
        message_sender=message_sender,
        at_ms=_instant(data, time_field, f"data.{time_field}"),
    )


def _object(parent: Mapping[str, object], key: str, where: str) -> Mapping[str, object]:
    value = parent.get(key)
    if not isinstance(value, Mapping):
        raise InvalidEvent(where, "required, expected an object")
    return value


def _string(parent: Mapping[str, object], key: str, where: str, max_length: int = MAX_ID_LENGTH) -> str:
    value = parent.get(key)
    if value is None:
        raise InvalidEvent(where, "required")
    return _checked_string(value, where, max_length)


def _optional_string(parent: Mapping[str, object], key: str, where: str) -> str | None:
    value = parent.get(key)
    return None if value is None else _checked_string(value, where, MAX_ID_LENGTH)


def _checked_string(value: object, where: str, max_length: int) -> str:
    if not isinstance(value, str):
        raise InvalidEvent(where, "expected a string")
    if not is_storable_id(value, max_length):
        problem = "must not be empty" if not value else f"longer than {max_length} characters"
        raise InvalidEvent(where, problem if "\x00" not in value else "must not contain NUL characters")
    return value


def _instant(parent: Mapping[str, object], key: str, where: str) -> int:
    value = parent.get(key)
    if value is None:
        raise InvalidEvent(where, "required")
    try:
        return parse_instant(value)
    except InvalidInstant as error:
        raise InvalidEvent(where, str(error)) from None


def _optional_instant(parent: Mapping[str, object], key: str, where: str) -> int | None:
    return None if parent.get(key) is None else _instant(parent, key, where)


def parse_message_id(text: str) -> int | None:
    """A message id as the integer it is compared as, or ``None`` if it cannot be one."""
    if not text.isascii() or not text.isdigit() or len(text) > 19 or int(text) > MAX_MESSAGE_ID:
        return None
    return int(text)


def _message_id(parent: Mapping[str, object], key: str, where: str) -> int:
    value = parent.get(key)
    if value is None:
        raise InvalidEvent(where, "required")
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise InvalidEvent(where, "expected a message id as a string of digits")
    message_id = parse_message_id(str(value))
    if message_id is None:
        raise InvalidEvent(where, "expected a message id as a string of digits (a 64-bit integer)")
    return message_id
