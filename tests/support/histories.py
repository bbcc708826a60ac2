"""Hypothesis strategies for webhook histories: several users on several devices, and
conversations (one-to-one and group) with messages and receipts.

They are built to hit what breaks naive implementations: many events share a
timestamp (ties), message ids cross digit boundaries (9/10, 99/100), payloads
come with and without a ``connections`` snapshot, and timestamps arrive as
numbers, numeric strings, seconds or milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from tests.support import payloads

UIDS = ("u1", "u2", "u3")
SESSIONS = ("s1", "s2", "s3")
PLATFORMS = ("web", "ios", "android")
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
def connection_events(draw: st.DrawFn) -> Body:
    uid = draw(st.sampled_from(UIDS))
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


@st.composite
def message_histories(draw: st.DrawFn) -> list[Body]:
    bodies: list[Body] = []
    for message_id in draw(st.lists(st.sampled_from(MESSAGE_IDS), unique=True, min_size=1, max_size=6)):
        conversation = draw(st.sampled_from(_CONVERSATIONS))
        sender = draw(st.sampled_from(conversation.members))
        if draw(st.booleans()):
            bodies.append(
                payloads.message(
                    message_id,
                    conversation.id,
                    sender,
                    receiver_type="group" if conversation.group else "user",
                    receiver=GROUP if conversation.group else next(m for m in conversation.members if m != sender),
                    category=draw(st.sampled_from(("message", "message", "custom", "action", "call"))),
                    sent_at=_render_s(draw, BASE_S + draw(st.integers(0, 5))),
                )
            )
        for _ in range(draw(st.integers(0, 4))):
            if conversation.group:
                reader = draw(st.sampled_from(conversation.members))  # the sender too: never listed
                message_sender = draw(st.sampled_from((sender, None)))
                receiver = GROUP
            else:
                reader = next(m for m in conversation.members if m != sender)
                message_sender = sender
                receiver = sender
            bodies.append(
                payloads.receipt(
                    draw(st.sampled_from(("delivered", "read"))),
                    message_id,
                    reader=reader,
                    message_sender=message_sender,
                    at=_render_s(draw, BASE_S + draw(st.integers(0, 10))),
                    receiver=receiver,
                    receiver_type="group" if conversation.group else "user",
                )
            )
    return bodies


@st.composite
def histories(draw: st.DrawFn, *, max_connection_events: int = 16) -> History:
    connections = draw(st.lists(connection_events(), max_size=max_connection_events))
    messages = draw(message_histories())
    queried_ids = tuple(str(i) for i in (7, *MESSAGE_IDS))  # 7 is never named: 404
    conversations = (*(c.id for c in _CONVERSATIONS), "u1_user_u3")  # the last is never named: 404
    return History(
        bodies=tuple(connections + messages),
        uids=(*UIDS, "nobody"),
        message_ids=queried_ids,
        conversation_ids=conversations,
    )


@st.composite
def deliveries(draw: st.DrawFn, bodies: tuple[Body, ...]) -> list[Body]:
    """Every body at least once, some several times, in any order: how CometChat retries."""
    repeated = [body for body in bodies for _ in range(draw(st.integers(1, 3)))]
    return draw(st.permutations(repeated))
