"""The pure core: what an event means for the stored state.

An event becomes *facts*, one per row it touches. Every kind of fact has a
``join``: commutative, associative and idempotent, so the state reached by
joining the facts of a set of events is the same whatever order they come in
and however often each repeats. The database applies the same joins as
conditional upserts (``presence.db.writes``); this module is their definition.

Presence is decided by an *order key*: the event's time, then a fixed tie rule
(a ``disconnected`` beats a ``connected`` at the same millisecond), then a digest
of the event, so any two different events are ordered the same way everywhere.

Which sessions are live is never written as a cross-row update. A session row
holds its newest signal (the key of the newest event that spoke about it and
whether that event left it live); the user row holds the key of the newest
``connections`` snapshot. A session is live when its newest signal says so and
is not older than that snapshot (:func:`is_live`): a newer snapshot that did not
list it has ended it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

import msgspec
from msgspec.structs import replace

from presence.core.conversations import KnownFrom, participants
from presence.core.events import (
    ConnectionChanged,
    ConnectionKind,
    Event,
    GroupReceiptMarked,
    MembershipChanged,
    MessageChanged,
    MessageSent,
    PresenceReconciled,
    ReceiptKind,
    ReceiptMarked,
    Session,
    StatusSource,
)

#: Sorts before every real key: "no snapshot seen yet".
NO_KEY = b""
_TIE_RANK: dict[ConnectionKind, int] = {"connected": 0, "disconnected": 1}


class _Fact(msgspec.Struct, frozen=True):
    """A fact: an immutable value, made in C (a batch makes several per event, a dataclass's
    frozen ``__init__`` costs several times as much)."""


def order_key(event: ConnectionChanged | MembershipChanged | PresenceReconciled) -> bytes:
    """Bytes that sort events by time, then tie rule, then content.

    The tie rule: a ``disconnected`` beats a ``connected``, a removal (or a group's deletion)
    beats an addition, at the same millisecond; a reconciliation's ``offline`` ranks as a
    ``disconnected``, its ``online`` as a ``connected``. Compared bytewise, as both SQLite (BLOB)
    and PostgreSQL (bytea) do.
    """
    text = _connection_text(event) if isinstance(event, ConnectionChanged) else repr(event)
    digest = hashlib.blake2b(text.encode(), digest_size=16).digest()
    if isinstance(event, MembershipChanged):
        return _key(event.at_ms, 0 if event.kind == "added" else 1, digest)
    if isinstance(event, PresenceReconciled):
        return _key(event.at_ms, 1 if event.status == "offline" else 0, digest)
    return make_order_key(event.at_ms, event.kind, digest)


def _connection_text(event: ConnectionChanged) -> str:
    """``repr(event)``, character for character, without the dataclass's recursion guard.

    The digest is made of the ``repr``: the keys already stored were, and a redelivered event
    must get the same key as its first delivery, so this spells exactly what the dataclass's
    ``__repr__`` does (``tests/test_properties.py`` checks it on arbitrary events).
    """
    snapshot = event.snapshot
    if snapshot is None:
        listed = "None"
    else:
        listed = "(" + ", ".join([_session_text(member) for member in snapshot]) + ("," if len(snapshot) == 1 else "")
        listed += ")"
    return (
        f"ConnectionChanged(uid={event.uid!r}, kind={event.kind!r}, at_ms={event.at_ms!r}, status={event.status!r},"
        f" status_updated_at_ms={event.status_updated_at_ms!r}, session={_session_text(event.session)},"
        f" snapshot={listed})"
    )


def _session_text(session: Session) -> str:
    return (
        f"Session(session_id={session.session_id!r}, device_id={session.device_id!r},"
        f" platform={session.platform!r}, connected_at_ms={session.connected_at_ms!r})"
    )


def make_order_key(at_ms: int, kind: ConnectionKind, digest: bytes) -> bytes:
    """The layout of every order key: 8 bytes of milliseconds (big-endian), 1 of tie rank, the digest."""
    return _key(at_ms, _TIE_RANK[kind], digest)


def _key(at_ms: int, rank: int, digest: bytes) -> bytes:
    return at_ms.to_bytes(8, "big") + bytes((rank,)) + digest


def order_key_ms(key: bytes) -> int:
    """The time an order key was made for, in milliseconds since the epoch."""
    return int.from_bytes(key[:8], "big")


def expiry_floor(now_ms: int, ttl_ms: int) -> bytes:
    """The smallest order key of an event newer than ``ttl_ms`` before ``now_ms`` (``PRESENCE_CONNECTION_TTL``).

    Every key made at or after that millisecond sorts at or above it: :func:`is_fresh`.
    """
    return max(0, now_ms - ttl_ms).to_bytes(8, "big")


def is_fresh(key: bytes, floor: bytes | None) -> bool:
    """Whether a signal's key is not older than the TTL's floor (``None``: no TTL, every signal is)."""
    return floor is None or key >= floor


def answered_status(
    status: str, source: str, status_key: bytes, floor: bytes | None, *, live: int = 0, fresh: int = 0
) -> tuple[str, str]:
    """The status and its source as read at a moment whose TTL floor is ``floor`` (contract §10).

    ``live``: how many live sessions the stored state holds; ``fresh``: how many of them have a
    signal at or above the floor. An ``online`` status answers ``offline``, source ``expired``,
    when its newest event of any kind is older than the TTL, or when the user is left with no
    live session (it had some, none is fresh) and no reconciliation vouches for it: a
    reconciliation's ``online`` (CometChat itself said so, at the pass's time) stands for the
    user for a TTL after it, whatever its stale sessions. Derived at read time from the stored
    keys and the clock, so delivery order still cannot matter; no row is rewritten.
    """
    if status != "online" or floor is None:
        return status, source
    if not is_fresh(status_key, floor) or (live and not fresh and source != "reconcile"):
        return "offline", "expired"
    return status, source


class UserFact(_Fact, frozen=True):
    """A user's status (from the newest event), last-seen time and newest snapshot."""

    uid: str
    status_key: bytes
    status: str
    status_updated_at_ms: int | None
    last_seen_at_ms: int
    snapshot_key: bytes
    #: The key of the newest event that dates the status (``ConnectionChanged.dates_status``);
    #: ``status_updated_at_ms`` is that event's.
    status_updated_key: bytes = NO_KEY
    #: Which kind of event the status is from: the newest event's, like the status.
    status_source: StatusSource = "webhook"


