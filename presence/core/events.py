"""The typed events webhook bodies become, whichever of CometChat's two systems sent them.

The legacy webhooks (``presence.core.legacy``) and the current ones
(``presence.core.current``) are two spellings of the same events: a receipt is a
:class:`ReceiptMarked` whichever format it came in, so the rules of the pure core
(``presence.core.facts``) are stated once. Where the current system says something
the legacy one cannot (an edit, a deletion, a group aggregate, a membership change),
it is a new event here. :func:`presence.core.parse.parse_event` picks the reader.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Literal

import msgspec

MAX_ID_LENGTH: Final = 255
MAX_CONVERSATION_LENGTH: Final = 512
MAX_TRIGGER_LENGTH: Final = 100
#: Message ids are compared as integers and stored in a signed 64-bit column.
MAX_MESSAGE_ID: Final = 2**63 - 1
#: How far an event's times may run ahead of its arrival (``PRESENCE_MAX_CLOCK_SKEW``).
DEFAULT_MAX_SKEW_MS: Final = 3_600_000

#: Message categories that are acknowledged and kept but are not messages.
UNTRACKED_CATEGORIES: Final = frozenset({"action", "call"})

ConnectionKind = Literal["connected", "disconnected"]
ReceiptKind = Literal["delivered", "read"]
MessageChangeKind = Literal["edited", "deleted"]
#: What a membership trigger does: members added, members removed, or the group deleted.
MembershipKind = Literal["added", "removed", "deleted"]
#: Which of CometChat's systems spelled an event: only error messages depend on it.
Format = Literal["legacy", "current"]
#: What CometChat's REST API said of a user when a reconciliation pass asked (contract §10).
ReconciledStatus = Literal["online", "offline"]
#: Which kind of event decided a user's status: a webhook, or a reconciliation pass (contract §10).
#: ``expired`` is never stored: the TTL derives it at read time.
StatusSource = Literal["webhook", "reconcile", "expired"]


class InvalidEvent(ValueError):
    """A known trigger whose body lacks a required field or has one of the wrong type."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class Session(msgspec.Struct, frozen=True):
    """One device connection as CometChat describes it (``event_for`` or a ``connections`` entry).

    A msgspec struct, made in C (a connection event has one per device it lists), with the
    dataclass's ``repr``, equality and hashing: an order key's digest spells it
    (``facts.order_key``; ``tests/test_properties.py`` pins stored keys).
    """

    session_id: str
    device_id: str | None
    platform: str | None
    connected_at_ms: int | None


