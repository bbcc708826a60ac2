"""The JSON shapes of the query API, from what ``presence.db.reads`` returns."""

from __future__ import annotations

from typing import Any

from presence.core.times import format_instant
from presence.db.reads import MessageReceipts, Presence


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
