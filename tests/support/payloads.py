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


# CometChat's current webhooks (shared/cometchat/webhooks-current.md).


def _current(trigger: str, data: dict[str, Any]) -> Body:
    return {"trigger": trigger, "data": data, "appId": APP_ID, "region": "us", "webhook": "presence-current"}


def current_connection(
    uid: str,
    kind: str,
    at: int | str,
    *,
    platform: str = "javascript",
    connected_at: int | str = 1_700_000_000_000,
    status: str | None = None,
    presence_changed: bool | None = True,
) -> Body:
    """``user_connection_status_changed``: no session id; ``presence_changed=None`` leaves the flag out."""
    status = status or ("online" if kind == "connected" else "offline")
    data: dict[str, Any] = {
        "timestamp": at,
        "user": {"uid": uid, "name": f"User {uid}", "status": status, "role": "default"},
        "status": status,
        "currentConnection": {"action": kind, "platform": platform, "connectedAt": connected_at},
    }
    if presence_changed is not None:
        data["userPresenceChanged"] = presence_changed
    return _current("user_connection_status_changed", data)


def message_object(
    message_id: int | str,
    conversation_id: str,
    sender: str,
    *,
    receiver: str = "",
    receiver_type: str = "user",
    category: str = "message",
    sent_at: int | str = 1_700_000_000,
    text: str = "Hi Webhook Test",
) -> dict[str, Any]:
    """The message object of ``message_sent`` (the legacy ``after_message`` data)."""
    data: dict[str, Any] = message(
        message_id,
        conversation_id,
        sender,
        receiver=receiver,
        receiver_type=receiver_type,
        category=category,
        sent_at=sent_at,
        text=text,
    )["data"]
    return data


def message_sent(
    message_id: int | str,
    conversation_id: str,
    sender: str,
    *,
    receiver: str = "",
    receiver_type: str = "user",
    category: str = "message",
    sent_at: int | str = 1_700_000_000,
    text: str = "Hi Webhook Test",
) -> Body:
    obj = message_object(
        message_id,
        conversation_id,
        sender,
        receiver=receiver,
        receiver_type=receiver_type,
        category=category,
        sent_at=sent_at,
        text=text,
    )
    obj["muid"] = "_of6zl8yky"
    return _current("message_sent", {"message": obj})


def current_receipt(
    kind: str,
    message_id: int | str,
    *,
    reader: str,
    message_sender: str | None,
    at: int | str,
    receiver: str,
    receiver_type: str = "user",
) -> Body:
    """A current-format delivery (``kind="delivered"``) or read receipt from ``reader``."""
    data: dict[str, Any] = {
        "receiver": receiver,
        "receiverType": receiver_type,
        "type": "receipts",
        "sender": reader,
        "body": {
            "action": kind,
            "messageId": str(message_id),
            "user": {"uid": reader, "name": f"User {reader}", "status": "online"},
            "timestamp": at,
        },
    }
    if message_sender is not None:
        data["messageSender"] = message_sender
    return _current("message_delivery_receipt" if kind == "delivered" else "message_read_receipt", data)


def message_edited(
    message_id: int | str,
    conversation_id: str,
    sender: str,
    *,
    edited_at: int | str,
    sent_at: int | str = 1_700_000_000,
    action_shape: bool = True,
    text: str = "edited text",
) -> Body:
    """``message_edited``: as documented (an action message naming its target) or as seen live."""
    target = {
        "id": str(message_id),
        "conversationId": conversation_id,
        "sender": sender,
        "category": "message",
        "type": "text",
        "data": {"text": text},
        "sentAt": sent_at,
        "editedAt": edited_at,
        "editedBy": sender,
    }
    if not action_shape:
        return _current("message_edited", {"message": {**target, "receiverType": "user", "updatedAt": edited_at}})
    return _current("message_edited", {"message": _action(conversation_id, sender, "edited", target, edited_at)})


def message_deleted(
    message_id: int | str,
    conversation_id: str,
    sender: str,
    *,
    deleted_at: int | str,
    action_shape: bool = True,
) -> Body:
    """``message_deleted``: as documented (an action message naming its target) or as seen live."""
    if not action_shape:
        target = {
            "id": str(message_id),
            "conversationId": conversation_id,
            "sender": sender,
            "category": "message",
            "type": "text",
            "data": {"text": "gone"},
            "sentAt": 1_700_000_000,
            "deletedAt": deleted_at,
            "deletedBy": sender,
        }
        return _current("message_deleted", {"message": target})
    target = {"id": str(message_id), "conversationId": conversation_id, "deletedAt": deleted_at, "deletedBy": sender}
    return _current("message_deleted", {"message": _action(conversation_id, sender, "deleted", target, deleted_at)})


def _action(conversation_id: str, by: str, action: str, target: dict[str, Any], at: int | str) -> dict[str, Any]:
    return {
        "id": "900",
        "conversationId": conversation_id,
        "sender": by,
        "receiverType": "user",
        "receiver": "",
        "category": "action",
        "type": "message",
        "data": {
            "action": action,
            "entities": {
                "by": {"entity": {"uid": by, "name": f"User {by}"}, "entityType": "user"},
                "on": {"entity": target, "entityType": "message"},
            },
        },
        "sentAt": at,
        "updatedAt": at,
    }


def group_receipt(
    kind: str, message_id: int | str, *, guid: str, message_sender: str | None = None, at: int | str | None = None
) -> Body:
    """``message_delivered_to_all`` (``kind="delivered"``) / ``message_read_by_all``; ``at=None``: no time."""
    body: dict[str, Any] = {
        "action": "deliveredToAll" if kind == "delivered" else "readByAll",
        "messageId": str(message_id),
    }
    if at is not None:
        body["timestamp"] = at
    data: dict[str, Any] = {"receiver": guid, "receiverType": "group", "sender": "app_system", "body": body}
    if message_sender is not None:
        data["messageSender"] = message_sender
    return _current("message_delivered_to_all" if kind == "delivered" else "message_read_by_all", data)


def membership(
    trigger: str,
    guid: str,
    members: list[str],
    *,
    updated_at: int | str,
    members_count: int | None = None,
    by: str | None = None,
) -> Body:
    """A group trigger (``group_member_joined``, ``group_deleted``, ...) listing ``members``."""
    group: dict[str, Any] = {
        "guid": guid,
        "name": f"Group {guid}",
        "type": "public",
        "conversationId": f"group_{guid}",
        "createdAt": 1_600_000_000,
        "updatedAt": updated_at,
        "owner": by or "owner",
    }
    if members_count is not None:
        group["membersCount"] = members_count
    data: dict[str, Any] = {"group": group}
    if trigger != "group_deleted":
        data["members"] = {
            uid: {"uid": uid, "name": f"User {uid}", "status": "offline", "role": "default"} for uid in members
        }
    if by is not None:
        data["by"] = {"uid": by, "name": f"User {by}"}
    return _current(trigger, data)
