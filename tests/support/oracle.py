"""The contract read literally, as a slow reference: what the answers must be.

Presence (contract §3, §8): apply each connection event once, in time order, to a
dictionary of live sessions. Receipts (contract §4, §8): the definition, computed
over all receipts, edits, deletions and group aggregates. Membership (§8): each
membership event once, in time order. This shares nothing with the service but the
parser and the order of events with equal timestamps (the fixed tie rule).
"""

from __future__ import annotations

from typing import Any

from presence.core.events import (
    ConnectionChanged,
    Event,
    GroupReceiptMarked,
    MembershipChanged,
    MessageChanged,
    MessageSent,
    PresenceReconciled,
    ReceiptMarked,
    Session,
)
from presence.core.facts import order_key
from presence.core.parse import parse_event
from presence.core.times import format_instant, ms_to_datetime

#: What a receipts answer says of a message that no current-format event (contract §8) has spoken of:
#: no edit, no deletion, no group aggregate.
NOTHING_CURRENT: dict[str, Any] = {
    "edited_at": None,
    "deleted_at": None,
    "delivered_to_all": False,
    "delivered_to_all_at": None,
    "read_by_all": False,
    "read_by_all_at": None,
}


def _iso(ms: int | None) -> str | None:
    return None if ms is None else format_instant(ms_to_datetime(ms))


def _dating(event: ConnectionChanged, body: dict[str, Any]) -> tuple[bool, int | None]:
    """Whether the event says when the status last changed, and what it says.

    A legacy event gives its ``status_updated_at``; a current one dates the status to its own
    time when its ``userPresenceChanged`` is true, and otherwise says nothing about it.
    """
    if event.format == "legacy":
        return True, event.status_updated_at_ms
    return body["data"].get("userPresenceChanged") is True, event.at_ms


def _ends(event: ConnectionChanged | PresenceReconciled) -> bool:
    """The tie rule: a disconnect (a reconciliation's ``offline``) beats a connect (its ``online``)."""
    if isinstance(event, PresenceReconciled):
        return event.status == "offline"
    return event.kind == "disconnected"


def _reconciled(event: PresenceReconciled, user: dict[str, Any], sessions: dict[str, Session]) -> None:
    user["status"], user["source"], user["status_updated_at"] = event.status, "reconcile", event.at_ms
    if event.status == "offline":
        user["seen"] = max(user["seen"], event.last_active_at_ms or 0)
        sessions.clear()
    else:
        user["seen"] = max(user["seen"], event.at_ms)


def _connection(event: ConnectionChanged, sessions: dict[str, Session]) -> None:
    if event.format == "current":
        # No session id of CometChat's: the connection names itself. An offline user has none left.
        platform, connected_at = event.session.platform, event.session.connected_at_ms
        session = Session(f"{platform}:{connected_at}", None, platform, connected_at)
        if event.status == "offline":
            sessions.clear()
        elif event.kind == "connected":
            sessions[session.session_id] = session
        else:
            sessions.pop(session.session_id, None)
    elif event.snapshot is not None:
        sessions.clear()
        sessions.update({s.session_id: s for s in event.snapshot})
    elif event.kind == "connected":
        sessions[event.session.session_id] = event.session
    else:
        sessions.pop(event.session.session_id, None)


def expected_presence(bodies: list[dict[str, Any]] | tuple[dict[str, Any], ...]) -> dict[str, dict[str, Any]]:
    """§3, §8 and §10: each connection event and each reconciliation fact once, in time order.

    A reconciliation fact at T (contract §10) sets the status, dated T, its source ``reconcile``;
    ``offline`` ends every session (those connected later come back by their own events), and
    moves ``last_seen_at`` to CometChat's ``lastActiveAt`` at most; ``online`` moves it to T.
    """
    events: dict[ConnectionChanged | PresenceReconciled, dict[str, Any]] = {}
    for body in bodies:
        event = parse_event(body)
        if isinstance(event, ConnectionChanged | PresenceReconciled):
            events[event] = body
    users: dict[str, dict[str, Any]] = {}
    live: dict[str, dict[str, Session]] = {}
    # The tie rule as the contract states it (a disconnect beats a connect); the service's key for the rest.
    for event in sorted(events, key=lambda e: (e.at_ms, _ends(e), order_key(e))):
        user = users.setdefault(event.uid, {"status_updated_at": None, "seen": 0})
        sessions = live.setdefault(event.uid, {})
        if isinstance(event, PresenceReconciled):
            _reconciled(event, user, sessions)
            continue
        user["status"], user["source"], user["seen"] = event.status, "webhook", max(user["seen"], event.at_ms)
        dates, status_updated_at = _dating(event, events[event])
        if dates:
            user["status_updated_at"] = status_updated_at
        _connection(event, sessions)
    answers = {}
    for uid, user in users.items():
        ordered = sorted(
            live[uid].values(),
            key=lambda s: (s.connected_at_ms is None, s.connected_at_ms or 0, s.session_id),
        )
        answers[uid] = {
            "uid": uid,
            "status": user["status"],
            "status_updated_at": _iso(user["status_updated_at"]),
            "last_seen_at": _iso(user["seen"]),
            "status_source": user["source"],
            "connections": [
                {
                    "session_id": s.session_id,
                    "device_id": s.device_id,
                    "platform": s.platform,
                    "connected_at": _iso(s.connected_at_ms),
                }
                for s in ordered
            ],
        }
    return answers