class SessionFact(_Fact, frozen=True):
    """The newest signal about one session of a user."""

    uid: str
    session_id: str
    signal_key: bytes
    live: bool
    device_id: str | None
    platform: str | None
    connected_at_ms: int | None
    disconnected_at_ms: int | None
    #: When the service received that signal; an ended session is expired by it.
    received_at_ms: int


class MessageFact(_Fact, frozen=True):
    """What is known of a message: where it lives and who sent it.

    ``claim`` ranks sources: an ``after_message`` (authority 1) outranks what a
    receipt implies (authority 0); between equals the greater value wins, so the
    choice does not depend on arrival order.
    """

    message_id: int
    claim: bytes
    conversation_id: str
    sender: str | None
    sent_at_ms: int | None
    #: When the service first received an event that named this message; retention goes by it.
    received_at_ms: int
    #: The latest edit known, and the deletion (the earliest time it is known by).
    edited_at_ms: int | None = None
    deleted_at_ms: int | None = None


class WatermarkFact(_Fact, frozen=True):
    """How far a reader has delivered (or read) a conversation: the highest message id, and when.

    A read receipt is also a delivery watermark: reading implies delivery.
    """

    conversation_id: str
    reader: str
    kind: ReceiptKind
    message_id: int
    at_ms: int
    #: When the service received the receipt that set the watermark; retention goes by it.
    received_at_ms: int


class ReceiptFact(_Fact, frozen=True):
    """A reader marked a message (and so every earlier one) delivered or read at ``at_ms``."""

    conversation_id: str
    reader: str
    kind: ReceiptKind
    message_id: int
    at_ms: int
    #: When the service received that receipt; retention goes by it.
    received_at_ms: int


def join_user(a: UserFact, b: UserFact) -> UserFact:
    newest = a if a.status_key >= b.status_key else b
    dated = a if a.status_updated_key >= b.status_updated_key else b
    return UserFact(
        uid=a.uid,
        status_key=newest.status_key,
        status=newest.status,
        status_updated_at_ms=dated.status_updated_at_ms,
        last_seen_at_ms=max(a.last_seen_at_ms, b.last_seen_at_ms),
        snapshot_key=max(a.snapshot_key, b.snapshot_key),
        status_updated_key=dated.status_updated_key,
        status_source=newest.status_source,
    )


# Where two facts say the same thing and differ only in when the service received them
# (a redelivery), the earlier reception wins: every join stays a choice independent of order.


