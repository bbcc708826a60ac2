"""Contract §7: ``PRESENCE_LOG_FORMAT=json`` gives one JSON object a line; errors carry context; no secret is logged."""

from __future__ import annotations

import base64
import io
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from alembic.script import ScriptDirectory
from sqlalchemy.ext.asyncio import create_async_engine

from presence.db.schema import alembic_config, head_revision, upgrade
from presence.http.app import create_app
from presence.logs import JsonFormatter, configure_logging
from presence.settings import Secret, Settings
from tests.support import payloads
from tests.support.api import Api, make_settings, serving
from tests.support.server import ServerProcess, empty_database, free_port, presence_environment, run_presence

TIMEOUT = aiohttp.ClientTimeout(total=15)
AT = 1_763_720_130_123

HOOK_USER = "log-hook-user"
HOOK_PASSWORD = "log-hook-pw-Vb7nQ2"
API_TOKEN = "log-api-tok-Rt5mW8"
SECOND_TOKEN = "log-api-tok-2nd-Lp3"
DB_PASSWORD = "log-db-pw-Xc9kJ4"
WRONG_PASSWORD = "log-wrong-pw-Gh6sD1"
WRONG_TOKEN = "log-wrong-tok-Nz2fY7"
SECRETS = (HOOK_PASSWORD, API_TOKEN, SECOND_TOKEN, DB_PASSWORD, WRONG_PASSWORD, WRONG_TOKEN)


