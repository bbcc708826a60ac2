"""Contract §6: queries beyond one user or message, through the HTTP API."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from presence.http.app import create_app
from tests.support import payloads
from tests.support.api import Api, make_settings
from tests.support.databases import Databases

AT = 1_795_256_130_000


def _connected(uid: str, session_id: str, at: int, platform: str = "web", *, snapshot: bool = True) -> dict[str, Any]:
    session = payloads.device(session_id, connected_at=at, platform=platform)
    return payloads.connection(uid, "connected", at, session, connections=[session] if snapshot else None)


async def _seed_users(api: Api) -> None:
    await api.hook(_connected("alice", "a-web", AT, "web"))
    await api.hook(_connected("bob", "b-ios", AT + 1, "ios"))
    await api.hook(_connected("carol", "c-ios", AT + 2, "ios"))
    gone = payloads.device("c-ios", connected_at=AT + 2, platform="ios")
    await api.hook(payloads.connection("carol", "disconnected", AT + 3, gone, connections=[], status="offline"))
    await api.hook(_connected("dave", "d-android", AT + 4, "android", snapshot=False))


async def test_bulk_presence_answers_known_users_in_the_order_asked(api: Api) -> None:
    """GET /presence: presence objects in the order asked, unknown uids listed apart, repeats once."""
    await _seed_users(api)
    answer = await api.get_json("/presence?uid=dave&uid=nobody&uid=alice&uid=dave&uid=zed")
    assert [u["uid"] for u in answer["users"]] == ["dave", "alice"]
    assert answer["unknown"] == ["nobody", "zed"]
    assert answer["users"][1] == await api.presence("alice")


@pytest.mark.parametrize("count", [0, 501])
async def test_bulk_presence_takes_1_to_500_uids(api: Api, count: int) -> None:
    """GET /presence: no uid, or more than 500, is a 400 with the error shape."""
    query = "&".join(f"uid=u{i}" for i in range(count))
    answer = await api.get_json(f"/presence?{query}", 400)
    assert answer["error"]["code"] == "invalid_parameter"


async def test_bulk_presence_accepts_exactly_500_uids(api: Api) -> None:
    await _seed_users(api)
    query = "&".join(["uid=alice"] + [f"uid=u{i}" for i in range(499)])
    answer = await api.get_json(f"/presence?{query}")
    assert [u["uid"] for u in answer["users"]] == ["alice"]
    assert len(answer["unknown"]) == 499


async def test_list_users_filters_by_status_and_live_platform(api: Api) -> None:
    """GET /users: status and platform filters; platform means a live connection on it; uid order."""
    await _seed_users(api)

    async def uids(query: str) -> list[str]:
        answer = await api.get_json(f"/users{query}")
        assert answer["next_cursor"] is None
        return [u["uid"] for u in answer["users"]]

    assert await uids("") == ["alice", "bob", "carol", "dave"]
    assert await uids("?status=online") == ["alice", "bob", "dave"]
    assert await uids("?status=offline") == ["carol"]
    assert await uids("?platform=ios") == ["bob"]  # carol's ios session has ended
    assert await uids("?platform=android&status=online") == ["dave"]
    assert await uids("?platform=ios&status=offline") == []
    assert await uids("?platform=windows") == []


@pytest.mark.parametrize(
    "query",
    [
        "?status=away",
        "?status=",
        "?limit=0",
        "?limit=1001",
        "?limit=10000",
        "?limit=-1",
        "?limit=ten",
        "?limit=1.5",
        "?cursor=",
        "?cursor=abc",
        "?cursor=%F0%9F%98%80",
        "?platform=",
    ],
)
async def test_list_users_rejects_bad_parameters(api: Api, query: str) -> None:
    """GET /users: a bad parameter is a 400 with the error shape, never a 500."""
    answer = await api.get_json(f"/users{query}", 400)
    assert answer["error"]["code"] == "invalid_parameter"


async def test_a_cursor_is_bound_to_its_query_and_cannot_be_altered(api: Api) -> None:
    """Cursors are opaque: altered, made up, or moved to another query, each is a 400."""
    await _seed_users(api)
    cursor = (await api.get_json("/users?limit=1"))["next_cursor"]
    assert cursor is not None
    assert (await api.get_json(f"/users?limit=1&cursor={cursor}"))["users"][0]["uid"] == "bob"
    altered = cursor[:-2] + ("AA" if not cursor.endswith("AA") else "BB")
    for query in (f"?cursor={altered}", f"?status=online&cursor={cursor}", f"?platform=web&cursor={cursor}"):
        answer = await api.get_json(f"/users{query}", 400)
        assert answer["error"]["code"] == "invalid_parameter", query
    answer = await api.get_json(f"/users/alice/sessions?cursor={cursor}", 400)
    assert answer["error"]["code"] == "invalid_parameter"


async def test_list_users_default_limit_is_100(api: Api) -> None:
    for index in range(101):
        await api.hook(_connected(f"user-{index:03d}", f"s-{index}", AT + index))
    first = await api.get_json("/users")
    assert len(first["users"]) == 100
    rest = await api.get_json(f"/users?cursor={first['next_cursor']}")
    assert [u["uid"] for u in rest["users"]] == ["user-100"]
    assert rest["next_cursor"] is None


@st.composite
def populations(draw: st.DrawFn) -> list[tuple[str, str, str]]:
    """Users as (uid, status, platform), uids that sort in interesting ways (case, digits, prefixes)."""
    uids = draw(st.lists(st.text("aZ09_-", min_size=1, max_size=4), unique=True, max_size=25))
    return [(uid, draw(st.sampled_from(("online", "offline"))), draw(st.sampled_from(("web", "ios")))) for uid in uids]


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    population=populations(),
    limit=st.integers(1, 7),
    status=st.sampled_from((None, "online", "offline")),
    platform=st.sampled_from((None, "web", "ios")),
)
async def test_walking_the_cursors_returns_every_match_once(
    databases: Databases,
    population: list[tuple[str, str, str]],
    limit: int,
    status: str | None,
    platform: str | None,
) -> None:
    """GET /users: the pages, walked by next_cursor, hold every matching user exactly once, in uid order."""
    url = await databases.fresh()
    try:
        async with TestClient(TestServer(create_app(make_settings(url)))) as client:
            api = Api(client)
            for index, (uid, user_status, user_platform) in enumerate(population):
                body = _connected(uid, f"s-{index}", AT + index, user_platform)
                body["data"]["user"]["status"] = user_status
                await api.hook(body)
            filters = "".join(
                f"&{name}={value}" for name, value in (("status", status), ("platform", platform)) if value
            )
            walked: list[str] = []
            cursor = None
            for _ in range(len(population) + 2):
                page = await api.get_json(f"/users?limit={limit}{filters}" + (f"&cursor={cursor}" if cursor else ""))
                assert len(page["users"]) <= limit
                walked += [u["uid"] for u in page["users"]]
                cursor = page["next_cursor"]
                if cursor is None:
                    break
            expected = sorted(
                (uid for uid, s, p in population if status in (None, s) and platform in (None, p)),
                key=lambda uid: uid.encode(),
            )
            assert walked == expected
    finally:
        await databases.drop(url)


async def test_sessions_are_the_history_newest_first_with_when_each_ended(api: Api) -> None:
    """GET /users/{uid}/sessions: newest connection first; disconnected_at null while live."""
    phone = payloads.device("phone", connected_at=AT, platform="ios")
    laptop = payloads.device("laptop", connected_at=AT + 10_000, platform="web")
    tablet = payloads.device("tablet", connected_at=AT + 20_000, platform="android")
    await api.hook(payloads.connection("erin", "connected", AT, phone, connections=[phone]))
    await api.hook(payloads.connection("erin", "connected", AT + 10_000, laptop, connections=[phone, laptop]))
    await api.hook(payloads.connection("erin", "disconnected", AT + 15_000, phone, connections=[laptop]))
    await api.hook(payloads.connection("erin", "connected", AT + 20_000, tablet))  # no snapshot
    # A snapshot that drops the laptop without an event of its own: it ended by then.
    await api.hook(payloads.connection("erin", "connected", AT + 30_000, tablet, connections=[tablet]))

    answer = await api.get_json("/users/erin/sessions")
    assert answer == {
        "sessions": [
            {
                "session_id": "tablet",
                "device_id": "device-tablet",
                "platform": "android",
                "connected_at": "2026-11-21T10:15:50.000Z",
                "disconnected_at": None,
            },
            {
                "session_id": "laptop",
                "device_id": "device-laptop",
                "platform": "web",
                "connected_at": "2026-11-21T10:15:40.000Z",
                "disconnected_at": "2026-11-21T10:16:00.000Z",
            },
            {
                "session_id": "phone",
                "device_id": "device-phone",
                "platform": "ios",
                "connected_at": "2026-11-21T10:15:30.000Z",
                "disconnected_at": "2026-11-21T10:15:45.000Z",
            },
        ],
        "next_cursor": None,
    }
    first = await api.get_json("/users/erin/sessions?limit=2")
    assert [s["session_id"] for s in first["sessions"]] == ["tablet", "laptop"]
    rest = await api.get_json(f"/users/erin/sessions?limit=2&cursor={first['next_cursor']}")
    assert rest == {"sessions": answer["sessions"][2:], "next_cursor": None}


async def test_sessions_of_an_unknown_user_are_404(api: Api) -> None:
    answer = await api.get_json("/users/nobody/sessions", 404)
    assert answer["error"]["code"] == "not_found"


async def test_conversation_receipts_are_each_readers_watermarks(api: Api) -> None:
    """GET /conversations/{id}/receipts: highest delivered and read ids and when; reads count as deliveries."""
    group = "group_team"
    await api.hook(payloads.message(99, group, "zoe", receiver_type="group", receiver="team"))

    def mark(kind: str, message_id: int, reader: str, at: int) -> dict[str, Any]:
        return payloads.receipt(
            kind, message_id, reader=reader, message_sender="zoe", at=at, receiver="team", receiver_type="group"
        )

    await api.hook(mark("delivered", 100, "Bea", 1_795_256_200))
    await api.hook(mark("read", 99, "Bea", 1_795_256_210))
    await api.hook(mark("read", 101, "amy", 1_795_256_220))
    await api.hook(mark("delivered", 101, "amy", 1_795_256_215))
    await api.hook(mark("read", 9, "amy", 1_795_256_100))

    assert await api.get_json(f"/conversations/{group}/receipts") == {
        "conversation_id": group,
        "readers": [
            {
                "uid": "Bea",
                "delivered_up_to": "100",
                "delivered_at": "2026-11-21T10:16:40.000Z",
                "read_up_to": "99",
                "read_at": "2026-11-21T10:16:50.000Z",
            },
            {
                "uid": "amy",
                "delivered_up_to": "101",
                "delivered_at": "2026-11-21T10:16:55.000Z",
                "read_up_to": "101",
                "read_at": "2026-11-21T10:17:00.000Z",
            },
        ],
    }


async def test_conversation_receipts_known_without_receipts_and_unknown(api: Api) -> None:
    """A conversation named only by a message has no readers yet; one never named is 404."""
    await api.hook(payloads.message(5, "a_user_b", "a", receiver="b"))
    assert await api.get_json("/conversations/a_user_b/receipts") == {"conversation_id": "a_user_b", "readers": []}
    answer = await api.get_json("/conversations/a_user_c/receipts", 404)
    assert answer["error"]["code"] == "not_found"


async def test_stats_count_online_users_and_live_connections_by_platform(api: Api) -> None:
    """GET /stats: users online, live connections, and those by platform."""
    assert await api.get_json("/stats") == {"users_online": 0, "connections": 0, "connections_by_platform": {}}
    await _seed_users(api)
    await api.hook(_connected("alice", "a-ios", AT + 9, "ios", snapshot=False))  # alice: web and ios
    await api.hook(payloads.connection("erin", "connected", AT, {"session_id": "e-1"}))  # no platform sent
    # carol's only session ended; every other user has the sessions above.
    assert await api.get_json("/stats") == {
        "users_online": 4,
        "connections": 5,
        "connections_by_platform": {"android": 1, "ios": 2, "unknown": 1, "web": 1},
    }


@pytest.mark.parametrize(
    "path",
    ["/presence?uid=a", "/users", "/users/a/sessions", "/conversations/a_user_b/receipts", "/stats"],
)
async def test_every_query_needs_a_token(api: Api, path: str) -> None:
    response = await api.get(path, authorization=None)
    assert response.status == 401
    assert (await response.json())["error"]["code"] == "unauthorized"