def join_session(a: SessionFact, b: SessionFact) -> SessionFact:
    return a if (a.signal_key, -a.received_at_ms) >= (b.signal_key, -b.received_at_ms) else b


def join_message(a: MessageFact, b: MessageFact) -> MessageFact:
    """The greater claim; at the same claim, the later ``sent_at`` (a known one beats none)."""
    winner = a if _message_rank(a) >= _message_rank(b) else b
    return replace(
        winner,
        received_at_ms=min(a.received_at_ms, b.received_at_ms),
        edited_at_ms=_known(max, a.edited_at_ms, b.edited_at_ms),
        deleted_at_ms=_known(min, a.deleted_at_ms, b.deleted_at_ms),
    )


def _known(choose: Callable[[int, int], int], a: int | None, b: int | None) -> int | None:
    """``choose`` of the known values; ``None`` only when neither is known."""
    if a is None or b is None:
        return a if b is None else b
    return choose(a, b)


def _message_rank(fact: MessageFact) -> tuple[bytes, bool, int]:
    return (fact.claim, fact.sent_at_ms is not None, fact.sent_at_ms or 0)


def join_watermark(a: WatermarkFact, b: WatermarkFact) -> WatermarkFact:
    """The higher message id; at the same id, the earlier time."""
    return a if (a.message_id, -a.at_ms, -a.received_at_ms) >= (b.message_id, -b.at_ms, -b.received_at_ms) else b


class GroupReceiptFact(_Fact, frozen=True):
    """Every member of a group had delivered (read) the message, and every earlier one, at ``at_ms``."""

    conversation_id: str
    kind: ReceiptKind
    message_id: int
    at_ms: int
    #: When the service received that aggregate; retention goes by it.
    received_at_ms: int


class GroupReceiptFlag(_Fact, frozen=True):
    """A group aggregate whose body gave no time: known to have happened, timed at read by ``sentAt``."""

    conversation_id: str
    kind: ReceiptKind
    message_id: int
    received_at_ms: int


class GroupFact(_Fact, frozen=True):
    """A group as its newest event left it, and when it was last deleted."""

    guid: str
    #: The order key of the newest group event: its ``members_count`` is CometChat's count.
    key: bytes
    members_count: int | None
    #: The key of the newest ``group_deleted`` (:data:`NO_KEY` if none): older memberships are over.
    deleted_key: bytes


class MemberFact(_Fact, frozen=True):
    """The newest membership event about one user in one group."""

    guid: str
    uid: str
    key: bytes
    member: bool
    #: The time of that event when it made the user a member.
    joined_at_ms: int | None


class ParticipantFact(_Fact, frozen=True):
    """A user an event showed taking part in a conversation (contract §11): a party or, in a group, activity.

    Its join is set union: the row exists or it does not, whatever the order and repetition.
    """

    conversation_id: str
    uid: str
    known_from: KnownFrom


class Step(Protocol):
    """What a staircase needs of a receipt: which message, when, and when it was received."""

    @property
    def message_id(self) -> int: ...
    @property
    def at_ms(self) -> int: ...
    @property
    def received_at_ms(self) -> int: ...


S = TypeVar("S", bound=Step)

#: One reader's receipts of one kind in one conversation that no other receipt dominates, by message id.
#: Along it message ids and times both strictly increase. A group's aggregates of one kind form one too.
Staircase = tuple[ReceiptFact, ...]


def dominates(a: Step, b: Step) -> bool:
    """Whether ``a`` makes ``b`` useless: it covers at least the same messages, no later.

    A receipt is a watermark, so the time asked of message M is the earliest receipt at or above M
    (:func:`receipt_at`); ``b`` can never be that answer while ``a`` is there. Every receipt dominates
    itself. Of two receipts of the same message at the same time (a redelivery), the one received
    first dominates, so the set kept never depends on arrival order. ``presence.db.writes`` states
    the same condition in SQL.
    """
    if (a.message_id, a.at_ms) == (b.message_id, b.at_ms):
        return a.received_at_ms <= b.received_at_ms
    return a.message_id >= b.message_id and a.at_ms <= b.at_ms


def join_receipt(stairs: tuple[S, ...], fact: S) -> tuple[S, ...]:
    """The receipts of ``stairs`` and ``fact`` that nothing dominates: the join of receipts.

    The non-dominated points of a set do not depend on the order the set was built in or on
    repetition, so this is commutative, associative and idempotent like every other join.
    """
    if any(dominates(kept, fact) for kept in stairs):
        return stairs
    kept = [step for step in stairs if not dominates(fact, step)]
    kept.append(fact)
    kept.sort(key=lambda step: step.message_id)
    return tuple(kept)


