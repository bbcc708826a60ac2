"""Contract §3, clause by clause: ``GET /users/{uid}/presence`` after real connection webhooks."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.support.api import Api
from tests.support.payloads import Body, connection, device
from tests.support.state import state_tables

UID = "cometchat-uid-4"
#: 2025-11-21T10:15:30.123Z; event ``k`` of a test happens ``k`` seconds later.
AT = 1_763_720_130_123
#: 2025-11-21T10:15:00.000Z; session ``k`` connected ``k`` seconds later.
CONNECTED = 1_763_720_100_000
ISO_8601_UTC_MS = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")


def at(k: int) -> int:
    return AT + k * 1000


def session(session_id: str, second: int = 0, platform: str = "web") -> dict[str, Any]:
    """A session as CometChat describes it, connected ``second`` seconds after CONNECTED."""
    return device(session_id, connected_at=CONNECTED + second * 1000, platform=platform)


def shown(session_id: str, second: int = 0, platform: str = "web") -> dict[str, Any]:
    """The same session as the API shows it."""
    return {
        "session_id": session_id,
        "device_id": f"device-{session_id}",
        "platform": platform,
        "connected_at": f"2025-11-21T10:15:{second:02d}.000Z",
    }


def presence(status: str, updated: str, seen: str, connections: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "uid": UID,
        "status": status,
        "status_updated_at": updated,
        "last_seen_at": seen,
        "status_source": "webhook",
        "connections": connections,
    }


async def post_all(api: Api, bodies: list[Body]) -> None:
    for body in bodies:
        assert await api.hook(body) == {"status": "accepted"}


@pytest.mark.parametrize("newest_first", [True, False], ids=["newest-delivered-first", "newest-delivered-last"])
async def test_status_is_that_of_the_newest_event(api: Api, newest_first: bool) -> None:
    """§3 status: ``data.user.status`` of the newest event by ``data.event.at``, whatever the delivery order."""
    older = connection(UID, "connected", at(1), session("s-1"), status="online")
    newer = connection(UID, "disconnected", at(2), session("s-1"), status="away")
    await post_all(api, [newer, older] if newest_first else [older, newer])

    assert await api.presence(UID) == presence(
        "away", "2025-11-21T10:15:32.123Z", "2025-11-21T10:15:32.123Z", connections=[]
    )


@pytest.mark.parametrize("newest_first", [True, False], ids=["newest-delivered-first", "newest-delivered-last"])
async def test_connections_are_the_newest_events_snapshot(api: Api, newest_first: bool) -> None:
    """§3 connections: the ``data.connections`` snapshot of the newest event."""
    older = connection(UID, "connected", at(1), session("s-2", 2), connections=[session("s-1", 1), session("s-2", 2)])
    newer = connection(UID, "connected", at(2), session("s-3", 3), connections=[session("s-2", 2), session("s-3", 3)])
    await post_all(api, [newer, older] if newest_first else [older, newer])

    assert await api.presence(UID) == presence(
        "online", "2025-11-21T10:15:32.123Z", "2025-11-21T10:15:32.123Z", [shown("s-2", 2), shown("s-3", 3)]
    )


async def test_without_a_snapshot_connected_adds_and_disconnected_removes_the_events_session(api: Api) -> None:
    """§3 connections without a snapshot: ``event_for`` is added on connected, removed on disconnected."""
    await post_all(
        api,
        [
            connection(UID, "connected", at(1), session("s-1", 1)),
            connection(UID, "connected", at(2), session("s-2", 2)),
            connection(UID, "connected", at(3), session("s-3", 3)),
            connection(UID, "disconnected", at(4), session("s-2", 2), status="online"),
        ],
    )

    assert await api.presence(UID) == presence(
        "online", "2025-11-21T10:15:34.123Z", "2025-11-21T10:15:34.123Z", [shown("s-1", 1), shown("s-3", 3)]
    )


async def test_a_late_older_connected_does_not_resurrect_a_disconnected_session(api: Api) -> None:
    """§3 connections without a snapshot: the newest signal for each session wins."""
    await post_all(
        api,
        [
            connection(UID, "connected", at(1), session("s-1", 1)),
            connection(UID, "disconnected", at(3), session("s-2", 2), status="online"),
            connection(UID, "connected", at(2), session("s-2", 2)),  # older, delivered late
        ],
    )

    assert await api.presence(UID) == presence(
        "online", "2025-11-21T10:15:33.123Z", "2025-11-21T10:15:33.123Z", [shown("s-1", 1)]
    )


async def test_a_newer_snapshot_decides_for_every_session_older_than_it(api: Api) -> None:
    """§3: a session added per-session before a snapshot that omits it is gone; one added after it stays."""
    await post_all(
        api,
        [
            connection(UID, "connected", at(3), session("s-3", 3)),  # after the snapshot, delivered first
            connection(UID, "connected", at(2), session("s-2", 2), connections=[session("s-2", 2)]),
            connection(UID, "connected", at(1), session("s-1", 1)),  # before the snapshot, which omits it
        ],
    )

    assert await api.presence(UID) == presence(
        "online", "2025-11-21T10:15:33.123Z", "2025-11-21T10:15:33.123Z", [shown("s-2", 2), shown("s-3", 3)]
    )


async def test_a_newer_empty_snapshot_ends_every_older_session(api: Api) -> None:
    """§3: the last device going away sends ``connections: []``, which ends every session older than it."""
    await post_all(
        api,
        [
            connection(UID, "disconnected", at(3), session("s-2", 2), connections=[]),
            connection(UID, "connected", at(1), session("s-1", 1)),
            connection(UID, "connected", at(2), session("s-2", 2), connections=[session("s-1", 1), session("s-2", 2)]),
        ],
    )

    assert await api.presence(UID) == presence(
        "offline", "2025-11-21T10:15:33.123Z", "2025-11-21T10:15:33.123Z", connections=[]
    )


async def test_an_older_snapshot_does_not_override_a_newer_per_session_disconnect(api: Api) -> None:
    """§3: a snapshot listing a session does not bring back a newer per-session ``disconnected``."""
    await post_all(
        api,
        [
            connection(UID, "disconnected", at(2), session("s-2", 2), status="online"),
            connection(UID, "connected", at(1), session("s-2", 2), connections=[session("s-1", 1), session("s-2", 2)]),
        ],
    )

    assert await api.presence(UID) == presence(
        "online", "2025-11-21T10:15:32.123Z", "2025-11-21T10:15:32.123Z", [shown("s-1", 1)]
    )


async def test_an_older_snapshot_does_not_override_a_newer_per_session_connect(api: Api) -> None:
    """§3: a snapshot that omits a session does not end a newer per-session ``connected``."""
    await post_all(
        api,
        [
            connection(UID, "connected", at(2), session("s-2", 2)),
            connection(UID, "connected", at(1), session("s-1", 1), connections=[session("s-1", 1)]),
        ],
    )

    assert await api.presence(UID) == presence(
        "online", "2025-11-21T10:15:32.123Z", "2025-11-21T10:15:32.123Z", [shown("s-1", 1), shown("s-2", 2)]
    )


@pytest.mark.parametrize("newest_first", [True, False], ids=["newest-delivered-first", "newest-delivered-last"])
async def test_status_updated_at_comes_from_the_newest_event_not_the_greatest_value(
    api: Api, newest_first: bool
) -> None:
    """§3 status_updated_at: ``data.user.status_updated_at`` of the newest event, even if another is later."""
    newer = connection(UID, "connected", at(2), session("s-1", 1), status_updated_at=at(0))
    older = connection(UID, "connected", at(1), session("s-2", 2), status_updated_at=at(9))
    await post_all(api, [newer, older] if newest_first else [older, newer])

    assert await api.presence(UID) == presence(
        "online", "2025-11-21T10:15:30.123Z", "2025-11-21T10:15:32.123Z", [shown("s-1", 1), shown("s-2", 2)]
    )


async def test_last_seen_at_is_the_newest_event_time_seen(api: Api) -> None:
    """§3 last_seen_at: the newest ``data.event.at``, not the time of the last delivery."""
    await post_all(
        api,
        [
            connection(UID, "disconnected", at(5), session("s-1", 1)),
            connection(UID, "connected", at(1), session("s-1", 1)),
            connection(UID, "connected", at(3), session("s-1", 1)),
        ],
    )

    assert await api.presence(UID) == presence(
        "offline", "2025-11-21T10:15:35.123Z", "2025-11-21T10:15:35.123Z", connections=[]
    )


@pytest.mark.parametrize("disconnect_first", [True, False], ids=["disconnected-first", "connected-first"])
async def test_at_equal_times_disconnected_beats_connected(api: Api, disconnect_first: bool) -> None:
    """§3 ties: a ``disconnected`` beats a ``connected`` at the same millisecond, in either delivery order."""
    connected = connection(UID, "connected", at(1), session("s-1", 1), status="online")
    disconnected = connection(UID, "disconnected", at(1), session("s-1", 1), status="offline")
    await post_all(api, [disconnected, connected] if disconnect_first else [connected, disconnected])

    assert await api.presence(UID) == presence(
        "offline", "2025-11-21T10:15:31.123Z", "2025-11-21T10:15:31.123Z", connections=[]
    )


@pytest.mark.parametrize("disconnect_first", [True, False], ids=["disconnected-first", "connected-first"])
async def test_at_equal_times_the_disconnected_snapshot_wins(api: Api, disconnect_first: bool) -> None:
    """§3 ties, with snapshots: the ``disconnected`` event's snapshot is the newest one."""
    connected = connection(
        UID, "connected", at(1), session("s-2", 2), connections=[session("s-1", 1), session("s-2", 2)], status="online"
    )
    disconnected = connection(
        UID, "disconnected", at(1), session("s-1", 1), connections=[session("s-3", 3)], status="away"
    )
    await post_all(api, [disconnected, connected] if disconnect_first else [connected, disconnected])

    assert await api.presence(UID) == presence(
        "away", "2025-11-21T10:15:31.123Z", "2025-11-21T10:15:31.123Z", [shown("s-3", 3)]
    )


