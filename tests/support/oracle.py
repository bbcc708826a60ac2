"""The contract read literally, as a slow reference: what the answers must be.

Presence (contract §3): apply each connection event once, in time order, to a
dictionary of live sessions. Receipts (contract §4): the definition, computed
over all receipts. This shares nothing with the service but the parser and the
order of events with equal timestamps (the fixed tie rule).
"""

from __future__ import annotations

from typing import Any

from presence.core.events import ConnectionChanged, MessageSent, ReceiptMarked, Session
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


def expected_presence(bodies: list[dict[str, Any]] | tuple[dict[str, Any], ...]) -> dict[str, dict[str, Any]]:
    events = [e for e in map(parse_event, bodies) if isinstance(e, ConnectionChanged)]
    users: dict[str, dict[str, Any]] = {}
    live: dict[str, dict[str, Session]] = {}
    for event in sorted(set(events), key=order_key):
        users[event.uid] = {
            "status": event.status,
            "status_updated_at": event.status_updated_at_ms,
            "seen": event.at_ms,
        }
        sessions = live.setdefault(event.uid, {})
        if event.snapshot is not None:
            sessions.clear()
            sessions.update({s.session_id: s for s in event.snapshot})
        elif event.kind == "connected":
            sessions[event.session.session_id] = event.session
        else:
            sessions.pop(event.session.session_id, None)
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
            "last_seen_at": _iso(user["seen"]),  # events are applied in time order: the last is the newest
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


def expected_receipts(bodies: list[dict[str, Any]] | tuple[dict[str, Any], ...]) -> dict[str, dict[str, Any]]:
    events = [parse_event(b) for b in bodies]
    sent = {e.message_id: e for e in events if isinstance(e, MessageSent) and e.tracked}
    receipts = [e for e in events if isinstance(e, ReceiptMarked)]
    known: dict[int, tuple[str, str | None]] = {}
    for r in receipts:
        conversation, sender = known.get(r.message_id, (r.conversation_id, None))
        known[r.message_id] = (conversation, sender or r.message_sender)
    for message_id, message in sent.items():
        known[message_id] = (message.conversation_id, message.sender)
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
        answers[str(message_id)] = {
            "message_id": str(message_id),
            "conversation_id": conversation,
            "sender": sender,
            "receipts": rows,
            "delivered_count": len(rows),
            "read_count": sum(1 for row in rows if row["read_at"] is not None),
            **NOTHING_CURRENT,
        }
    return answers


def expected_watermarks(bodies: list[dict[str, Any]] | tuple[dict[str, Any], ...]) -> dict[str, dict[str, Any]]:
    """Contract §6: per conversation, each reader's highest delivered and read id, and that receipt's time."""
    events = [parse_event(b) for b in bodies]
    receipts = [e for e in events if isinstance(e, ReceiptMarked)]
    conversations = {e.conversation_id for e in events if isinstance(e, MessageSent) and e.tracked}
    conversations |= {r.conversation_id for r in receipts}
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
