"""Contract §1 and §5: every failure to start is one line naming what to fix, with its exit code;
what aiohttp refuses itself is answered in the error shape; ``--no-migrate`` behind the schema is ``not_ready``."""

from __future__ import annotations

import asyncio
import re
import socket
from pathlib import Path

import aiohttp
import orjson
import pytest
from aiohttp.test_utils import TestClient

from presence.db.schema import head_revision
from tests.support.api import API_AUTH
from tests.support.databases import Databases, postgres_server_url
from tests.support.server import Completed, ServerProcess, empty_database, presence_environment, run_presence

TIMEOUT = aiohttp.ClientTimeout(total=10)
#: A log record of the text format: what a failure line is told apart from.
LOG_RECORD = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")
DATABASE_COMMANDS = ("serve", "migrate", "import", "rebuild")
PASSWORD = "start-pw-Wq7z"


def failure_line(result: Completed) -> str:
    """The one line that says why the command stopped: no traceback, nothing else but log records."""
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.strip().splitlines() if not LOG_RECORD.match(line)]
    assert len(lines) == 1, f"expected one line, got {len(lines)}:\n{result.stderr}"
    assert lines[0].startswith("presence: "), lines[0]
    return lines[0]


def args_of(command: str, tmp_path: Path) -> list[str]:
    if command == "serve":
        return ["serve", "--port", "0"]
    if command == "import":
        events = tmp_path / "events.jsonl"
        events.write_text("\n")
        return ["import", str(events)]
    return [command]


async def run_each(
    commands: tuple[str, ...], url: str, tmp_path: Path, *, by_flag: bool = False
) -> list[tuple[str, Completed]]:
    async def run(command: str) -> Completed:
        environment = presence_environment(None if by_flag else url)
        args = args_of(command, tmp_path) + (["--database-url", url] if by_flag else [])
        return await run_presence(args, environment, tmp_path, time_limit=60)

    return list(zip(commands, await asyncio.gather(*(run(c) for c in commands)), strict=True))


#: (URL, what the line must say)
BAD_URLS = (
    (f"postgresql://postgres:{PASSWORD}@127.0.0.1/presence", "postgresql+asyncpg://"),
    ("sqlite:///presence.db", "sqlite+aiosqlite://"),
    (f"postgresql+asyncpg://postgres:{PASSWORD}@127.0.0.1:port/presence", "is not a database URL"),
    ("mysql+aiomysql://root@127.0.0.1/presence", "mysql is not supported"),
)


@pytest.mark.parametrize(("url", "said"), BAD_URLS, ids=[url.split(":")[0] for url, _ in BAD_URLS])
async def test_a_database_url_without_an_async_driver_is_one_line_exit_2(url: str, said: str, tmp_path: Path) -> None:
    """§1: a URL of another driver, or none, fails fast in the settings: one line naming the variable or flag."""
    for by_flag in (False, True):
        for command, result in await run_each(DATABASE_COMMANDS, url, tmp_path, by_flag=by_flag):
            assert result.returncode == 2, (command, result)
            line = failure_line(result)
            assert ("--database-url" if by_flag else "PRESENCE_DATABASE_URL") in line, (command, line)
            assert said in line, (command, line)
            assert PASSWORD not in result.stderr + result.stdout
    assert not (tmp_path / "presence.db").exists()


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port  # closed again: nothing listens there


async def test_a_database_server_that_is_down_is_one_line_exit_3(tmp_path: Path) -> None:
    """§1: PostgreSQL down at start: every command says so in one line, exit 3, the password hidden."""
    url = f"postgresql+asyncpg://postgres:{PASSWORD}@127.0.0.1:{closed_port()}/presence"
    for command, result in await run_each(DATABASE_COMMANDS, url, tmp_path):
        assert result.returncode == 3, (command, result)
        line = failure_line(result)
        assert "PRESENCE_DATABASE_URL" in line, (command, line)
        assert "127.0.0.1" in line, (command, line)
        assert PASSWORD not in result.stderr + result.stdout


@pytest.mark.postgres
async def test_migrate_on_a_postgres_database_that_does_not_exist_is_one_line_exit_3(
    postgres_databases: Databases, tmp_path: Path
) -> None:
    from sqlalchemy.engine import make_url

    url = make_url(postgres_server_url()).set(database="presence_never_created").render_as_string(False)
    [(_, result)] = await run_each(("migrate",), url, tmp_path, by_flag=True)
    assert result.returncode == 3, result
    line = failure_line(result)
    assert "--database-url" in line, line
    assert 'database "presence_never_created" does not exist' in line, line


