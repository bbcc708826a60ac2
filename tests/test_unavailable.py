"""When the database cannot be reached: 503, never 500, and recovery without a restart (contract §2).

SQLite only: a database file in a directory that does not exist yet cannot be
opened; creating and migrating it brings the database "back". The PostgreSQL
outage is tested elsewhere.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from aiohttp import ClientResponse

from presence.http.app import create_app
from tests.support import payloads
from tests.support.api import Api, make_settings
from tests.support.databases import migrate
from tests.support.state import dump
from tests.support.typing import AiohttpClient

AT = 1_763_720_130_123


def connected(uid: str) -> dict[str, Any]:
    session = payloads.device(f"{uid}-s")
    return payloads.connection(uid, "connected", AT, session, connections=[session])


async def assert_unavailable(response: ClientResponse) -> None:
    payload = await response.json()
    assert response.status == 503, payload
    assert payload["error"]["code"] == "unavailable", payload
    assert set(payload) == {"error"}, payload
    assert set(payload["error"]) == {"code", "message"}, payload
    assert isinstance(payload["error"]["message"], str), payload


async def test_an_unreachable_database_is_503_and_intake_recovers_by_itself(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    """§2: hook and query API answer 503 while the database is away; once it is back, the same app accepts."""
    directory = tmp_path / "missing-dir"
    url = f"sqlite+aiosqlite:///{directory / 'x.db'}"
    api = Api(await aiohttp_client(create_app(make_settings(url))))

    await assert_unavailable(await api.post_hook(connected("u-lost")))
    await assert_unavailable(await api.post_hook(payloads.message(57, "u-1_user_u-2", "u-2", receiver="u-1")))
    await assert_unavailable(await api.get("/users/u-lost/presence"))
    await assert_unavailable(await api.get("/messages/57/receipts"))
    healthz = await api.get("/healthz")
    assert healthz.status == 200, await healthz.text()

    directory.mkdir()
    await migrate(url)

    assert await api.hook(connected("u-1")) == {"status": "accepted"}
    presence = await api.presence("u-1")
    assert presence is not None
    assert presence["status"] == "online"
    assert presence["last_seen_at"] == "2025-11-21T10:15:30.123Z"
    # What was refused with 503 was not committed: CometChat will retry it.
    assert await api.presence("u-lost") is None
    assert len((await dump(url))["inbox_event"]) == 1


async def test_many_refused_requests_leave_intake_working(aiohttp_client: AiohttpClient, tmp_path: Path) -> None:
    """§2: failed commits, one by one and in a concurrent batch, neither stop intake nor poison the pool."""
    directory = tmp_path / "missing-dir"
    url = f"sqlite+aiosqlite:///{directory / 'x.db'}"
    api = Api(await aiohttp_client(create_app(make_settings(url))))

    for attempt in range(5):
        await assert_unavailable(await api.post_hook(connected(f"u-lost-{attempt}")))
    concurrent = await asyncio.gather(*(api.post_hook(connected(f"u-batch-{n}")) for n in range(20)))
    for response in concurrent:
        await assert_unavailable(response)

    directory.mkdir()
    await migrate(url)

    for uid in ("u-1", "u-2", "u-3"):
        assert await api.hook(connected(uid)) == {"status": "accepted"}
    for uid in ("u-1", "u-2", "u-3"):
        assert await api.presence(uid) is not None
    assert len((await dump(url))["inbox_event"]) == 3