def join_staircases(a: tuple[S, ...], b: tuple[S, ...]) -> tuple[S, ...]:
    for fact in b:
        a = join_receipt(a, fact)
    return a


def receipt_at(stairs: tuple[Step, ...], message_id: int) -> int | None:
    """The earliest time in ``stairs`` at or above ``message_id``: the first step there (times increase)."""
    return next((step.at_ms for step in stairs if step.message_id >= message_id), None)


def join_flag(a: GroupReceiptFlag, b: GroupReceiptFlag) -> GroupReceiptFlag:
    return a if a.received_at_ms <= b.received_at_ms else b


def group_receipt_at(
    stairs: tuple[GroupReceiptFact, ...],
    flags: Iterable[GroupReceiptFlag],
    sent_at: Callable[[int], int | None],
    message_id: int,
) -> tuple[bool, int | None]:
    """Whether a group aggregate covers ``message_id``, and the earliest time one does.

    A timed aggregate gives its time; an untimed one the ``sentAt`` of the message it names
    (``sent_at``), when known. ``presence.db.reads`` asks the same in SQL.
    """
    times = [receipt_at(stairs, message_id)]
    covering = [flag.message_id for flag in flags if flag.message_id >= message_id]
    times += [sent_at(covered) for covered in covering]
    known = [t for t in times if t is not None]
    happened = times[0] is not None or bool(covering)
    return happened, min(known, default=None)


def join_group(a: GroupFact, b: GroupFact) -> GroupFact:
    newest = a if a.key >= b.key else b
    return replace(newest, deleted_key=max(a.deleted_key, b.deleted_key))


def join_member(a: MemberFact, b: MemberFact) -> MemberFact:
    return a if a.key >= b.key else b


def is_member(member: bool, key: bytes, deleted_key: bytes) -> bool:
    """Whether a user is in a group now: added by an event newer than the group's last deletion."""
    return member and key > deleted_key


def is_live(session_live: bool, signal_key: bytes, snapshot_key: bytes) -> bool:
    """Whether a session is connected now; ``presence.db.reads`` asks the same in SQL."""
    return session_live and signal_key >= snapshot_key


def message_claim(authority: int, conversation_id: str, sender: str | None) -> bytes:
    return bytes((authority,)) + conversation_id.encode() + b"\x00" + (sender or "").encode()


def facts_of_connection(event: ConnectionChanged, received_at_ms: int) -> tuple[UserFact, list[SessionFact]]:
    key = order_key(event)
    user = UserFact(
        uid=event.uid,
        status_key=key,
        status=event.status,
        status_updated_at_ms=event.status_updated_at_ms if event.dates_status else None,
        last_seen_at_ms=event.at_ms,
        snapshot_key=key if event.snapshot is not None else NO_KEY,
        status_updated_key=key if event.dates_status else NO_KEY,
    )
    if event.snapshot is None:
        connected = event.kind == "connected"
        return user, [_session_fact(event, key, event.session, received_at_ms, live=connected)]
    sessions = [_session_fact(event, key, member, received_at_ms, live=True) for member in event.snapshot]
    if all(member.session_id != event.session.session_id for member in event.snapshot):
        # The snapshot decides: a session it does not list is over, whatever the event type says.
        sessions.append(_session_fact(event, key, event.session, received_at_ms, live=False))
    return user, sessions


def fact_of_reconcile(event: PresenceReconciled) -> UserFact:
    """A reconciliation's correction: a user-level fact, no session of its own.

    ``offline`` is a snapshot with no connections (it ends every session older than it, as a
    current-format ``offline`` does); ``online`` lists none. Either dates the status to the
    pass's time, the first moment the service knew it. ``last_seen_at`` moves to the pass's
    time for ``online`` (CometChat saw the user then), to CometChat's ``lastActiveAt`` at most
    for ``offline`` (0, no claim, without one: the join keeps the newest seen).
    """
    key = order_key(event)
    offline = event.status == "offline"
    return UserFact(
        uid=event.uid,
        status_key=key,
        status=event.status,
        status_updated_at_ms=event.at_ms,
        last_seen_at_ms=(event.last_active_at_ms or 0) if offline else event.at_ms,
        snapshot_key=key if offline else NO_KEY,
        status_updated_key=key,
        status_source="reconcile",
    )


