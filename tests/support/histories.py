"""Hypothesis strategies for webhook histories: several users on several devices, and
conversations (one-to-one and group) with messages and receipts.

They are built to hit what breaks naive implementations: many events share a
timestamp (ties), message ids cross digit boundaries (9/10, 99/100), payloads
come with and without a ``connections`` snapshot, and timestamps arrive as
numbers, numeric strings, seconds or milliseconds.

Both of CometChat's systems speak (contract §8): each message and each receipt
comes in the legacy or the current format, sometimes in both (the same receipt
twice, which must count once); messages are edited and deleted in both shapes the
current system is known to use; the group gets delivered-to-all and read-by-all
aggregates (with and without a time) and membership events. A user's connections
come in the legacy format, the current one, or both; a current history loses some
``disconnected`` events, and a later ``offline`` covers them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from presence.core import reconcile
from presence.core.events import ReconciledStatus
from tests.support import payloads

UIDS = ("u1", "u2", "u3")
SESSIONS = ("s1", "s2", "s3")
PLATFORMS = ("web", "ios", "android")
#: The current system's platform names (it says ``javascript`` for the web).
CURRENT_PLATFORMS = ("javascript", "ios", "android")
#: Which of CometChat's systems a user's connection events come from.
CONNECTION_FORMATS = ("legacy", "current", "both")
MESSAGE_IDS = (8, 9, 10, 11, 98, 99, 100, 101)
#: Conversations as (conversation id, members, receiver type, receiver of a receipt).
GROUP = "g1"
BASE_MS = 1_763_720_000_000
BASE_S = 1_763_720_000

Body = dict[str, Any]


@dataclass(frozen=True)
class History:
    bodies: tuple[Body, ...]
    uids: tuple[str, ...]
    message_ids: tuple[str, ...]
    conversation_ids: tuple[str, ...]


def _render_ms(draw: st.DrawFn, ms: int) -> int | str:
    """A millisecond instant as CometChat might send it: ms or (when whole) seconds, number or string."""
    forms: list[int] = [ms]
    if ms % 1000 == 0:
        forms.append(ms // 1000)
    value = draw(st.sampled_from(forms))
    as_sent: tuple[int | str, ...] = (value, str(value))
    return draw(st.sampled_from(as_sent))


def _render_s(draw: st.DrawFn, seconds: int) -> int | str:
    """A receipt time: seconds, or milliseconds (above 10^11), number or string."""
    value = draw(st.sampled_from((seconds, seconds * 1000)))
    as_sent: tuple[int | str, ...] = (value, str(value))
    return draw(st.sampled_from(as_sent))


@st.composite
def _device(draw: st.DrawFn, uid: str, session_id: str, at_ms: int) -> dict[str, Any]:
    connected_ms = at_ms - draw(st.sampled_from((0, 1000, 3000)))
    return payloads.device(
        session_id,
        connected_at=_render_ms(draw, connected_ms),
        device_id=f"d-{uid}-{session_id}",
        platform=draw(st.sampled_from(PLATFORMS)),
    )


@st.composite
def connection_events(draw: st.DrawFn, uids: tuple[str, ...] = UIDS) -> Body:
    """One legacy connection event of one of ``uids``."""
    uid = draw(st.sampled_from(uids))
    kind = draw(st.sampled_from(("connected", "disconnected")))
    at_ms = BASE_MS + draw(st.integers(0, 8)) * 1000  # few distinct instants: many ties
    session = draw(_device(uid, draw(st.sampled_from(SESSIONS)), at_ms))
    connections = None
    if draw(st.booleans()):
        members = draw(st.lists(st.sampled_from(SESSIONS), unique=True, max_size=3))
        connections = [draw(_device(uid, member, at_ms)) for member in members]
    status_updated = draw(st.one_of(st.none(), st.integers(0, 8).map(lambda s: BASE_MS + s * 1000)))
    return payloads.connection(
        uid,
        kind,
        _render_ms(draw, at_ms),
        session,
        connections=connections,
        status=draw(st.sampled_from(("online", "offline"))),
        status_updated_at=None if status_updated is None else _render_ms(draw, status_updated),
        trigger=draw(st.sampled_from(("after_connection_status_changed", "user_connection_status_change"))),
    )


@st.composite
def current_connection_events(draw: st.DrawFn, uid: str) -> list[Body]:
    """A user's connections in the current format, some of their ``disconnected`` events lost.

    Each connection is a (platform, connectedAt) pair: its ``connected``, then maybe its
    ``disconnected``. The status each event carries is what CometChat knows, every connection
    counted, so a later ``offline`` covers the disconnects that were lost on the way.
    ``userPresenceChanged`` is true when that status flipped (sometimes left out), else
    false or left out.
    """
    pairs = draw(st.lists(st.tuples(st.sampled_from(CURRENT_PLATFORMS), st.integers(0, 5)), unique=True, max_size=3))
    # (time, tie rank as the service orders it, kind, platform, connectedAt): few distinct seconds.
    timeline: list[tuple[int, int, str, str, int]] = []
    for platform, second in pairs:
        connected_ms = BASE_MS + second * 1000
        timeline.append((connected_ms + draw(st.sampled_from((0, 0, 7))), 0, "connected", platform, connected_ms))
        if draw(st.booleans()):
            ended_ms = connected_ms + draw(st.integers(1, 4)) * 1000
            timeline.append((ended_ms, 1, "disconnected", platform, connected_ms))
    timeline.sort()
    bodies: list[Body] = []
    live: set[tuple[str, int]] = set()
    online = False
    for at_ms, _rank, kind, platform, connected_ms in timeline:
        if kind == "connected":
            live.add((platform, connected_ms))
        else:
            live.discard((platform, connected_ms))
        flipped, online = online != bool(live), bool(live)
        if kind == "disconnected" and draw(st.booleans()):
            continue  # lost: CometChat never delivered it
        changed = draw(st.sampled_from((True, True, None) if flipped else (False, None)))
        bodies.append(
            payloads.current_connection(
                uid,
                kind,
                _render_ms(draw, at_ms),
                platform=platform,
                connected_at=_render_ms(draw, connected_ms),
                status=draw(st.sampled_from(("online", "available"))) if online else "offline",
                presence_changed=changed,
            )
        )
    return bodies


@dataclass(frozen=True)
class _Conversation:
    id: str
    members: tuple[str, ...]
    group: bool


_CONVERSATIONS = (
    _Conversation("u1_user_u2", ("u1", "u2"), group=False),
    _Conversation("u2_user_u3", ("u2", "u3"), group=False),
    _Conversation(f"group_{GROUP}", UIDS, group=True),
)
MEMBERSHIP_TRIGGERS = (
    "group_member_joined",
    "group_member_added",
    "group_created",
    "group_member_left",
    "group_member_kicked",
    "group_member_banned",
    "group_member_removed",
    "group_deleted",
)
#: How each message or receipt is sent: by one system, or by both (the same event twice).
_FORMATS = ("legacy", "current", "both")


def _formats(draw: st.DrawFn) -> tuple[str, ...]:
    chosen = draw(st.sampled_from(_FORMATS))
    return ("legacy", "current") if chosen == "both" else (chosen,)


@st.composite
def _message_sent(
    draw: st.DrawFn, message_id: int, conversation: _Conversation, sender: str, sent_s: int
) -> list[Body]:
    """The message in either format or both, one category for both."""
    category = draw(st.sampled_from(("message", "message", "custom", "action", "call")))
    build = {"legacy": payloads.message, "current": payloads.message_sent}
    return [
        build[f](
            message_id,
            conversation.id,
            sender,
            receiver_type="group" if conversation.group else "user",
            receiver=GROUP if conversation.group else next(m for m in conversation.members if m != sender),
            category=category,
            sent_at=_render_s(draw, sent_s),
        )
        for f in _formats(draw)
    ]


@st.composite
def _receipt(draw: st.DrawFn, message_id: int, conversation: _Conversation, sender: str) -> list[Body]:
    """One receipt, in either format or both."""
    if conversation.group:
        reader = draw(st.sampled_from(conversation.members))  # the sender too: never listed
        message_sender = draw(st.sampled_from((sender, None)))
        receiver = GROUP
    else:
        reader = next(m for m in conversation.members if m != sender)
        message_sender = sender
        receiver = sender
    kind = draw(st.sampled_from(("delivered", "read")))
    at_s = BASE_S + draw(st.integers(0, 10))
    build = {"legacy": payloads.receipt, "current": payloads.current_receipt}
    return [
        build[f](
            kind,
            message_id,
            reader=reader,
            message_sender=message_sender,
            at=_render_s(draw, at_s),
            receiver=receiver,
            receiver_type="group" if conversation.group else "user",
        )
        for f in _formats(draw)
    ]


@st.composite
def _changes(draw: st.DrawFn, message_id: int, conversation: _Conversation, sender: str, sent_s: int) -> list[Body]:
    """Edits and maybe a deletion, each in one of the two shapes or both; ``sentAt`` as the message's."""
    bodies = []
    for _ in range(draw(st.sampled_from((0, 0, 1, 2)))):
        edited_at = BASE_S + draw(st.integers(5, 12))
        for action_shape in draw(st.sampled_from(((True,), (False,), (True, False)))):
            bodies.append(
                payloads.message_edited(
                    message_id,
                    conversation.id,
                    sender,
                    edited_at=_render_s(draw, edited_at),
                    sent_at=_render_s(draw, sent_s),
                    action_shape=action_shape,
                )
            )
    if draw(st.integers(0, 3)) == 0:
        deleted_at = BASE_S + draw(st.integers(5, 12))
        for action_shape in draw(st.sampled_from(((True,), (False,), (True, False)))):
            body = payloads.message_deleted(
                message_id, conversation.id, sender, deleted_at=_render_s(draw, deleted_at), action_shape=action_shape
            )
            if not action_shape:
                body["data"]["message"]["sentAt"] = _render_s(draw, sent_s)  # the message's own, as CometChat's
            bodies.append(body)
    return bodies