def basic(password: str) -> str:
    return "Basic " + base64.b64encode(f"{HOOK_USER}:{password}".encode()).decode()


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every line of ``text`` as a JSON object with the four fields every entry has; fail on any other line."""
    entries = []
    for number, line in enumerate(text.splitlines(), start=1):
        assert line.strip(), f"line {number} is blank:\n{text}"
        entry = orjson.loads(line)
        assert isinstance(entry, dict), line
        assert {"time", "level", "logger", "message"} <= set(entry), line
        assert entry["level"] in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"), line
        time = datetime.fromisoformat(entry["time"])
        assert time.utcoffset() == timedelta(0), line
        entries.append(entry)
    assert entries, "nothing was logged"
    return entries


def a_connection(uid: str) -> payloads.Body:
    session = payloads.device(f"{uid}-s", connected_at=AT)
    return payloads.connection(uid, "connected", AT, session, connections=[session])


async def test_json_log_of_a_server_whose_database_is_down(tmp_path: Path) -> None:
    """§7, §2: serve with JSON logs and an unreachable PostgreSQL: the 503s are logged as warnings, every
    line of stderr is one JSON object, and no configured or presented secret appears anywhere."""
    database_url = f"postgresql+asyncpg://presence:{DB_PASSWORD}@127.0.0.1:{free_port()}/presence"
    environment = presence_environment(
        database_url,
        credentials=False,
        extra={
            "PRESENCE_LOG_FORMAT": "json",
            "PRESENCE_LOG_LEVEL": "DEBUG",
            "PRESENCE_HOOK_USERNAME": HOOK_USER,
            "PRESENCE_HOOK_PASSWORD": HOOK_PASSWORD,
            "PRESENCE_API_TOKENS": f"{API_TOKEN},{SECOND_TOKEN}",
            "PRESENCE_DB_CONNECT_TIMEOUT": "2",
        },
    )
    headers = {"Content-Type": "Application/json"}
    with ServerProcess(environment, tmp_path, args=["--no-migrate"], name="json-log") as server:
        server.start()
        async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
            cases = (
                ("POST", "/hook", basic(HOOK_PASSWORD), orjson.dumps(a_connection("u-1")), 503),
                ("POST", "/hook", basic(WRONG_PASSWORD), orjson.dumps(a_connection("u-2")), 401),
                ("POST", "/hook", basic(HOOK_PASSWORD), b"{not json", 400),
                ("GET", "/users/u-1/presence", f"Bearer {API_TOKEN}", None, 503),
                ("GET", "/users/u-1/presence", f"Bearer {WRONG_TOKEN}", None, 401),
            )
            for method, path, authorization, body, expected in cases:
                async with session.request(
                    method, f"{server.url}{path}", data=body, headers={**headers, "Authorization": authorization}
                ) as response:
                    assert response.status == expected, (method, path, await response.text(), server.describe())
        assert server.terminate() == 0, server.describe()

    stderr = server.stderr()
    entries = json_lines(stderr)
    assert any("Running on" in entry["message"] for entry in entries), stderr
    # Which database, its password hidden.
    hidden = database_url.replace(DB_PASSWORD, "***")
    assert any(entry.get("database") == hidden for entry in entries), stderr
    # The failed commit and the failed query are each logged as a warning, by the module that saw them.
    warnings = [entry for entry in entries if entry["level"] == "WARNING"]
    assert any(
        entry["logger"] == "presence.intake.committer" and "commit of 1 events failed" in entry["message"]
        for entry in warnings
    ), warnings
    assert any(
        entry["logger"] == "presence.http.errors" and "GET /users/u-1/presence" in entry["message"]
        for entry in warnings
    ), warnings
    everything = stderr + server.stdout_path.read_text()
    for secret in SECRETS:
        assert secret not in everything, secret
    for authorization in (basic(HOOK_PASSWORD), basic(WRONG_PASSWORD)):
        assert authorization.removeprefix("Basic ") not in everything


async def test_json_log_of_an_import_with_rejected_lines(tmp_path: Path) -> None:
    """§7: `presence import` under JSON logging: stderr is JSON only, each shown rejection a record with its line."""
    source = tmp_path / "events.jsonl"
    source.write_bytes(orjson.dumps(a_connection("u-1")) + b"\n{not json\n" + orjson.dumps([1]) + b"\n")
    environment = presence_environment(
        f"sqlite+aiosqlite:///{tmp_path / 'import.db'}", extra={"PRESENCE_LOG_FORMAT": "json"}
    )

    result = await run_presence(["import", str(source)], environment, tmp_path)

    assert result.returncode == 1, result
    assert "1 accepted, 0 ignored, 2 rejected" in result.stdout
    rejected = [entry for entry in json_lines(result.stderr) if "line" in entry]
    assert [(entry["line"], entry["code"], entry["level"]) for entry in rejected] == [
        (2, "invalid_json", "WARNING"),
        (3, "invalid_body", "WARNING"),
    ], result.stderr
    assert "the body must be a JSON object" in rejected[1]["reason"]


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger that writes through :class:`JsonFormatter` into a buffer."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("tests.logging.captured")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, stream
    logger.removeHandler(handler)


def test_json_formatter_keeps_extra_context(captured: tuple[logging.Logger, io.StringIO]) -> None:
    """§7: context passed as ``extra`` becomes fields of the entry; values JSON cannot hold become text."""
    logger, stream = captured
    when = datetime(2025, 11, 21, 10, 15, 30, 123000, tzinfo=UTC)

    logger.warning(
        "commit of %d events failed",
        3,
        extra={"trigger": "after_message", "batch": 3, "when": when, "path": Path("/x")},
    )

    [entry] = json_lines(stream.getvalue())
    assert entry["message"] == "commit of 3 events failed"
    assert entry["level"] == "WARNING"
    assert entry["logger"] == "tests.logging.captured"
    assert entry["trigger"] == "after_message"
    assert entry["batch"] == 3
    assert datetime.fromisoformat(entry["when"]) == when
    assert entry["path"] == "/x"  # not JSON: as text
    assert "exception" not in entry
    # Nothing of LogRecord's own bookkeeping leaks in as context.
    assert not {"args", "msg", "levelno", "pathname", "exc_info", "taskName"} & set(entry)


def test_json_formatter_puts_the_exception_in_one_line(captured: tuple[logging.Logger, io.StringIO]) -> None:
    """§7: an error logged with its exception is still one line, the traceback a field of it."""
    logger, stream = captured
    try:
        raise ValueError("boom\nwith a second line")
    except ValueError:
        logger.exception("unexpected error", extra={"method": "POST", "path": "/hook"})

    text = stream.getvalue()
    assert text.count("\n") == 1, text
    [entry] = json_lines(text)
    assert entry["level"] == "ERROR"
    assert (entry["method"], entry["path"]) == ("POST", "/hook")
    assert entry["exception"].startswith("Traceback (most recent call last):")
    assert entry["exception"].endswith("ValueError: boom\nwith a second line")


def test_secrets_do_not_show_themselves_in_a_log_entry(captured: tuple[logging.Logger, io.StringIO]) -> None:
    """§7: a Secret, or the Settings that hold them, logged by mistake shows no secret."""
    logger, stream = captured
    settings = Settings(hook_username="cometchat", hook_password=Secret(HOOK_PASSWORD), api_tokens=(Secret(API_TOKEN),))

    logger.info("settings %r; password %s", settings, settings.hook_password, extra={"token": settings.api_tokens[0]})

    text = stream.getvalue()
    [entry] = json_lines(text)
    assert "cometchat" in entry["message"]  # the settings were rendered at all
    assert entry["message"].endswith("password **********")
    assert "token" in entry
    for secret in (HOOK_PASSWORD, API_TOKEN):
        assert secret not in text


def test_configure_logging_chooses_the_format() -> None:
    """§7: `json` installs the JSON formatter on the one root handler; `text` a plain one."""
    root, own = logging.getLogger(), logging.getLogger("presence")
    saved_handlers, saved_level, saved_own = root.handlers[:], root.level, own.level
    try:
        configure_logging("json", "WARNING")
        assert len(root.handlers) == 1
        assert isinstance(root.handlers[0].formatter, JsonFormatter)
        assert root.level == logging.WARNING
        configure_logging("text", "INFO")
        assert len(root.handlers) == 1
        assert not isinstance(root.handlers[0].formatter, JsonFormatter)
        assert root.level == logging.INFO
        # DEBUG is the service's own: libraries (aiosqlite logs every statement) stay at INFO.
        configure_logging("text", "DEBUG")
        assert own.getEffectiveLevel() == logging.DEBUG
        assert logging.getLogger("aiosqlite").getEffectiveLevel() == logging.INFO
        assert logging.getLogger("asyncio").getEffectiveLevel() == logging.INFO
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
        own.setLevel(saved_own)


MESSAGE_TEXT = "log-message-text-Ke4"
ACCESS_LOGGER = "presence.http.hook"


def access_entries(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [entry for entry in entries if entry["logger"] == ACCESS_LOGGER]


async def test_json_access_log_start_and_stop_of_a_server_at_debug(tmp_path: Path) -> None:
    """§7: JSON logs at DEBUG on SQLite: one INFO entry per webhook with its trigger, outcome,
    status, latency (and the error of a refusal), never a body or a secret; the start-up entry
    names the database and says migrating created the schema; the last says how many webhooks
    were served; no library floods the log with its own DEBUG lines (aiosqlite logs every statement)."""
    database = tmp_path / "access.db"
    environment = presence_environment(
        f"sqlite+aiosqlite:///{database}",
        credentials=False,
        extra={
            "PRESENCE_LOG_FORMAT": "json",
            "PRESENCE_LOG_LEVEL": "DEBUG",
            "PRESENCE_HOOK_USERNAME": HOOK_USER,
            "PRESENCE_HOOK_PASSWORD": HOOK_PASSWORD,
            "PRESENCE_API_TOKENS": API_TOKEN,
        },
    )
    message = payloads.message(57, "u-1_user_u-2", "u-2", receiver="u-1", text=MESSAGE_TEXT)
    cases = (
        (basic(HOOK_PASSWORD), orjson.dumps(a_connection("u-1")), 200),
        (basic(HOOK_PASSWORD), orjson.dumps(message), 200),
        (basic(HOOK_PASSWORD), orjson.dumps({"trigger": "after_group_member_added", "data": {}}), 200),
        (basic(HOOK_PASSWORD), orjson.dumps({"trigger": "message_read_receipt", "data": {"messageId": "57"}}), 400),
        (basic(HOOK_PASSWORD), b'{"text": "' + MESSAGE_TEXT.encode() + b'",}', 400),
        (basic(WRONG_PASSWORD), orjson.dumps(a_connection("u-2")), 401),
    )
    with ServerProcess(environment, tmp_path, name="access-log") as server:
        server.start()
        async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
            for authorization, body, expected in cases:
                async with session.post(
                    f"{server.url}/hook", data=body, headers={"Authorization": authorization}
                ) as response:
                    assert response.status == expected, (await response.text(), server.describe())
        assert server.terminate() == 0, server.describe()

    stderr = server.stderr()
    entries = json_lines(stderr)
    access = access_entries(entries)
    assert [(e["trigger"], e["outcome"], e["status"], e.get("code")) for e in access] == [
        ("after_connection_status_changed", "accepted", 200, None),
        ("after_message", "accepted", 200, None),
        ("after_group_member_added", "ignored", 200, None),
        ("message_read_receipt", "rejected", 400, "invalid_event"),
        (None, "rejected", 400, "invalid_json"),
        (None, "unauthorized", 401, "unauthorized"),
    ], stderr
    for entry in access:
        assert entry["level"] == "INFO"
        assert isinstance(entry["latency_ms"], float), entry
        assert entry["latency_ms"] >= 0, entry
        assert ("reason" in entry) == (entry["status"] >= 400), entry
    assert access[3]["reason"] == "data.receiptSender: required"
    assert access[4]["reason"].startswith("the body is not valid JSON: trailing comma is not allowed at line 1")
    # The service's own DEBUG lines may be there; no library's are.
    assert not [e for e in entries if e["level"] == "DEBUG" and not e["logger"].startswith("presence")], stderr
    started = [entry for entry in entries if "database" in entry]
    assert [entry["message"] for entry in started] == [
        f"database sqlite+aiosqlite:///{database}: created the schema at revision {head_revision()}"
    ], stderr
    assert entries[-1]["message"] == "stopped after 6 webhooks", stderr
    assert entries[-1]["webhooks"] == 6
    everything = stderr + server.stdout_path.read_text()
    for secret in (MESSAGE_TEXT, HOOK_PASSWORD, WRONG_PASSWORD):
        assert secret not in everything, secret
    for authorization in (basic(HOOK_PASSWORD), basic(WRONG_PASSWORD)):
        assert authorization.removeprefix("Basic ") not in everything


async def test_access_log_in_text_and_switched_off(database_url: str, caplog: pytest.LogCaptureFixture) -> None:
    """§7: the text access line reads as a sentence, with the code and reason of a refusal;
    ``PRESENCE_HOOK_ACCESS_LOG=false`` leaves it out, and only it."""
    caplog.set_level(logging.INFO, logger="presence")
    refused = {"trigger": "message_read_receipt", "data": {"messageId": "57"}}
    async with serving(make_settings(database_url)) as client:
        api = Api(client)
        await api.hook(a_connection("u-1"))
        assert (await api.post_hook(refused)).status == 400
        assert (await api.post_hook(b"")).status == 400
    lines = [record.getMessage() for record in caplog.records if record.name == ACCESS_LOGGER]
    assert len(lines) == 3, lines
    assert lines[0].startswith("webhook after_connection_status_changed accepted 200 in "), lines
    assert lines[1].startswith(
        "webhook message_read_receipt rejected 400 invalid_event (data.receiptSender: required) in "
    ), lines
    assert lines[2].startswith("webhook - rejected 400 invalid_json (the body is empty) in "), lines
    assert all(line.endswith(" ms") for line in lines), lines

    caplog.clear()
    assert Settings.from_env({"PRESENCE_HOOK_ACCESS_LOG": "false"}).hook_access_log is False
    assert Settings.from_env({}).hook_access_log is True
    async with serving(make_settings(database_url).replace(hook_access_log=False)) as client:
        await Api(client).hook(a_connection("u-2"))
        assert (await Api(client).post_hook(refused)).status == 400
    assert not [record for record in caplog.records if record.name == ACCESS_LOGGER]
    assert any(record.getMessage() == "stopped after 2 webhooks" for record in caplog.records)


async def test_start_up_says_whether_migrating_upgraded_the_schema_or_found_it_current(
    database_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """§7: from an older revision, the start-up line names both revisions; at the newest, it says so."""
    caplog.set_level(logging.INFO, logger="presence.http.app")
    head = head_revision()
    first = list(ScriptDirectory.from_config(alembic_config()).walk_revisions("base", "heads"))[-1].revision
    assert first != head
    async with empty_database("sqlite", tmp_path) as older:
        engine = create_async_engine(older)
        try:
            await upgrade(engine, first)
        finally:
            await engine.dispose()
        cases = (
            (older, f"upgraded the schema from revision {first} to {head}"),
            (database_url, f"schema is current at revision {head}"),
        )
        for url, expected in cases:
            caplog.clear()
            async with TestClient(TestServer(create_app(make_settings(url), migrate=True))):
                pass
            lines = [record.getMessage() for record in caplog.records if record.name == "presence.http.app"]
            assert lines == [f"database {url}: {expected}", "stopped after 0 webhooks"], lines