def _session_fact(
    event: ConnectionChanged, key: bytes, session: Session, received_at_ms: int, *, live: bool
) -> SessionFact:
    return SessionFact(
        uid=event.uid,
        session_id=session.session_id,
        signal_key=key,
        live=live,
        device_id=session.device_id,
        platform=session.platform,
        connected_at_ms=session.connected_at_ms,
        disconnected_at_ms=None if live else event.at_ms,
        received_at_ms=received_at_ms,
    )


def fact_of_message(event: MessageSent, received_at_ms: int) -> MessageFact | None:
    if not event.tracked:
        return None
    return MessageFact(
        message_id=event.message_id,
        claim=message_claim(1, event.conversation_id, event.sender),
        conversation_id=event.conversation_id,
        sender=event.sender,
        sent_at_ms=event.sent_at_ms,
        received_at_ms=received_at_ms,
    )


def facts_of_receipt(event: ReceiptMarked, received_at_ms: int) -> tuple[MessageFact, ReceiptFact, list[WatermarkFact]]:
    message = MessageFact(
        message_id=event.message_id,
        claim=message_claim(0, event.conversation_id, event.message_sender),
        conversation_id=event.conversation_id,
        sender=event.message_sender,
        sent_at_ms=None,
        received_at_ms=received_at_ms,
    )
    receipt = ReceiptFact(
        conversation_id=event.conversation_id,
        reader=event.reader,
        kind=event.kind,
        message_id=event.message_id,
        at_ms=event.at_ms,
        received_at_ms=received_at_ms,
    )
    kinds: tuple[ReceiptKind, ...] = ("delivered", "read") if event.kind == "read" else ("delivered",)
    watermarks = [
        WatermarkFact(event.conversation_id, event.reader, kind, event.message_id, event.at_ms, received_at_ms)
        for kind in kinds
    ]
    return message, receipt, watermarks


def fact_of_change(event: MessageChanged, received_at_ms: int) -> MessageFact:
    """An edit or a deletion: when, and what it says of the message (as a receipt would, authority 0)."""
    return MessageFact(
        message_id=event.message_id,
        claim=message_claim(0, event.conversation_id, event.sender),
        conversation_id=event.conversation_id,
        sender=event.sender,
        sent_at_ms=event.sent_at_ms,
        received_at_ms=received_at_ms,
        edited_at_ms=event.at_ms if event.kind == "edited" else None,
        deleted_at_ms=event.at_ms if event.kind == "deleted" else None,
    )


def facts_of_group_receipt(
    event: GroupReceiptMarked, received_at_ms: int
) -> tuple[MessageFact, GroupReceiptFact | GroupReceiptFlag]:
    message = MessageFact(
        message_id=event.message_id,
        claim=message_claim(0, event.conversation_id, event.message_sender),
        conversation_id=event.conversation_id,
        sender=event.message_sender,
        sent_at_ms=None,
        received_at_ms=received_at_ms,
    )
    if event.at_ms is None:
        return message, GroupReceiptFlag(event.conversation_id, event.kind, event.message_id, received_at_ms)
    return message, GroupReceiptFact(event.conversation_id, event.kind, event.message_id, event.at_ms, received_at_ms)


def facts_of_participants(event: MessageSent | ReceiptMarked) -> list[ParticipantFact]:
    """Who ``event`` shows in its conversation: a tracked message's sender, a receipt's reader and sender."""
    if isinstance(event, MessageSent):
        named: tuple[str | None, ...] = (event.sender,) if event.tracked else ()
    else:
        named = (event.reader, event.message_sender)
    if not named:
        return []
    return [
        ParticipantFact(event.conversation_id, uid, known_from)
        for uid, known_from in participants(event.conversation_id, named)
    ]


def facts_of_membership(event: MembershipChanged) -> tuple[GroupFact, list[MemberFact]]:
    key = order_key(event)
    group = GroupFact(
        guid=event.guid,
        key=key,
        members_count=event.members_count,
        deleted_key=key if event.kind == "deleted" else NO_KEY,
    )
    added = event.kind == "added"
    members = [
        MemberFact(event.guid, uid, key, member=added, joined_at_ms=event.at_ms if added else None)
        for uid in event.members
    ]
    return group, members


