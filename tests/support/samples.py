"""CometChat's documented sample bodies (shared/cometchat/webhooks-legacy-events.md).

Copied as documented, with the placeholders replaced by real values and without
the trailing commas of the ``*_message`` samples, which real deliveries lack.
"""

from __future__ import annotations

from typing import Any

BEFORE_MESSAGE: dict[str, Any] = {
    "trigger": "before_message",
    "data": {
        "conversationId": "cometchat-uid-4_user_cometchat-uid-5",
        "sender": "cometchat-uid-5",
        "receiverType": "user",
        "receiver": "cometchat-uid-4",
        "category": "message",
        "type": "text",
        "data": {
            "text": "Hi Webhook Test",
            "entities": {
                "sender": {
                    "entity": {
                        "uid": "cometchat-uid-5",
                        "name": "John Paul",
                        "avatar": "https://assets.cometchat.io/sampleapp/v2/users/cometchat-uid-5.webp",
                        "status": "offline",
                        "role": "default",
                    },
                    "entityType": "user",
                },
                "receiver": {
                    "entity": {
                        "uid": "cometchat-uid-4",
                        "name": "Susan Marie",
                        "avatar": "https://assets.cometchat.io/sampleapp/v2/users/cometchat-uid-4.webp",
                        "status": "offline",
                        "role": "default",
                    },
                    "entityType": "user",
                },
            },
        },
        "sentAt": 1586435925,
        "updatedAt": 1586435925,
    },
    "appId": "167*****1529",
    "webhook": "send-message",
}

AFTER_MESSAGE: dict[str, Any] = {
    "trigger": "after_message",
    "data": {"id": "1", **BEFORE_MESSAGE["data"]},
    "appId": "167*****1529",
    "webhook": "send-message",
}

DELIVERY_RECEIPT: dict[str, Any] = {
    "trigger": "message_delivery_receipt",
    "appId": "167*****1529",
    "origin": {"platform": "WEBSOCKET"},
    "chatAPIVersion?": "3.0",
    "region?": "us",
    "webhook": "webhook_name",
    "data": {
        "messageId": "1",
        "receiptType": "delivered",
        "deliveredAt": 1673017183,
        "messageSender": "cometchat-uid-5",
        "receiptSender": "cometchat-uid-4",
        "receiptReceiver": "cometchat-uid-5",
        "receiverType": "user",
    },
}

READ_RECEIPT: dict[str, Any] = {
    "trigger": "message_read_receipt",
    "appId": "167*****1529",
    "origin": {"platform": "WEBSOCKET"},
    "chatAPIVersion?": "3.0",
    "region?": "us",
    "webhook": "webhook_name",
    "data": {
        "messageId": "1",
        "receiptType": "read",
        "readAt": 1673017190,
        "messageSender": "cometchat-uid-5",
        "receiptSender": "cometchat-uid-4",
        "receiptReceiver": "cometchat-uid-5",
        "receiverType": "user",
    },
}

CONNECTION_STATUS_CHANGED: dict[str, Any] = {
    "trigger": "after_connection_status_changed",
    "appId": "167*****1529",
    "origin": {"platform": "WEBSOCKET"},
    "chatAPIVersion?": "3.0",
    "region?": "us",
    "webhook": "webhook_name",
    "data": {
        "user": {
            "uid": "cometchat-uid-4",
            "status": "online",
            "status_updated": True,
            "status_updated_at": "1763720130123",
        },
        "event": {
            "type": "connected",
            "at": "1763720130123",
            "event_for": {
                "connected_at": "1763720130120",
                "cometchat_device_id": "d-2",
                "session_id": "s-2",
                "platform": "ios",
            },
        },
        "connections": [
            {"connected_at": "1763720100000", "cometchat_device_id": "d-1", "session_id": "s-1", "platform": "web"},
            {"connected_at": "1763720130120", "cometchat_device_id": "d-2", "session_id": "s-2", "platform": "ios"},
        ],
    },
}


#: The ``after_message`` sample exactly as documented, trailing comma (line 37) and trailing blank
#: (``\x20``, line 6) included: what a sender who copies the documentation posts.
AFTER_MESSAGE_AS_DOCUMENTED: bytes = b"""{
    "trigger": "after_message",
    "data": {
        "id": "1",
        "conversationId": "cometchat-uid-4_user_cometchat-uid-5",
        "sender": "cometchat-uid-5",
        "receiverType": "user",\x20
        "receiver": "cometchat-uid-4",
        "category": "message",
        "type": "text",
        "data": {
            "text": "Hi Webhook Test",
            "entities": {
                "sender": {
                    "entity": {
                        "uid": "cometchat-uid-5",
                        "name": "John Paul",
                        "avatar": "https://assets.cometchat.io/sampleapp/v2/users/cometchat-uid-5.webp",
                        "status": "offline",
                        "role": "default"
                    },
                    "entityType": "user"
                },
                "receiver": {
                    "entity": {
                        "uid": "cometchat-uid-4",
                        "name": "Susan Marie",
                        "avatar": "https://assets.cometchat.io/sampleapp/v2/users/cometchat-uid-4.webp",
                        "status": "offline",
                        "role": "default"
                    },
                    "entityType": "user"
                }
            }
        },
        "sentAt": 1586435925,
        "updatedAt": 1586435925,
    },
    "appId": "167*****1529",
    "webhook": "send-message"
}
"""