@st.composite
def _group_receipts(draw: st.DrawFn, message_id: int, sender: str) -> list[Body]:
    """Delivered-to-all and read-by-all aggregates of a group message, with a time or without."""
    bodies = []
    for _ in range(draw(st.integers(0, 2))):
        at_s = draw(st.one_of(st.none(), st.integers(0, 10).map(lambda s: BASE_S + s)))
        bodies.append(
            payloads.group_receipt(
                draw(st.sampled_from(("delivered", "read"))),
                message_id,
                guid=GROUP,
                message_sender=draw(st.sampled_from((sender, None))),
                at=None if at_s is None else _render_s(draw, at_s),
            )
        )
    return bodies


@st.composite
def message_histories(draw: st.DrawFn, *, max_messages: int = 6) -> list[Body]:
    bodies: list[Body] = []
    for message_id in draw(st.lists(st.sampled_from(MESSAGE_IDS), unique=True, min_size=1, max_size=max_messages)):
        conversation = draw(st.sampled_from(_CONVERSATIONS))
        sender = draw(st.sampled_from(conversation.members))
        sent_s = BASE_S + draw(st.integers(0, 5))
        if draw(st.booleans()):
            bodies += draw(_message_sent(message_id, conversation, sender, sent_s))
        for _ in range(draw(st.integers(0, 4))):
            bodies += draw(_receipt(message_id, conversation, sender))
        bodies += draw(_changes(message_id, conversation, sender, sent_s))
        if conversation.group:
            bodies += draw(_group_receipts(message_id, sender))
    return bodies


