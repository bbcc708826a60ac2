"""The change feed (contract §9): what a commit records, and ``GET /changes``.

A change is recorded in the transaction that made it, only when something a caller can see
changed: a stale or repeated event records nothing. These are the examples; the properties over
generated histories are in ``tests/test_change_properties.py``.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.support import payloads
from tests.support.api import Api

T0 = 1_763_720_000_000
CONVERSATION = "u1_user_u2"


def _online(uid: str, at: int, session: str = "s1", connected_at: int = T0) -> dict[str, Any]:
    return payloads.connection(uid, "connected", at, payloads.device(session, connected_at=connected_at))


def _offline(uid: str, at: int, session: str = "s1", connected_at: int = T0) -> dict[str, Any]:
    return payloads.connection(uid, "disconnected", at, payloads.device(session, connected_at=connected_at))


def _read(message_id: int, at: int, reader: str = "u2") -> dict[str, Any]:
    return payloads.receipt("read", message_id, reader=reader, message_sender="u1", at=at, receiver="u1")


async def _all(api: Api, query: str = "") -> list[dict[str, Any]]:
    page = await api.get_json(f"/changes?limit=1000{query}")
    return page["changes"]  # type: ignore[no-any-return]


async def test_a_connection_records_the_presence_as_it_is_answered(api: Api) -> None:
    await api.hook(_online("u1", T0))
    (change,) = await _all(api)
    assert change == {
        "seq": 1,
        "type": "presence",
        "uid": "u1",
        "at": "2025-11-21T10:13:20.000Z",
        "presence": await api.presence("u1"),
    }


async def test_a_repeated_or_stale_event_records_nothing(api: Api) -> None:
    await api.hook(_online("u1", T0))
    await api.hook(_offline("u1", T0 + 1000))
    assert [c["presence"]["status"] for c in await _all(api)] == ["online", "offline"]
    await api.hook(_online("u1", T0))  # repeated, and older than the offline
    await api.hook(_offline("u1", T0 + 1000))  # repeated
    await api.hook(_online("u1", T0 + 500))  # stale: a newer disconnect is stored
    assert len(await _all(api)) == 2


async def test_a_newer_event_that_changes_nothing_visible_records_nothing(api: Api) -> None:
    """Only the status and the set of live connections make a presence change, not its times."""
    await api.hook(_online("u1", T0))
    await api.hook(_online("u1", T0 + 1000))  # the same session said connected again: last_seen_at moves
    assert len(await _all(api)) == 1
    await api.hook(_online("u1", T0 + 2000, connected_at=T0 + 2000))  # its connected_at moved: visible
    assert len(await _all(api)) == 2


async def test_receipts_are_one_change_each_with_their_time_and_moving_earlier_is_a_change(api: Api) -> None:
    await api.hook(payloads.message(10, CONVERSATION, "u1", receiver="u2"))
    await api.hook(_read(10, T0 + 5000))
    await api.hook(_read(10, T0 + 5000))  # repeated
    await api.hook(_read(9, T0 + 6000))  # dominated by the read of 10 at an earlier time
    await api.hook(_read(10, T0 + 4000))  # the same message, earlier: a change
    changes = await _all(api, "&type=receipt")
    assert [(c["kind"], c["message_id"], c["at"]) for c in changes] == [
        ("read", "10", "2025-11-21T10:13:25.000Z"),
        ("read", "10", "2025-11-21T10:13:24.000Z"),
    ]
    assert changes[0] == {
        "seq": changes[0]["seq"],
        "type": "receipt",
        "conversation_id": CONVERSATION,
        "uid": "u2",
        "kind": "read",
        "message_id": "10",
        "at": "2025-11-21T10:13:25.000Z",
    }


async def test_group_aggregates_timed_and_untimed(api: Api) -> None:
    group = "group_g1"
    await api.hook(payloads.message(20, group, "u1", receiver="g1", receiver_type="group", sent_at=T0 // 1000))
    await api.hook(payloads.group_receipt("read", 20, guid="g1", at=T0 + 3000))
    await api.hook(payloads.group_receipt("read", 20, guid="g1", at=T0 + 3000))  # repeated
    await api.hook(payloads.group_receipt("delivered", 20, guid="g1"))  # untimed: the message's sentAt
    await api.hook(payloads.group_receipt("delivered", 20, guid="g1"))  # repeated
    changes = await _all(api, f"&conversation_id={group}")
    assert [(c["type"], c["kind"], c["message_id"], c["at"]) for c in changes] == [
        ("group_receipt", "read", "20", "2025-11-21T10:13:23.000Z"),
        ("group_receipt", "delivered", "20", "2025-11-21T10:13:20.000Z"),
    ]


@pytest.mark.parametrize(
    "query",
    [
        "after=-1",
        "after=x",
        "after=99999999999999999999",
        "after=9223372036854775808",
        "limit=0",
        "limit=1001",
        "type=message",
        "uid=",
        "conversation_id=",
    ],
)
async def test_bad_parameters_are_400(api: Api, query: str) -> None:
    body = await api.get_json(f"/changes?{query}", status=400)
    assert body["error"]["code"] == "invalid_parameter"


async def test_changes_need_the_token(api: Api) -> None:
    response = await api.get("/changes", authorization=None)
    assert response.status == 401


async def test_filters_and_pages(api: Api) -> None:
    for index, uid in enumerate(["u1", "u2", "u3", "u1", "u2"]):
        body = _online(uid, T0 + index) if index < 3 else _offline(uid, T0 + index)
        await api.hook(body)
    await api.hook(payloads.message(10, CONVERSATION, "u1", receiver="u2"))
    await api.hook(_read(10, T0 + 9000))
    everything = await _all(api)
    assert [c["seq"] for c in everything] == list(range(1, len(everything) + 1))
    for query, expected in [
        ("&uid=u1", [c for c in everything if c.get("uid") == "u1"]),
        ("&uid=u2", [c for c in everything if c.get("uid") == "u2"]),
        ("&type=presence", [c for c in everything if c["type"] == "presence"]),
        ("&conversation_id=" + CONVERSATION, [c for c in everything if c.get("conversation_id") == CONVERSATION]),
        ("&uid=u2&type=receipt", [c for c in everything if c["type"] == "receipt" and c["uid"] == "u2"]),
        ("&uid=nobody", []),
    ]:
        for limit in (1, 2, 3, 100):
            seen: list[dict[str, Any]] = []
            after = 0
            for _ in range(len(everything) + 2):
                page = await api.get_json(f"/changes?after={after}&limit={limit}{query}")
                seen += page["changes"]
                assert page["next_after"] >= after
                if page["next_after"] == after:
                    break
                after = page["next_after"]
            assert seen == expected, (query, limit)
            assert after == everything[-1]["seq"]