def _group_aggregate(
    aggregates: list[GroupReceiptMarked], sent_at: dict[int, int], message_id: int
) -> tuple[bool, int | None]:
    """§8: whether an aggregate covers the message (one for it or a later message), and the earliest time.

    A timed aggregate gives its time; an untimed one the ``sentAt`` of the message it names, when known.
    """
    covering = [a for a in aggregates if a.message_id >= message_id]
    times = [a.at_ms if a.at_ms is not None else sent_at.get(a.message_id) for a in covering]
    return bool(covering), min((t for t in times if t is not None), default=None)


def expected_receipts(
    bodies: list[dict[str, Any]] | tuple[dict[str, Any], ...], *, unread_by: bool = True
) -> dict[str, dict[str, Any]]:
    """§4 and §8 for every message named; with ``unread_by``, §11's additions to a group message's."""
    events = [parse_event(b) for b in bodies]
    sent = {e.message_id: e for e in events if isinstance(e, MessageSent) and e.tracked}
    receipts = [e for e in events if isinstance(e, ReceiptMarked)]
    changes = [e for e in events if isinstance(e, MessageChanged)]
    aggregates = [e for e in events if isinstance(e, GroupReceiptMarked)]
    # What names a message without being it: receipts, aggregates, edits and deletions.
    mentions: list[ReceiptMarked | GroupReceiptMarked | MessageChanged] = [*receipts, *aggregates, *changes]
    known: dict[int, tuple[str, str | None]] = {}
    for m in mentions:
        conversation, sender = known.get(m.message_id, (m.conversation_id, None))
        named_sender = m.sender if isinstance(m, MessageChanged) else m.message_sender
        known[m.message_id] = (conversation, sender or named_sender)
    for message_id, message in sent.items():
        known[message_id] = (message.conversation_id, message.sender)
    # A message's own sentAt, from any event that carries it (the histories give each message one).
    sent_at = {c.message_id: c.sent_at_ms for c in changes if c.sent_at_ms is not None}
    sent_at.update({i: m.sent_at_ms for i, m in sent.items() if m.sent_at_ms is not None})
    answers = {}
    for message_id, (conversation, sender) in known.items():
        relevant = [
            r
            for r in receipts
            if r.conversation_id == conversation and r.message_id >= message_id and r.reader != sender
        ]
        readers = sorted({r.reader for r in relevant})
        rows = []
        for reader in readers:
            mine = [r for r in relevant if r.reader == reader]
            reads = [r.at_ms for r in mine if r.kind == "read"]
            rows.append(
                {
                    "uid": reader,
                    "delivered_at": _iso(min(r.at_ms for r in mine)),
                    "read_at": _iso(min(reads) if reads else None),
                }
            )
        edits = [c.at_ms for c in changes if c.message_id == message_id and c.kind == "edited"]
        deletions = [c.at_ms for c in changes if c.message_id == message_id and c.kind == "deleted"]
        of_group = [a for a in aggregates if a.conversation_id == conversation]
        # Reading implies delivery: a read-by-all is a delivered-to-all too.
        delivered_to_all, delivered_to_all_at = _group_aggregate(of_group, sent_at, message_id)
        read_by_all, read_by_all_at = _group_aggregate([a for a in of_group if a.kind == "read"], sent_at, message_id)
        answers[str(message_id)] = {
            "message_id": str(message_id),
            "conversation_id": conversation,
            "sender": sender,
            "receipts": rows,
            "delivered_count": len(rows),
            "read_count": sum(1 for row in rows if row["read_at"] is not None),
            "edited_at": _iso(max(edits, default=None)),
            "deleted_at": _iso(min(deletions, default=None)),
            "delivered_to_all": delivered_to_all,
            "delivered_to_all_at": _iso(delivered_to_all_at),
            "read_by_all": read_by_all,
            "read_by_all_at": _iso(read_by_all_at),
        }
        if unread_by and conversation.startswith("group_"):
            answers[str(message_id)].update(_unread_by(events, bodies, message_id, conversation, sender))
    return answers