@st.composite
def membership_events(draw: st.DrawFn, *, max_events: int = 6) -> list[Body]:
    """The group's membership: several triggers, few distinct seconds, so that ties happen."""
    bodies = []
    for _ in range(draw(st.integers(0, max_events))):
        trigger = draw(st.sampled_from(MEMBERSHIP_TRIGGERS))
        minimum = 1 if trigger.startswith("group_member_") else 0
        members = draw(st.lists(st.sampled_from(UIDS), unique=True, min_size=minimum, max_size=3))
        bodies.append(
            payloads.membership(
                trigger,
                GROUP,
                members,
                updated_at=_render_s(draw, BASE_S + draw(st.integers(0, 3))),
                members_count=draw(st.one_of(st.none(), st.integers(0, 5))),
            )
        )
    return bodies


@st.composite
def reconcile_facts(draw: st.DrawFn, *, max_facts: int = 4) -> list[Body]:
    """Reconciliation passes' corrections (contract §10) at times among the connections', ties included.

    Some ``offline`` facts carry CometChat's ``lastActiveAt``, earlier than the pass (or, when
    CometChat is odd, later: the service caps it at the pass's time).
    """
    bodies = []
    for _ in range(draw(st.integers(0, max_facts))):
        at_ms = BASE_MS + draw(st.integers(0, 9)) * 1000 + draw(st.sampled_from((0, 0, 7, 500)))
        statuses: tuple[ReconciledStatus, ...] = ("online", "offline")
        status = draw(st.sampled_from(statuses))
        last_active = None
        if status == "offline" and draw(st.booleans()):
            last_active = at_ms + draw(st.integers(-3000, 1000))
        bodies.append(reconcile.body(draw(st.sampled_from(UIDS)), status, at_ms, last_active))
    return bodies


@st.composite
def histories(
    draw: st.DrawFn,
    *,
    max_connection_events: int = 16,
    max_messages: int = 6,
    max_membership_events: int = 6,
    max_reconcile_facts: int = 0,
) -> History:
    """Connections, messages and membership; the maxima bound the legacy connection events,
    the messages (each with its receipts, edits and aggregates), the membership events and the
    reconciliation facts (none unless asked: ``/hook`` refuses them)."""
    formats = {uid: draw(st.sampled_from(CONNECTION_FORMATS), label=f"format of {uid}") for uid in UIDS}
    legacy_uids = tuple(uid for uid in UIDS if formats[uid] != "current")
    connections: list[Body] = []
    if legacy_uids:
        connections += draw(st.lists(connection_events(legacy_uids), max_size=max_connection_events))
    for uid in UIDS:
        if formats[uid] != "legacy":
            connections += draw(current_connection_events(uid))
    if max_reconcile_facts:
        connections += draw(reconcile_facts(max_facts=max_reconcile_facts))
    messages = draw(message_histories(max_messages=max_messages))
    members = draw(membership_events(max_events=max_membership_events))
    queried_ids = tuple(str(i) for i in (7, *MESSAGE_IDS))  # 7 is never named: 404
    conversations = (*(c.id for c in _CONVERSATIONS), "u1_user_u3")  # the last is never named: 404
    return History(
        bodies=tuple(connections + messages + members),
        uids=(*UIDS, "nobody"),
        message_ids=queried_ids,
        conversation_ids=conversations,
    )


@st.composite
def deliveries(draw: st.DrawFn, bodies: tuple[Body, ...]) -> list[Body]:
    """Every body at least once, some several times, in any order: how CometChat retries."""
    repeated = [body for body in bodies for _ in range(draw(st.integers(1, 3)))]
    return draw(st.permutations(repeated))