@dataclass(frozen=True, slots=True)
class ConnectionChanged:
    """A user connected or disconnected one session.

    Legacy ``after_connection_status_changed`` and current ``user_connection_status_changed``.
    """

    uid: str
    kind: ConnectionKind
    at_ms: int
    status: str
    status_updated_at_ms: int | None
    session: Session
    #: The user's live sessions after this event, or ``None`` when the payload has no snapshot.
    snapshot: tuple[Session, ...] | None
    #: Whether this event says when the status last changed. A legacy event always does (its
    #: ``status_updated_at``, even when absent); a current one only when ``userPresenceChanged``.
    #: Left out of ``repr`` (and so of the order key's digest, ``facts.order_key``): it only ever
    #: differs between events whose ``status_updated_at_ms`` differs too.
    dates_status: bool = field(default=True, repr=False)
    format: Format = field(default="legacy", compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class MessageSent:
    """A message now exists in a conversation: legacy ``after_message``, current ``message_sent``."""

    message_id: int
    conversation_id: str
    sender: str | None
    sent_at_ms: int | None
    tracked: bool
    format: Format = field(default="legacy", compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class MessageInFlight:
    """``before_message``: a message being sent; it has no id yet and changes no state."""


@dataclass(frozen=True, slots=True)
class ReceiptMarked:
    """``message_delivery_receipt`` / ``message_read_receipt``, either format: a reader's watermark."""

    kind: ReceiptKind
    message_id: int
    conversation_id: str
    reader: str
    message_sender: str | None
    at_ms: int
    format: Format = field(default="legacy", compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class MessageChanged:
    """Current ``message_edited`` / ``message_deleted``: a message was edited or deleted at ``at_ms``."""

    kind: MessageChangeKind
    message_id: int
    conversation_id: str
    sender: str | None
    sent_at_ms: int | None
    at_ms: int
    #: The fields ``at_ms`` and ``sent_at_ms`` were read from (the shapes and the fallbacks differ),
    #: so that a time refused later (``parse.check_not_ahead``) is named as the body spelled it.
    #: ``None``: the live shape's own field (``data.message.editedAt`` / ``deletedAt``).
    at_field: str | None = field(default=None, compare=False, repr=False)
    sent_at_field: str = field(default="data.message.sentAt", compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class GroupReceiptMarked:
    """Current ``message_delivered_to_all`` / ``message_read_by_all``: every member of a group did.

    A watermark like a receipt: it covers every earlier message of the group. ``at_ms`` is
    ``None`` when the body gave no time; the aggregate is still known.
    """

    kind: ReceiptKind
    message_id: int
    conversation_id: str
    message_sender: str | None
    at_ms: int | None


@dataclass(frozen=True, slots=True)
class MembershipChanged:
    """A current group trigger: members joined or were added, left or were removed, or the group went.

    ``group_created`` adds the members it lists (the owner); ``group_deleted`` ends every
    membership older than it. ``members_count`` is CometChat's own count at that moment.
    """

    guid: str
    kind: MembershipKind
    at_ms: int
    members: tuple[str, ...]
    members_count: int | None
    #: The field ``at_ms`` was read from (``updatedAt``, else ``createdAt``), for ``parse.check_not_ahead``.
    #: Left out of comparisons and of ``repr`` (so of the order key's digest): it says where the time
    #: was written, not what happened.
    at_field: str = field(default="data.group.updatedAt", compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class PresenceReconciled:
    """A reconciliation pass's correction (trigger ``presence_reconcile``, written by the service itself).

    At ``at_ms``, the pass's start, CometChat's REST API said the user was ``status``. An
    ``offline`` fact ends every session older than it, as a current-format ``offline`` does; an
    ``online`` one has no connections (the REST API lists none). ``last_active_at_ms``: CometChat's
    ``lastActiveAt`` of an offline user, when it gave one; it moves ``last_seen_at`` no later than it.
    """

    uid: str
    status: ReconciledStatus
    at_ms: int
    last_active_at_ms: int | None = None


@dataclass(frozen=True, slots=True)
class UnknownTrigger:
    """A trigger this service does not act on: acknowledged, kept, ignored."""

    trigger: str


Event = (
    ConnectionChanged
    | MessageSent
    | MessageInFlight
    | ReceiptMarked
    | MessageChanged
    | GroupReceiptMarked
    | MembershipChanged
    | PresenceReconciled
    | UnknownTrigger
)


def is_storable_id(value: str, max_length: int = MAX_ID_LENGTH) -> bool:
    """Whether intake could ever have stored ``value`` as an id (so a lookup can be skipped)."""
    return 0 < len(value) <= max_length and "\x00" not in value


def user_conversation_id(first_uid: str, second_uid: str) -> str:
    """CometChat's id of a one-to-one conversation: the two uids sorted, joined by ``_user_``."""
    low, high = sorted((first_uid, second_uid))
    return f"{low}_user_{high}"


def group_conversation_id(guid: str) -> str:
    return f"group_{guid}"


def parse_message_id(text: str) -> int | None:
    """A message id as the integer it is compared as, or ``None`` if it cannot be one."""
    if not text.isascii() or not text.isdigit() or len(text) > 19 or int(text) > MAX_MESSAGE_ID:
        return None
    return int(text)