async def test_connections_are_sorted_by_connected_at_then_session_id(api: Api) -> None:
    """§3: connections sorted by ``connected_at``, then ``session_id``."""
    snapshot = [session("b", 4), session("d", 1), session("a", 7), session("c", 4), session("e", 1, platform="ios")]
    await post_all(api, [connection(UID, "connected", at(1), session("a", 7), connections=snapshot)])

    assert await api.presence(UID) == presence(
        "online",
        "2025-11-21T10:15:31.123Z",
        "2025-11-21T10:15:31.123Z",
        [shown("d", 1), shown("e", 1, platform="ios"), shown("b", 4), shown("c", 4), shown("a", 7)],
    )


async def test_session_ids_sort_by_code_point_on_every_backend(api: Api) -> None:
    """§3 sorting: at equal ``connected_at``, session ids in code-point order (case and punctuation count)."""
    snapshot = [session("s1", 1), session("s-10", 1), session("S2", 1), session("a", 2)]
    await post_all(api, [connection(UID, "connected", at(1), session("s1", 1), connections=snapshot)])

    assert await api.presence(UID) == presence(
        "online",
        "2025-11-21T10:15:31.123Z",
        "2025-11-21T10:15:31.123Z",
        [shown("S2", 1), shown("s-10", 1), shown("s1", 1), shown("a", 2)],
    )


