"""CometChat's documented sample payloads, posted as CometChat posts them, read back through the API."""

from __future__ import annotations

import copy

from tests.support import samples
from tests.support.api import Api
from tests.support.oracle import NOTHING_CURRENT


async def test_connection_sample_gives_presence_with_both_devices(api: Api) -> None:
    assert await api.hook(samples.CONNECTION_STATUS_CHANGED) == {"status": "accepted"}

    assert await api.presence("cometchat-uid-4") == {
        "uid": "cometchat-uid-4",
        "status": "online",
        "status_updated_at": "2025-11-21T10:15:30.123Z",
        "last_seen_at": "2025-11-21T10:15:30.123Z",
        "status_source": "webhook",
        "connections": [
            {"session_id": "s-1", "device_id": "d-1", "platform": "web", "connected_at": "2025-11-21T10:15:00.000Z"},
            {"session_id": "s-2", "device_id": "d-2", "platform": "ios", "connected_at": "2025-11-21T10:15:30.120Z"},
        ],
    }


async def test_the_legacy_trigger_name_is_understood(api: Api) -> None:
    body = copy.deepcopy(samples.CONNECTION_STATUS_CHANGED)
    body["trigger"] = "user_connection_status_change"

    assert await api.hook(body) == {"status": "accepted"}

    presence = await api.presence("cometchat-uid-4")
    assert presence is not None
    assert [c["session_id"] for c in presence["connections"]] == ["s-1", "s-2"]


async def test_message_samples_give_receipts(api: Api) -> None:
    assert await api.hook(samples.BEFORE_MESSAGE) == {"status": "accepted"}
    assert await api.hook(samples.AFTER_MESSAGE) == {"status": "accepted"}
    assert await api.receipts("1") == {
        "message_id": "1",
        "conversation_id": "cometchat-uid-4_user_cometchat-uid-5",
        "sender": "cometchat-uid-5",
        "receipts": [],
        "delivered_count": 0,
        "read_count": 0,
        **NOTHING_CURRENT,
    }

    assert await api.hook(samples.DELIVERY_RECEIPT) == {"status": "accepted"}
    assert await api.hook(samples.READ_RECEIPT) == {"status": "accepted"}

    assert await api.receipts("1") == {
        "message_id": "1",
        "conversation_id": "cometchat-uid-4_user_cometchat-uid-5",
        "sender": "cometchat-uid-5",
        "receipts": [
            {
                "uid": "cometchat-uid-4",
                "delivered_at": "2023-01-06T14:59:43.000Z",
                "read_at": "2023-01-06T14:59:50.000Z",
            }
        ],
        "delivered_count": 1,
        "read_count": 1,
        **NOTHING_CURRENT,
    }