def _unread_by(
    events: list[Event],
    bodies: list[dict[str, Any]] | tuple[dict[str, Any], ...],
    message_id: int,
    conversation: str,
    sender: str | None,
) -> dict[str, Any]:
    """§11: a group message's ``members_count`` and the known members who have not read it.

    Members: those the membership events leave in the group, and anyone who sent a message or a
    receipt in it whom no membership event names. Nobody has a message unread that no
    ``after_message`` sent or that was deleted, nor one sent before they joined, nor their own.
    """
    guid = conversation.removeprefix("group_")
    group = expected_membership(bodies).get(guid, {"members": {}, "members_count": None})
    members: dict[str, int | None] = dict(group["members"])
    for uid in active_users(events, conversation) - membership_named(events, guid):
        members[uid] = None
    sent = [e for e in events if isinstance(e, MessageSent) and e.tracked and e.message_id == message_id]
    deleted = any(isinstance(e, MessageChanged) and e.message_id == message_id and e.kind == "deleted" for e in events)
    unread: list[str] = []
    if sent and not deleted:
        sent_at = max((e.sent_at_ms for e in sent if e.sent_at_ms is not None), default=None)
        readers = {
            e.reader
            for e in events
            if isinstance(e, ReceiptMarked)
            and e.conversation_id == conversation
            and e.kind == "read"
            and e.message_id >= message_id
        }
        unread = sorted(
            uid
            for uid, joined_at in members.items()
            if uid != sender and uid not in readers and (joined_at is None or sent_at is None or joined_at <= sent_at)
        )
    return {
        "members_count": group["members_count"],
        "unread_by": unread[:100],
        "unread_by_truncated": len(unread) > 100,
    }


def active_users(events: list[Event], conversation: str) -> set[str]:
    """§11 activity: who sent a message (an ``after_message``, or as a receipt names it) or a receipt there."""
    found: set[str | None] = set()
    for e in events:
        if isinstance(e, MessageSent) and e.tracked and e.conversation_id == conversation:
            found.add(e.sender)
        elif isinstance(e, ReceiptMarked) and e.conversation_id == conversation:
            found |= {e.reader, e.message_sender}
    return {uid for uid in found if uid}


def membership_named(events: list[Event], guid: str) -> set[str]:
    """Every uid a membership event of the group named: for them, membership decides, not activity."""
    return {uid for e in events if isinstance(e, MembershipChanged) and e.guid == guid for uid in e.members}


def expected_watermarks(bodies: list[dict[str, Any]] | tuple[dict[str, Any], ...]) -> dict[str, dict[str, Any]]:
    """Contract §6: per conversation, each reader's highest delivered and read id, and that receipt's time."""
    events = [parse_event(b) for b in bodies]
    receipts = [e for e in events if isinstance(e, ReceiptMarked)]
    # A conversation is known once a message in it is: sent, or named by a receipt, an edit, an aggregate.
    conversations = {e.conversation_id for e in events if isinstance(e, MessageSent) and e.tracked}
    conversations |= {
        e.conversation_id for e in events if isinstance(e, ReceiptMarked | MessageChanged | GroupReceiptMarked)
    }
    answers = {}
    for conversation in conversations:
        mine = [r for r in receipts if r.conversation_id == conversation]
        readers = []
        for reader in sorted({r.reader for r in mine}):
            delivered = [r for r in mine if r.reader == reader]  # reading implies delivery
            read = [r for r in delivered if r.kind == "read"]
            row: dict[str, Any] = {"uid": reader}
            for name, marks in (("delivered", delivered), ("read", read)):
                top = max((r.message_id for r in marks), default=None)
                row[f"{name}_up_to"] = None if top is None else str(top)
                row[f"{name}_at"] = _iso(min((r.at_ms for r in marks if r.message_id == top), default=None))
            readers.append(row)
        answers[conversation] = {"conversation_id": conversation, "readers": readers}
    return answers


def non_dominated_receipts(
    bodies: list[dict[str, Any]] | tuple[dict[str, Any], ...],
) -> set[tuple[str, str, str, int, int]]:
    """Every receipt (conversation, reader, kind, message id, time in ms) that no other makes useless.

    Another receipt of the same reader, kind and conversation makes it useless when it covers at least
    the same messages (a message id at or above) no later: for every message, the earliest receipt at
    or above it is then never this one. Computed over all receipts, by the definition.
    """
    receipts = {
        (e.conversation_id, e.reader, e.kind, e.message_id, e.at_ms)
        for e in map(parse_event, bodies)
        if isinstance(e, ReceiptMarked)
    }
    return {
        mine
        for mine in receipts
        if not any(
            other != mine and other[:3] == mine[:3] and other[3] >= mine[3] and other[4] <= mine[4]
            for other in receipts
        )
    }


def expected_membership(bodies: list[dict[str, Any]] | tuple[dict[str, Any], ...]) -> dict[str, dict[str, Any]]:
    """§8: per group, its members (uid: when the event that made them one happened) and CometChat's count.

    Each membership event once, in time order: per member the newest event wins (at equal times a
    removal beats an addition, the tie rule), a ``group_deleted`` ends every older membership, and
    ``members_count`` is the newest group event's.
    """
    events: set[Event] = set(map(parse_event, bodies))
    groups: dict[str, dict[str, Any]] = {}
    changes = (e for e in events if isinstance(e, MembershipChanged))
    for event in sorted(changes, key=lambda e: (e.at_ms, e.kind != "added", order_key(e))):
        group = groups.setdefault(event.guid, {"members": {}})
        group["members_count"] = event.members_count
        if event.kind == "deleted":
            group["members"].clear()
        for uid in event.members:
            if event.kind == "added":
                group["members"][uid] = event.at_ms
            else:
                group["members"].pop(uid, None)
    return groups
