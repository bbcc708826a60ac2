"""Contract §2: ``200`` means committed; an acknowledged event survives SIGKILL of the process."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import orjson

from tests.support import payloads
from tests.support.api import API_AUTH, HOOK_AUTH
from tests.support.server import ServerProcess, presence_environment
from tests.support.state import dump

EVENTS = 300
#: SIGKILL at this acknowledgement, with up to CONCURRENCY - 1 requests still in flight.
KILL_AFTER = 200
CONCURRENCY = 32
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=15)


def connected(uid: str, index: int) -> payloads.Body:
    at = 1_763_720_000_000 + index
    session = payloads.device(f"s-{uid}", connected_at=at, platform="web")
    return payloads.connection(uid, "connected", at, session, connections=[session])


async def post_until_killed(server: ServerProcess, uids: list[str], kill_after: int) -> tuple[list[str], list[int]]:
    """Post one event per uid, ``CONCURRENCY`` at a time; SIGKILL the server at the ``kill_after``-th ``200``.

    Returns the uids acknowledged with ``200`` and the other HTTP statuses seen.
    """
    acknowledged: list[str] = []
    other_statuses: list[int] = []
    slots = asyncio.Semaphore(CONCURRENCY)
    headers = {"Authorization": HOOK_AUTH, "Content-Type": "Application/json"}

    async with aiohttp.ClientSession(timeout=REQUEST_TIMEOUT) as session:

        async def post(index: int, uid: str) -> None:
            async with slots:
                body = orjson.dumps(connected(uid, index))
                try:
                    async with session.post(f"{server.url}/hook", data=body, headers=headers) as response:
                        if response.status != 200:
                            other_statuses.append(response.status)
                            return
                        acknowledged.append(uid)
                        if len(acknowledged) == kill_after:
                            server.kill()  # the moment this acknowledgement arrives; others are in flight
                except (aiohttp.ClientError, TimeoutError):
                    return  # the server is gone: not acknowledged, so CometChat would retry it

        await asyncio.gather(*(post(index, uid) for index, uid in enumerate(uids)))
    return acknowledged, other_statuses


async def presence_statuses(server: ServerProcess, uids: list[str]) -> dict[str, int]:
    slots = asyncio.Semaphore(CONCURRENCY)
    statuses: dict[str, int] = {}
    async with aiohttp.ClientSession(timeout=REQUEST_TIMEOUT, headers={"Authorization": API_AUTH}) as session:

        async def get(uid: str) -> None:
            async with slots, session.get(f"{server.url}/users/{uid}/presence") as response:
                payload = await response.json()
                statuses[uid] = response.status
                if response.status == 200:
                    assert payload["uid"] == uid
                    assert payload["status"] == "online"
                    assert [c["session_id"] for c in payload["connections"]] == [f"s-{uid}"]

        await asyncio.gather(*(get(uid) for uid in uids))
    return statuses


async def test_acknowledged_events_survive_sigkill(database_url: str, tmp_path: Path) -> None:
    """§2: every event answered 200 is applied and in the inbox after SIGKILL (mid-stream) and restart."""
    environment = presence_environment(database_url)
    uids = [f"durable-{index:04d}" for index in range(EVENTS)]

    with ServerProcess(environment, tmp_path, args=["--no-migrate"], name="before-kill") as server:
        server.start()
        acknowledged, other_statuses = await post_until_killed(server, uids, KILL_AFTER)
        assert server.returncode is not None, "the server was never killed"
        stderr_before = server.stderr()

    assert other_statuses == [], f"answers other than 200 under load: {other_statuses}\n{stderr_before}"
    assert len(acknowledged) >= KILL_AFTER
    assert len(set(acknowledged)) == len(acknowledged)
    assert len(acknowledged) < EVENTS, "the kill came after every event was answered"

    with ServerProcess(environment, tmp_path, name="after-restart") as restarted:
        restarted.start()
        statuses = await presence_statuses(restarted, acknowledged)
        lost = sorted(uid for uid, status in statuses.items() if status != 200)
        assert lost == [], f"{len(lost)} acknowledged events were lost: {lost[:10]}…\n{restarted.describe()}"
        assert restarted.terminate() == 0, restarted.describe()

    inbox = (await dump(database_url))["inbox_event"]
    assert len(inbox) >= len(acknowledged)
    inbox_uids = {orjson.loads(row[3])["data"]["user"]["uid"] for row in inbox}
    assert set(acknowledged) <= inbox_uids
