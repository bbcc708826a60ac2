"""Contract §1 and §7: the ``presence`` command as an operator runs it."""

from __future__ import annotations

import asyncio
import base64
import gc
import sys
from pathlib import Path

import aiohttp
import orjson
from aiohttp import web
from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import create_async_engine

from presence.cli import _freeze_startup_objects
from presence.db.schema import current_revision, head_revision
from tests.support import payloads
from tests.support.api import API_AUTH, HOOK_AUTH, HOOK_USERNAME
from tests.support.databases import Databases
from tests.support.server import Completed, ServerProcess, empty_database, presence_environment, run_presence

#: The console script the package installs, beside this interpreter.
CONSOLE_SCRIPT = (str(Path(sys.executable).with_name("presence")),)
TIMEOUT = aiohttp.ClientTimeout(total=10)
CREDENTIALS = ("PRESENCE_HOOK_USERNAME", "PRESENCE_HOOK_PASSWORD", "PRESENCE_API_TOKENS")


def a_connection() -> payloads.Body:
    session = payloads.device("s-1", connected_at=1_763_720_000_000)
    return payloads.connection("cli-user", "connected", 1_763_720_000_000, session, connections=[session])


async def post_hook(url: str, *, authorization: str | None = HOOK_AUTH) -> tuple[int, object]:
    headers = {"Content-Type": "Application/json"}
    if authorization is not None:
        headers["Authorization"] = authorization
    async with (
        aiohttp.ClientSession(timeout=TIMEOUT) as session,
        session.post(f"{url}/hook", data=orjson.dumps(a_connection()), headers=headers) as response,
    ):
        return response.status, await response.json()


async def table_names(database_url: str) -> list[str]:
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(lambda sync: sorted(inspect(sync).get_table_names()))
    finally:
        await engine.dispose()


async def revision_of(database_url: str) -> str | None:
    engine = create_async_engine(database_url)
    try:
        return await current_revision(engine)
    finally:
        await engine.dispose()


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, f"expected one line, got {len(lines)}:\n{text}"
    return lines[0]


#: Which credentials are set in each refusal case (their values must never be printed).
REFUSAL_CASES: tuple[tuple[str, ...], ...] = ((), ("PRESENCE_API_TOKENS", "PRESENCE_HOOK_PASSWORD"))


async def test_serve_refuses_without_credentials(tmp_path: Path) -> None:
    """§1: without hook credentials or API tokens, serve exits non-zero with one line naming what is missing."""
    values = {
        "PRESENCE_HOOK_USERNAME": "operator-name",
        "PRESENCE_HOOK_PASSWORD": "refusal-password-7Qx",
        "PRESENCE_API_TOKENS": "refusal-token-9Vw",
    }
    database = tmp_path / "refused.db"

    async def refuse(present: tuple[str, ...]) -> Completed:
        extra = {name: values[name] for name in present}
        environment = presence_environment(f"sqlite+aiosqlite:///{database}", credentials=False, extra=extra)
        return await run_presence(
            ["serve", "--port", "0"], environment, tmp_path, program=CONSOLE_SCRIPT, time_limit=30
        )

    # Concurrently: each case is a process start, and none of them may reach the database.
    results = await asyncio.gather(*(refuse(present) for present in REFUSAL_CASES))

    for present, result in zip(REFUSAL_CASES, results, strict=True):
        assert result.returncode != 0, (present, result)
        line = one_line(result.stderr)
        for name in CREDENTIALS:
            assert (name in line) == (name not in present), (present, line)
        assert "--insecure" in line
        for secret in ("refusal-password-7Qx", "refusal-token-9Vw"):
            assert secret not in result.stderr + result.stdout
    assert not database.exists(), "serve touched the database before refusing"


async def test_serve_insecure_starts_and_says_so(tmp_path: Path) -> None:
    """§1: --insecure starts without credentials and announces it loudly in its log."""
    environment = presence_environment(f"sqlite+aiosqlite:///{tmp_path / 'insecure.db'}", credentials=False)
    with ServerProcess(environment, tmp_path, args=["--insecure"], name="insecure") as server:
        server.start()
        status, _ = await post_hook(server.url, authorization=None)
        assert status == 200, server.describe()  # open to anyone, as announced
        assert server.terminate() == 0, server.describe()
    warnings = [line for line in server.stderr().splitlines() if "INSECURE" in line]
    assert warnings, server.stderr()
    assert any("WARNING" in line for line in warnings), warnings
    for name in CREDENTIALS:
        assert name in warnings[0]


#: (command, variable, malformed value)
BAD_SETTINGS = (
    ("serve", "PRESENCE_MAX_BODY_BYTES", "abc"),
    ("serve", "PRESENCE_PORT", "eighty"),
    ("migrate", "PRESENCE_LOG_FORMAT", "xml"),
    ("serve", "PRESENCE_CONNECTION_TTL", "forever"),
    ("serve", "PRESENCE_RECONCILE_GRACE", "a minute"),
    ("serve", "PRESENCE_COMETCHAT_REGION", "mars"),
)


