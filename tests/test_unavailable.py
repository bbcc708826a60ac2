"""When the database cannot be reached: 503, never 500, and recovery without a restart (contract §2).

SQLite only: a database file in a directory that does not exist yet cannot be
opened; creating and migrating it brings the database "back". The PostgreSQL
outage is tested elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import sqlite3
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientResponse

from presence.http.app import create_app
from tests.support import payloads
from tests.support.api import API_AUTH, HOOK_AUTH, Api, make_settings
from tests.support.databases import migrate
from tests.support.server import ServerProcess, presence_environment
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


@contextlib.contextmanager
def read_only(paths: list[Path]) -> Iterator[Callable[[], None]]:
    """``paths`` (the database file, perhaps its directory) made read-only; the callable undoes it.

    As root, permission bits do not stop a write: then each path is bind-mounted read-only on
    itself (and the test skipped where mounting is not allowed). Files the server opened while
    read-only stay read-only after it is undone, as they do after ``chmod``.
    """
    undo: list[Callable[[], object]] = []
    for path in paths:
        if os.geteuid() != 0:
            mode = path.stat().st_mode
            path.chmod(0o555 if path.is_dir() else 0o444)
            undo.append(functools.partial(path.chmod, mode))
            continue
        bind = subprocess.run(["mount", "--bind", path, path], capture_output=True, check=False)
        if bind.returncode != 0:
            pytest.skip(f"running as root, and cannot mount {path} read-only: {bind.stderr!r}")
        undo.append(functools.partial(subprocess.run, ["umount", "--lazy", path], check=True))
        subprocess.run(["mount", "-o", "remount,bind,ro", path, path], check=True)

    def writable() -> None:
        while undo:
            undo.pop()()

    try:
        yield writable
    finally:
        writable()


def _get(url: str) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url, headers={"Authorization": API_AUTH})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _post_hook(url: str, body: object) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": HOOK_AUTH, "Content-Type": "Application/json"}
    request = urllib.request.Request(f"{url}/hook", data=json.dumps(body).encode(), headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.mark.parametrize("with_directory", [False, True], ids=["the file", "the file and its directory"])
def test_a_database_that_was_read_only_takes_webhooks_again_and_readyz_says_so(
    tmp_path: Path, with_directory: bool
) -> None:
    """§2, §7: started on a read-only SQLite file, the server answers webhooks 503 and /readyz 503 with
    why; once the file is writable, /readyz is 200 again without any webhook, and webhooks are 200."""
    directory = tmp_path / "db"
    directory.mkdir()
    database = directory / "presence.db"
    url = f"sqlite+aiosqlite:///{database}"
    asyncio.run(migrate(url))
    with contextlib.closing(sqlite3.connect(database)) as plain:
        plain.execute("PRAGMA journal_mode=WAL")  # as a file the service has run on is (WAL is the file's)
    environment = presence_environment(url, extra={"PRESENCE_COMMIT_TIMEOUT": "2"})
    paths = [database, directory] if with_directory else [database]
    with read_only(paths) as writable, ServerProcess(environment, tmp_path, args=["--no-migrate"]) as server:
        server.start()
        status, payload = _get(f"{server.url}/readyz")
        assert status == 503, payload
        assert payload["error"]["code"] == "not_ready", payload
        if not with_directory:  # reads still work: only the writer can say what is wrong
            assert "webhooks cannot be committed now (OperationalError" in payload["error"]["message"], payload
        status, payload = _post_hook(server.url, connected("u-refused"))
        assert status == 503, payload
        assert _get(f"{server.url}/readyz")[0] == 503

        writable()
        deadline = time.monotonic() + 20
        while (answer := _get(f"{server.url}/readyz"))[0] != 200:
            assert time.monotonic() < deadline, f"/readyz still {answer} with the file writable\n{server.describe()}"
            time.sleep(0.1)
        status, payload = _post_hook(server.url, connected("u-1"))
        assert (status, payload) == (200, {"status": "accepted"}), server.describe()
        assert _get(f"{server.url}/users/u-1/presence")[0] == 200
        assert _get(f"{server.url}/users/u-refused/presence")[0] == 404
        assert server.terminate() == 0, server.describe()