@dataclass(slots=True)
class Changes:
    """The joined facts of a batch of events, one per row, ready for one transaction."""

    users: dict[str, UserFact] = field(default_factory=dict)
    sessions: dict[tuple[str, str], SessionFact] = field(default_factory=dict)
    messages: dict[int, MessageFact] = field(default_factory=dict)
    #: Per (conversation, reader, kind): the receipts no other dominates.
    receipts: dict[tuple[str, str, str], Staircase] = field(default_factory=dict)
    watermarks: dict[tuple[str, str, str], WatermarkFact] = field(default_factory=dict)
    #: Per (conversation, kind): the timed group aggregates no other dominates.
    group_receipts: dict[tuple[str, str], tuple[GroupReceiptFact, ...]] = field(default_factory=dict)
    group_flags: dict[tuple[str, str, int], GroupReceiptFlag] = field(default_factory=dict)
    groups: dict[str, GroupFact] = field(default_factory=dict)
    members: dict[tuple[str, str], MemberFact] = field(default_factory=dict)
    participants: dict[tuple[str, str], ParticipantFact] = field(default_factory=dict)

    def add(self, event: Event, received_at_ms: int) -> None:
        """Join in the facts of ``event``, which the service received at ``received_at_ms``."""
        if isinstance(event, ConnectionChanged):
            user, sessions = facts_of_connection(event, received_at_ms)
            self._add_user(user)
            for session in sessions:
                self._add_session(session)
        elif isinstance(event, MessageSent):
            message = fact_of_message(event, received_at_ms)
            if message is not None:
                self._add_message(message)
            self._add_participants(event)
        elif isinstance(event, ReceiptMarked):
            message, receipt, watermarks = facts_of_receipt(event, received_at_ms)
            self._add_message(message)
            self._add_receipt(receipt)
            for watermark in watermarks:
                self._add_watermark(watermark)
            self._add_participants(event)
        elif isinstance(event, MessageChanged):
            self._add_message(fact_of_change(event, received_at_ms))
        elif isinstance(event, GroupReceiptMarked):
            message, aggregate = facts_of_group_receipt(event, received_at_ms)
            self._add_message(message)
            self._add_group_receipt(aggregate)
        elif isinstance(event, MembershipChanged):
            group, members = facts_of_membership(event)
            self._add_group(group)
            for member in members:
                self._add_member(member)
        elif isinstance(event, PresenceReconciled):
            self._add_user(fact_of_reconcile(event))

    def _add_participants(self, event: MessageSent | ReceiptMarked) -> None:
        for fact in facts_of_participants(event):
            self.participants[(fact.conversation_id, fact.uid)] = fact

    def _add_user(self, fact: UserFact) -> None:
        current = self.users.get(fact.uid)
        self.users[fact.uid] = fact if current is None else join_user(current, fact)

    def _add_session(self, fact: SessionFact) -> None:
        key = (fact.uid, fact.session_id)
        current = self.sessions.get(key)
        self.sessions[key] = fact if current is None else join_session(current, fact)

    def _add_message(self, fact: MessageFact) -> None:
        current = self.messages.get(fact.message_id)
        self.messages[fact.message_id] = fact if current is None else join_message(current, fact)

    def _add_receipt(self, fact: ReceiptFact) -> None:
        key = (fact.conversation_id, fact.reader, fact.kind)
        self.receipts[key] = join_receipt(self.receipts.get(key, ()), fact)

    def _add_watermark(self, fact: WatermarkFact) -> None:
        key = (fact.conversation_id, fact.reader, fact.kind)
        current = self.watermarks.get(key)
        self.watermarks[key] = fact if current is None else join_watermark(current, fact)

    def _add_group_receipt(self, fact: GroupReceiptFact | GroupReceiptFlag) -> None:
        if isinstance(fact, GroupReceiptFlag):
            flag_key = (fact.conversation_id, fact.kind, fact.message_id)
            current = self.group_flags.get(flag_key)
            self.group_flags[flag_key] = fact if current is None else join_flag(current, fact)
            return
        key = (fact.conversation_id, fact.kind)
        self.group_receipts[key] = join_receipt(self.group_receipts.get(key, ()), fact)

    def _add_group(self, fact: GroupFact) -> None:
        current = self.groups.get(fact.guid)
        self.groups[fact.guid] = fact if current is None else join_group(current, fact)

    def _add_member(self, fact: MemberFact) -> None:
        key = (fact.guid, fact.uid)
        current = self.members.get(key)
        self.members[key] = fact if current is None else join_member(current, fact)


def changes_of(events: Iterable[tuple[Event, int]]) -> Changes:
    """The joined facts of ``(event, received_at_ms)`` pairs."""
    changes = Changes()
    for event, received_at_ms in events:
        changes.add(event, received_at_ms)
    return changes