async def test_migrate_on_an_sqlite_file_in_a_missing_directory_names_the_directory(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-directory"
    [(_, result)] = await run_each(("migrate",), f"sqlite+aiosqlite:///{missing / 'presence.db'}", tmp_path)
    assert result.returncode == 3, result
    line = failure_line(result)
    assert f"the directory {missing} does not exist" in line, line
    assert "PRESENCE_DATABASE_URL" in line, line


async def test_a_port_in_use_or_a_bad_host_is_one_line_exit_2(tmp_path: Path) -> None:
    """§1: where serve cannot listen is one line naming --host/--port, no traceback."""
    environment = presence_environment(f"sqlite+aiosqlite:///{tmp_path / 'listen.db'}")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        in_use = await run_presence(["serve", "--port", str(port)], environment, tmp_path)
    bad_host = await run_presence(["serve", "--host", "no-such-host.invalid", "--port", "0"], environment, tmp_path)
    for result, said in ((in_use, f"port {port}"), (bad_host, "no-such-host.invalid")):
        assert result.returncode == 2, result
        line = failure_line(result)
        assert said in line, line
        assert "--port/PRESENCE_PORT" in line, line


async def test_a_hook_username_with_a_colon_is_refused(tmp_path: Path) -> None:
    environment = presence_environment(None, extra={"PRESENCE_HOOK_USERNAME": "comet:chat"})
    result = await run_presence(["serve", "--port", "0"], environment, tmp_path)
    assert result.returncode == 2, result
    assert "PRESENCE_HOOK_USERNAME must not contain ':'" in failure_line(result)


#: A well-formed Standard Webhooks secret, and the bad forwarding settings with what their line says.
FORWARD_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
BAD_FORWARDING = (
    ({"PRESENCE_FORWARD_URL": "https://app.invalid/changes"}, "PRESENCE_FORWARD_SECRET is not"),
    ({"PRESENCE_FORWARD_URL": "ftp://app.invalid/x", "PRESENCE_FORWARD_SECRET": FORWARD_SECRET}, "http:// or https://"),
    ({"PRESENCE_FORWARD_URL": "app.invalid/changes", "PRESENCE_FORWARD_SECRET": FORWARD_SECRET}, "http:// or https://"),
    (
        {"PRESENCE_FORWARD_URL": "https://app.invalid/changes", "PRESENCE_FORWARD_SECRET": "whsec_not!base64"},
        "PRESENCE_FORWARD_SECRET must be whsec_",
    ),
    (
        {"PRESENCE_FORWARD_URL": "https://app.invalid/changes", "PRESENCE_FORWARD_SECRET": "whsec_c2hvcnQ="},
        "PRESENCE_FORWARD_SECRET must be whsec_",
    ),
    (
        {
            "PRESENCE_FORWARD_URL": "https://app.invalid/c",
            "PRESENCE_FORWARD_SECRET": FORWARD_SECRET,
            "PRESENCE_FORWARD_TIMEOUT": "20",
        },
        "PRESENCE_FORWARD_LEASE must be longer",
    ),
)


async def test_bad_forwarding_settings_stop_serve_with_one_line_exit_2(tmp_path: Path) -> None:
    """§9: a forwarding URL without a secret, a secret that does not decode (or is short), a URL that
    is not http(s): serve stops before it opens the database, in one line that never shows the secret."""

    async def run(extra: dict[str, str]) -> Completed:
        environment = presence_environment(f"sqlite+aiosqlite:///{tmp_path / 'forward.db'}", extra=extra)
        return await run_presence(["serve", "--port", "0"], environment, tmp_path)

    results = await asyncio.gather(*(run(extra) for extra, _ in BAD_FORWARDING))
    for (extra, said), result in zip(BAD_FORWARDING, results, strict=True):
        assert result.returncode == 2, (extra, result)
        line = failure_line(result)
        assert said in line, (extra, line)
        secret = extra.get("PRESENCE_FORWARD_SECRET", "").removeprefix("whsec_")
        assert not secret or secret not in result.stderr + result.stdout
    assert not (tmp_path / "forward.db").exists()


async def test_version_help_and_unknown_variables(tmp_path: Path) -> None:
    """§1: --version; the help says what the tool is for and, per command, its settings and default database;
    a PRESENCE_* variable no setting reads is warned about with the name it was likely meant to be."""
    environment = presence_environment(None)
    version = await run_presence(["--version"], environment, tmp_path)
    assert version.returncode == 0, version
    assert re.fullmatch(r"presence \d+\.\d+\.\d+\S*\n", version.stdout), version
    top = await run_presence(["--help"], environment, tmp_path)
    assert "CometChat" in top.stdout, top.stdout
    assert "PRESENCE_*" in top.stdout, top.stdout
    for command in DATABASE_COMMANDS:
        shown = await run_presence([command, "--help"], environment, tmp_path)
        text = " ".join(shown.stdout.split())
        assert "--database-url" in text, (command, text)
        assert "sqlite+aiosqlite:///presence.db" in text, (command, text)
        assert "Exit codes" in text, (command, text)
    serve_help = " ".join((await run_presence(["serve", "--help"], environment, tmp_path)).stdout.split())
    for name in ("PRESENCE_HOOK_USERNAME", "PRESENCE_HOOK_PASSWORD", "PRESENCE_API_TOKENS", "PRESENCE_HOST"):
        assert name in serve_help, serve_help

    database = f"sqlite+aiosqlite:///{tmp_path / 'typo.db'}"
    typo = presence_environment(database, extra={"PRESENCE_TLS_CERTS": "cert.pem", "PRESENCE_WHATEVER": "1"})
    result = await run_presence(["migrate"], typo, tmp_path)
    assert result.returncode == 0, result
    warnings = [line for line in result.stderr.splitlines() if "WARNING" in line]
    typo_warned = [w for w in warnings if "PRESENCE_TLS_CERTS" in w]
    assert typo_warned, warnings
    assert "did you mean PRESENCE_TLS_CERT?" in typo_warned[0], warnings
    other = [w for w in warnings if "PRESENCE_WHATEVER" in w]
    assert other, warnings
    assert "did you mean" not in other[0], warnings
    clean = await run_presence(["migrate"], presence_environment(database), tmp_path)
    assert "WARNING" not in clean.stderr, clean.stderr  # the suite's own PRESENCE_TEST_* never reach a command


async def test_serve_no_migrate_behind_the_schema_warns_and_answers_not_ready(
    databases: Databases, tmp_path: Path
) -> None:
    """§1, §5: --no-migrate on a database without the schema says so at start (the revision, `presence
    migrate`), and the query API answers 503 not_ready, never 500."""
    async with empty_database(databases.backend, tmp_path) as url:
        with ServerProcess(presence_environment(url), tmp_path, args=["--no-migrate"], name="behind") as server:
            server.start()
            async with aiohttp.ClientSession(timeout=TIMEOUT, headers={"Authorization": API_AUTH}) as session:
                for path in ("/users/u-1/presence", "/users?limit=5", "/messages/7/receipts", "/stats"):
                    async with session.get(f"{server.url}{path}") as response:
                        payload = await response.json()
                        assert response.status == 503, (path, payload, server.describe())
                        assert payload["error"]["code"] == "not_ready", payload
                        assert "presence migrate" in payload["error"]["message"], payload
            assert server.terminate() == 0, server.describe()
        log = server.stderr()
        assert "Traceback" not in log, log
        warnings = [line for line in log.splitlines() if "WARNING" in line and "presence migrate" in line]
        assert any(str(head_revision()) in line for line in warnings), log


async def test_what_aiohttp_refuses_itself_is_json_and_logged_without_a_traceback(tmp_path: Path) -> None:
    """§5: a request line or a header over the limits gets the error shape, and the log no traceback."""
    environment = presence_environment(f"sqlite+aiosqlite:///{tmp_path / 'refused.db'}")
    with ServerProcess(environment, tmp_path, name="refused") as server:
        server.start()
        requests = {
            "long URL": b"GET /users/" + b"u" * 300_000 + b"/presence HTTP/1.1\r\nHost: x\r\n\r\n",
            "huge header": b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"h" * 20_000 + b"\r\n\r\n",
            "not HTTP": b"\x16\x03\x01 hello\r\n\r\n",
        }
        for name, raw in requests.items():
            status, headers, body = await raw_request(server.port, raw)
            assert 400 <= status < 500, (name, status, body)
            assert headers.get("content-type", "").startswith("application/json"), (name, headers)
            error = orjson.loads(body)["error"]
            assert set(error) == {"code", "message"}, (name, error)
            assert len(error["message"]) < 300, (name, error)
        assert server.terminate() == 0, server.describe()
    assert "Traceback" not in server.stderr(), server.stderr()


async def raw_request(port: int, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(raw)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), timeout=10)
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in header_lines)}
    return int(status_line.split()[1]), headers, body


async def test_a_not_found_message_quotes_at_most_64_characters_of_the_id(client: TestClient) -> None:  # type: ignore[type-arg]
    """§5: a 404 for an id no event could have named does not echo a huge id back."""
    long_id = "u" * 100_000
    for path in (
        f"/users/{long_id}/presence",
        f"/users/{long_id}/sessions",
        f"/messages/{long_id}/receipts",
        f"/conversations/{long_id}/receipts",
    ):
        response = await client.get(path, headers={"Authorization": API_AUTH})
        assert response.status == 404, path
        message = (await response.json())["error"]["message"]
        assert "u" * 64 in message, (path, message[:200])
        assert "u" * 65 not in message, (path, message[:200])
        assert message.endswith("…"), (path, message[:200])
