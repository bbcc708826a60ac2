"""Webhook bodies parsed into typed events, whichever of CometChat's systems sent them.

Everything CometChat sends is checked here, before anything is written: a known
trigger with a missing or mistyped field raises :class:`InvalidEvent`, which the
HTTP layer answers with ``400``. Parsing is pure: no I/O, no clock.

The two systems share trigger names (``message_read_receipt``) and spell the same
events differently, so the *shape* of ``data`` decides which reader takes a body:
the format whose own fields it has more of, the trigger's own system on a tie. A
body valid in neither is refused in the words of the format it most resembles.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from functools import partial
from typing import Final

from presence.core import current, legacy, reconcile
from presence.core.events import (
    MAX_TRIGGER_LENGTH,
    ConnectionChanged,
    Event,
    GroupReceiptMarked,
    InvalidEvent,
    MembershipChanged,
    MessageChanged,
    MessageInFlight,
    MessageSent,
    PresenceReconciled,
    ReceiptKind,
    ReceiptMarked,
    UnknownTrigger,
)
from presence.core.fields import Fields, required_object, required_string

DELIVERY_TRIGGER: Final = "message_delivery_receipt"
READ_TRIGGER: Final = "message_read_receipt"

Reader = Callable[[Fields], Event]


def _by_shape(
    legacy_shape: frozenset[str], current_shape: frozenset[str], *, tie: str
) -> Callable[[Reader, Reader], Reader]:
    def choose(read_legacy: Reader, read_current: Reader) -> Reader:
        def read(data: Fields) -> Event:
            legacy_score = sum(1 for key in legacy_shape if key in data)
            current_score = sum(1 for key in current_shape if key in data)
            if current_score > legacy_score or (current_score == legacy_score and tie == "current"):
                return read_current(data)
            return read_legacy(data)

        return read

    return choose


def _readers() -> dict[str, Reader]:
    connection = _by_shape(frozenset({"event", "connections"}), current.CONNECTION_SHAPE, tie="legacy")
    connection_current = _by_shape(frozenset({"event", "connections"}), current.CONNECTION_SHAPE, tie="current")
    message = _by_shape(frozenset({"id", "conversationId"}), current.MESSAGE_SHAPE, tie="legacy")
    message_current = _by_shape(frozenset({"id", "conversationId"}), current.MESSAGE_SHAPE, tie="current")
    receipt = _by_shape(legacy.RECEIPT_SHAPE, current.RECEIPT_SHAPE, tie="legacy")

    def receipt_of(kind: ReceiptKind) -> Reader:
        return receipt(lambda data: legacy.receipt(data, kind), current.receipt)

    readers: dict[str, Reader] = {
        **{name: connection(legacy.connection, current.connection) for name in legacy.CONNECTION_TRIGGERS},
        current.CONNECTION_TRIGGER: connection_current(legacy.connection, current.connection),
        legacy.MESSAGE_TRIGGER: message(legacy.message, current.message),
        current.MESSAGE_TRIGGER: message_current(legacy.message, current.message),
        legacy.IN_FLIGHT_TRIGGER: lambda data: MessageInFlight(),
        DELIVERY_TRIGGER: receipt_of("delivered"),
        READ_TRIGGER: receipt_of("read"),
        # The service's own: a reconciliation pass's correction (contract §10), read back by rebuild.
        reconcile.TRIGGER: reconcile.read,
    }
    for name, change in current.CHANGE_TRIGGERS.items():
        readers[name] = partial(current.message_change, kind=change)
    for name, kind in current.GROUP_RECEIPT_TRIGGERS.items():
        readers[name] = partial(current.group_receipt, kind=kind)
    for name, membership in current.MEMBERSHIP_TRIGGERS.items():
        # group_member_* are about members and must list them; group_created may; group_deleted does not.
        readers[name] = partial(current.membership, kind=membership, lists_members=name.startswith("group_member_"))
    return readers


_READERS: Final = _readers()
#: Every trigger the service acts on, in either system, and its own reconciliation's.
KNOWN_TRIGGERS: Final = frozenset(_READERS)
#: The triggers CometChat sends that the service acts on: ``/hook`` refuses the service's own.
WEBHOOK_TRIGGERS: Final = KNOWN_TRIGGERS - {reconcile.TRIGGER}


def parse_event(body: object) -> Event:
    """The event a decoded webhook body describes, or :class:`InvalidEvent`."""
    if not isinstance(body, Mapping):
        raise InvalidEvent("body", "expected a JSON object")
    trigger = required_string(body, "trigger", "trigger", MAX_TRIGGER_LENGTH)
    reader = _READERS.get(trigger)
    if reader is None:
        return UnknownTrigger(trigger)
    return reader(required_object(body, "data", "data"))


def check_not_ahead(event: Event, *, received_at_ms: int, max_skew_ms: int) -> None:
    """Refuse an event whose times run further ahead of its arrival than clocks can drift apart.

    A ``connected`` dated 9999 would otherwise be the newest event for ever, and keep its
    user online after every real ``disconnected``. The arrival is passed in: ``/hook`` and
    ``presence import`` give the time they received the body, ``presence rebuild`` the one
    the inbox recorded. Each field is named in the words of the format the event came in.
    """
    latest = received_at_ms + max_skew_ms
    if isinstance(event, ConnectionChanged) and _newest_connection_time(event) <= latest:
        return  # The commonest event, every time of it at once; the walk below names the culprit.
    for where, at_ms in _times_of(event):
        if at_ms is not None and at_ms > latest:
            raise InvalidEvent(where, f"more than {max_skew_ms // 1000} s ahead of the time the event was received")


def _newest_connection_time(event: ConnectionChanged) -> int:
    """The latest of every time :func:`_times_of` gives of ``event`` (and of a few it does not)."""
    newest = max(event.at_ms, event.status_updated_at_ms or 0, event.session.connected_at_ms or 0)
    for member in event.snapshot or ():
        if member.connected_at_ms is not None and member.connected_at_ms > newest:
            newest = member.connected_at_ms
    return newest


def _times_of(event: Event) -> Iterable[tuple[str, int | None]]:
    if isinstance(event, ConnectionChanged):
        if event.format == "current":
            yield "data.timestamp", event.at_ms
            yield "data.currentConnection.connectedAt", event.session.connected_at_ms
            return
        yield "data.event.at", event.at_ms
        yield "data.user.status_updated_at", event.status_updated_at_ms
        yield "data.event.event_for.connected_at", event.session.connected_at_ms
        for member in event.snapshot or ():
            yield "data.connections[].connected_at", member.connected_at_ms
    elif isinstance(event, MessageSent):
        yield ("data.message.sentAt" if event.format == "current" else "data.sentAt"), event.sent_at_ms
    elif isinstance(event, ReceiptMarked):
        if event.format == "current":
            yield "data.body.timestamp", event.at_ms
        else:
            yield ("data.deliveredAt" if event.kind == "delivered" else "data.readAt"), event.at_ms
    elif isinstance(event, MessageChanged):
        yield event.at_field or f"data.message.{event.kind}At", event.at_ms
        yield event.sent_at_field, event.sent_at_ms
    elif isinstance(event, GroupReceiptMarked):
        yield "data.body.timestamp", event.at_ms
    elif isinstance(event, MembershipChanged):
        yield event.at_field, event.at_ms
    elif isinstance(event, PresenceReconciled):
        yield "data.at", event.at_ms
