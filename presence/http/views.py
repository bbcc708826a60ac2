"""The JSON shapes of the query API, from what ``presence.db.reads`` returns."""

from __future__ import annotations

from typing import Any

from presence.core.facts import order_key_ms
from presence.core.times import format_instant, ms_to_datetime
from presence.db.reads import MessageReceipts, Presence, ReaderWatermark, SessionHistory, Stats


def presence_json(presence: Presence) -> dict[str, Any]:
    return {
        "uid": presence.uid,
        "status": presence.status,
        "status_updated_at": format_instant(presence.status_updated_at),
        "last_seen_at": format_instant(presence.last_seen_at),
        "connections": [
            {
                "session_id": c.session_id,
                "device_id": c.device_id,
                "platform": c.platform,
                "connected_at": format_instant(c.connected_at),
            }
            for c in presence.connections
        ],
    }


def receipts_json(message: MessageReceipts) -> dict[str, Any]:
    receipts = [
        {"uid": r.uid, "delivered_at": format_instant(r.delivered_at), "read_at": format_instant(r.read_at)}
        for r in message.receipts
    ]
    return {
        "message_id": str(message.message_id),
        "conversation_id": message.conversation_id,
        "sender": message.sender,
        "receipts": receipts,
        "delivered_count": sum(1 for r in message.receipts if r.delivered_at is not None),
        "read_count": sum(1 for r in message.receipts if r.read_at is not None),
    }


def session_history_json(history: SessionHistory) -> list[dict[str, Any]]:
    # A session that the newest snapshot dropped without an event of its own ended, at the
    # latest, when that snapshot was taken.
    snapshot_at = ms_to_datetime(order_key_ms(history.snapshot_key)) if history.snapshot_key else None
    return [
        {
            "session_id": s.session_id,
            "device_id": s.device_id,
            "platform": s.platform,
            "connected_at": format_instant(s.connected_at),
            "disconnected_at": format_instant(snapshot_at if s.ended_by_snapshot else s.disconnected_at),
        }
        for s in history.sessions
    ]


def watermarks_json(conversation_id: str, readers: list[ReaderWatermark]) -> dict[str, Any]:
    return {
        "conversation_id": conversation_id,
        "readers": [
            {
                "uid": r.uid,
                "delivered_up_to": None if r.delivered_up_to is None else str(r.delivered_up_to),
                "delivered_at": format_instant(r.delivered_at),
                "read_up_to": None if r.read_up_to is None else str(r.read_up_to),
                "read_at": format_instant(r.read_at),
            }
            for r in readers
        ],
    }


def stats_json(stats: Stats) -> dict[str, Any]:
    by_platform: dict[str, int] = {}
    for platform, count in stats.connections_by_platform.items():
        name = platform if platform is not None else "unknown"  # a session whose platform was never sent
        by_platform[name] = by_platform.get(name, 0) + count
    return {
        "users_online": stats.users_online,
        "connections": stats.connections,
        "connections_by_platform": dict(sorted(by_platform.items())),
    }
