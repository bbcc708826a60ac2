"""Webhook bodies as CometChat sends them, built from a few values."""

from __future__ import annotations

from typing import Any

Body = dict[str, Any]

APP_ID = "167*****1529"


def device(
    session_id: str, *, connected_at: int | str = 1_700_000_000_000, device_id: str | None = None, platform: str = "web"
) -> dict[str, Any]:
    return {
        "connected_at": connected_at,
        "cometchat_device_id": device_id or f"device-{session_id}",
        "session_id": session_id,
        "platform": platform,
    }


def connection(
    uid: str,
    kind: str,
    at: int | str,
    session: dict[str, Any],
    *,
    connections: list[dict[str, Any]] | None = None,
    status: str | None = None,
    status_updated_at: int | str | None = None,
    trigger: str = "after_connection_status_changed",
) -> Body:
    """A connection event; ``connections=None`` leaves the snapshot out of the payload."""
    data: dict[str, Any] = {
        "user": {
            "uid": uid,
            "status": status or ("online" if kind == "connected" else "offline"),
            "status_updated": True,
            "status_updated_at": at if status_updated_at is None else status_updated_at,
        },
        "event": {"type": kind, "at": at, "event_for": session},
    }
    if connections is not None:
        data["connections"] = connections
    return {
        "trigger": trigger,
        "appId": APP_ID,
        "origin": {"platform": "WEBSOCKET"},
        "chatAPIVersion": "3.0",
        "region": "us",
        "webhook": "presence",
        "data": data,
    }


def message(
    message_id: int | str,
    conversation_id: str,
    sender: str,
    *,
    receiver: str = "",
    receiver_type: str = "user",
    category: str = "message",
    sent_at: int | str = 1_700_000_000,
    text: str = "Hi Webhook Test",
    trigger: str = "after_message",
) -> Body:
    return {
        "trigger": trigger,
        "data": {
            "id": str(message_id),
            "conversationId": conversation_id,
            "sender": sender,
            "receiverType": receiver_type,
            "receiver": receiver,
            "category": category,
            "type": "text",
            "data": {
                "text": text,
                "entities": {"sender": {"entity": {"uid": sender, "name": "Sender"}, "entityType": "user"}},
            },
            "sentAt": sent_at,
            "updatedAt": sent_at,
        },
        "appId": APP_ID,
        "webhook": "send-message",
    }


def receipt(
    kind: str,
    message_id: int | str,
    *,
    reader: str,
    message_sender: str | None,
    at: int | str,
    receiver: str,
    receiver_type: str = "user",
) -> Body:
    """A delivery (``kind="delivered"``) or read receipt from ``reader``."""
    data: dict[str, Any] = {
        "messageId": str(message_id),
        "receiptType": kind,
        ("deliveredAt" if kind == "delivered" else "readAt"): at,
        "receiptSender": reader,
        "receiptReceiver": receiver,
        "receiverType": receiver_type,
    }
    if message_sender is not None:
        data["messageSender"] = message_sender
    return {
        "trigger": "message_delivery_receipt" if kind == "delivered" else "message_read_receipt",
        "appId": APP_ID,
        "origin": {"platform": "WEBSOCKET"},
        "webhook": "receipts",
        "data": data,
    }