async def test_bad_setting_fails_with_one_line_naming_it(tmp_path: Path) -> None:
    """§1: a malformed PRESENCE_* variable stops the command with one line that names it."""
    database = tmp_path / "bad-setting.db"

    async def run(command: str, variable: str, value: str) -> Completed:
        environment = presence_environment(f"sqlite+aiosqlite:///{database}", extra={variable: value})
        return await run_presence([command], environment, tmp_path, program=CONSOLE_SCRIPT, time_limit=30)

    results = await asyncio.gather(*(run(*case) for case in BAD_SETTINGS))

    for (command, variable, value), result in zip(BAD_SETTINGS, results, strict=True):
        assert result.returncode != 0, (command, variable, result)
        line = one_line(result.stderr)
        assert variable in line, (command, line)
        assert repr(value) in line or value in line, (command, line)
        assert "Traceback" not in result.stderr
    assert not database.exists(), "a command touched the database despite a bad setting"


async def test_migrate_brings_an_empty_database_to_head(databases: Databases, tmp_path: Path) -> None:
    """§1: `presence migrate` makes the whole schema on an empty database."""
    async with empty_database(databases.backend, tmp_path) as url:
        environment = presence_environment(url, credentials=False)
        assert await revision_of(url) is None

        first = await run_presence(["migrate"], environment, tmp_path, program=CONSOLE_SCRIPT)
        assert first.returncode == 0, first.stderr
        assert await revision_of(url) == head_revision()
        assert {"inbox_event", "user_presence", "user_session", "message", "receipt"} <= set(await table_names(url))


async def test_serve_no_migrate_leaves_an_empty_database_empty(databases: Databases, tmp_path: Path) -> None:
    """§1, §2: serve --no-migrate makes no table; its /hook answers 503 (retry later), never 500."""
    async with empty_database(databases.backend, tmp_path) as url:
        with ServerProcess(presence_environment(url), tmp_path, args=["--no-migrate"], name="no-migrate") as server:
            server.start()
            status, payload = await post_hook(server.url)
            assert status == 503, (payload, server.describe())
            assert isinstance(payload, dict)
            assert payload["error"]["code"] == "unavailable"
            assert server.terminate() == 0, server.describe()
        assert await table_names(url) == []
        assert await revision_of(url) is None


async def test_serve_migrates_before_it_listens(databases: Databases, tmp_path: Path) -> None:
    """§1: by default serve brings an empty database to head before its first answer."""
    async with empty_database(databases.backend, tmp_path) as url:
        with ServerProcess(presence_environment(url), tmp_path, name="migrating") as server:
            server.start()
            # The first /healthz answer has come: the schema must already be complete.
            assert await revision_of(url) == head_revision(), server.describe()
            status, payload = await post_hook(server.url)
            assert (status, payload) == (200, {"status": "accepted"}), server.describe()
            assert server.terminate() == 0, server.describe()


async def test_secrets_never_appear_in_the_log(tmp_path: Path) -> None:
    """§7: neither the configured secrets nor a caller's wrong ones are ever logged."""
    password = "hook-pw-Zq8pL2vX"
    token = "api-tok-Jm4nR7tY"
    second_token = "api-tok-2nd-Kd9s"
    wrong_password = "wrong-pw-Hx5cB1qE"
    wrong_token = "wrong-tok-Pe3uW6zA"
    environment = presence_environment(
        f"sqlite+aiosqlite:///{tmp_path / 'secrets.db'}",
        extra={
            "PRESENCE_HOOK_PASSWORD": password,
            "PRESENCE_API_TOKENS": f"{token},{second_token}",
            "PRESENCE_LOG_LEVEL": "DEBUG",
        },
    )
    wrong_basic = "Basic " + base64.b64encode(f"{HOOK_USERNAME}:{wrong_password}".encode()).decode()
    right_basic = "Basic " + base64.b64encode(f"{HOOK_USERNAME}:{password}".encode()).decode()

    with ServerProcess(environment, tmp_path, name="secrets") as server:
        server.start()
        status, _ = await post_hook(server.url, authorization=wrong_basic)
        assert status == 401
        status, _ = await post_hook(server.url, authorization=right_basic)
        assert status == 200, server.describe()
        async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
            for authorization, expected in ((f"Bearer {wrong_token}", 401), (f"Bearer {token}", 200), (API_AUTH, 401)):
                async with session.get(
                    f"{server.url}/users/cli-user/presence", headers={"Authorization": authorization}
                ) as response:
                    assert response.status == expected
        assert server.terminate() == 0, server.describe()

    log = server.stderr() + server.stdout_path.read_text()
    assert "Running on" in log  # the log was captured at all
    for secret in (password, token, second_token, wrong_password, wrong_token):
        assert secret not in log
    for encoded in (wrong_basic, right_basic):
        assert encoded.removeprefix("Basic ") not in log


async def test_serve_moves_start_up_objects_out_of_the_collectors_way() -> None:
    """The start-up hook of ``serve`` freezes what exists then, so that full collections stay short."""
    gc.unfreeze()
    try:
        await _freeze_startup_objects(web.Application())
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