async def test_a_uid_never_seen_is_404_with_the_error_shape(api: Api) -> None:
    """§3: a uid never seen answers ``404`` with the error shape of §5."""
    await post_all(api, [connection(UID, "connected", at(1), session("s-1", 1))])

    response = await api.get("/users/cometchat-uid-404/presence")

    assert response.status == 404
    payload = await response.json()
    assert set(payload) == {"error"}
    assert set(payload["error"]) == {"code", "message"}
    assert payload["error"]["code"] == "not_found"
    assert isinstance(payload["error"]["message"], str)
    assert payload["error"]["message"]


async def test_every_time_is_iso_8601_utc_with_milliseconds(api: Api) -> None:
    """§3: all times are ISO 8601, UTC, millisecond precision, ending in ``Z``, from numbers or numeric strings."""
    event_for = device("s-1", connected_at="1763720100007")
    other = device("s-2", connected_at=1_763_720_160_000)
    await post_all(
        api,
        [
            connection(
                UID,
                "connected",
                str(AT),
                event_for,
                connections=[event_for, other],
                status_updated_at=1_763_720_130_000,
            )
        ],
    )

    answer = await api.presence(UID)

    assert answer is not None
    times = [answer["status_updated_at"], answer["last_seen_at"]] + [c["connected_at"] for c in answer["connections"]]
    assert all(ISO_8601_UTC_MS.fullmatch(time) for time in times), times
    assert times == [
        "2025-11-21T10:15:30.000Z",
        "2025-11-21T10:15:30.123Z",
        "2025-11-21T10:15:00.007Z",
        "2025-11-21T10:16:00.000Z",
    ]


async def test_the_legacy_trigger_name_is_a_connection_event(api: Api) -> None:
    """§2/§3: ``user_connection_status_change`` is understood as ``after_connection_status_changed``."""
    await post_all(
        api,
        [
            connection(UID, "connected", at(1), session("s-1", 1), trigger="user_connection_status_change"),
            connection(UID, "connected", at(2), session("s-2", 2), trigger="user_connection_status_change"),
            connection(
                UID, "disconnected", at(3), session("s-1", 1), status="online", trigger="user_connection_status_change"
            ),
        ],
    )

    assert await api.presence(UID) == presence(
        "online", "2025-11-21T10:15:33.123Z", "2025-11-21T10:15:33.123Z", [shown("s-2", 2)]
    )


async def test_a_repeated_event_changes_nothing(api: Api, database_url: str) -> None:
    """§2/§3: a repeated connection event, late or not, leaves the answer and the state as they were."""
    first = connection(UID, "connected", at(1), session("s-1", 1))
    second = connection(UID, "disconnected", at(2), session("s-1", 1), connections=[session("s-2", 2)], status="away")
    third = connection(UID, "connected", at(3), session("s-3", 3))
    await post_all(api, [first, second, third])
    answer = await api.presence(UID)
    state = await state_tables(database_url)
    assert answer == presence(
        "online", "2025-11-21T10:15:33.123Z", "2025-11-21T10:15:33.123Z", [shown("s-2", 2), shown("s-3", 3)]
    )

    await post_all(api, [first, second, third, second, first])

    assert await api.presence(UID) == answer
    assert await state_tables(database_url) == state
