"""The README stays true: its commands are the ones CI runs, its examples answer as shown."""

from __future__ import annotations

import base64
import re
import shlex
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient

from presence.settings import Secret, Settings
from tests.support.api import KEEP_FOR_A_CENTURY, serving
from tests.support.server import presence_environment, run_presence

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def _section(title: str) -> str:
    start = README.index(f"## {title}")
    end = README.find("\n## ", start + 1)
    return README[start : end if end != -1 else None]


def _code_blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, re.S)


def test_ci_runs_the_readme_test_command() -> None:
    """The second quick-start command is the one .ci/run runs, to the letter."""
    commands = _code_blocks(_section("Quick start"), "sh")
    assert len(commands) == 2, "the quick start gives exactly two commands"
    test_command = commands[1].strip()
    assert test_command in (ROOT / ".ci" / "run").read_text()


def _examples() -> list[tuple[str, str]]:
    """(shell block, the JSON answer shown after it) pairs of the API section."""
    api = _section("API")
    # A shell block followed by anything but a JSON one (the stream's, whose answer never ends) is not
    # replayed; neither block of a pair may span another's fence.
    return re.findall(r"```sh\n((?:(?!```).)*?)```\n```json\n((?:(?!```).)*?)```", api, re.S)


async def _run_curl(client: TestClient, command: str) -> bytes:  # type: ignore[type-arg]
    words = shlex.split(command)
    assert words[0] == "curl", command
    headers: dict[str, str] = {}
    data: str | None = None
    url = ""
    arguments = iter(words[1:])
    for word in arguments:
        if word == "-s":
            continue
        if word == "-u":
            headers["Authorization"] = "Basic " + base64.b64encode(next(arguments).encode()).decode()
        elif word == "-H":
            name, _, value = next(arguments).partition(": ")
            headers[name] = value
        elif word == "-d":
            data = next(arguments)
        else:
            url = word
    path = url.removeprefix("http://127.0.0.1:8080")
    if data is None:
        response = await client.get(path, headers=headers)
    else:
        response = await client.post(path, data=data, headers=headers)
    return await response.read()


@pytest.mark.parametrize("index", range(len(_examples())))
async def test_readme_examples_answer_as_shown(database_url: str, index: int) -> None:
    """Each curl example of the README, run in order on the README's settings, answers what the README shows."""
    settings = Settings(
        database_url=database_url,
        hook_username="cometchat",
        hook_password=Secret("change-me"),
        api_tokens=(Secret("change-me-too"),),
        inbox_retention=KEEP_FOR_A_CENTURY,  # the README's dates age; the answers must not
        receipt_retention=KEEP_FOR_A_CENTURY,
    )
    examples = _examples()
    answer: Any = None
    async with serving(settings) as client:
        for shell, _shown in examples[: index + 1]:  # the examples build on each other
            for piece in shell.strip().split("\ncurl "):
                command = piece if piece.startswith("curl ") else "curl " + piece
                answer = orjson.loads(await _run_curl(client, command))
    assert answer == orjson.loads(examples[index][1])


def test_no_curl_example_goes_unreplayed() -> None:
    """Curl examples are replayed from the README's API section: one anywhere else (docs/ included) is unchecked."""
    api = _section("API")
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for block in _code_blocks(path.read_text(), "sh"):
            if re.search(r"^curl ", block, re.M):
                assert path.name == "README.md", f"{path.name} has a curl example that no test replays"
                assert block in api, f"README.md has a curl example outside the API section: {block[:60]!r}"


def _hook_bodies() -> dict[str, str]:
    """The API examples' webhook bodies, by trigger (the last of each), each on one line."""
    bodies: dict[str, str] = {}
    for shell, _shown in _examples():
        for command in re.findall(r"^curl .*?(?=^curl |\Z)", shell, re.S | re.M):
            words = shlex.split(command)
            if "-d" in words:
                body = orjson.loads(words[words.index("-d") + 1])
                bodies[body["trigger"]] = orjson.dumps(body).decode()
    return bodies


def _is_progress(line: str) -> bool:
    """A progress bar line: shown on a terminal only, and its rate changes with every run."""
    return re.match(r"\w+: +\d+%\|", line) is not None


async def test_the_commands_console_example_prints_as_shown(tmp_path: Path) -> None:
    """The Commands section's console session, on the ``events.jsonl`` its text describes, prints what it shows."""
    bodies = _hook_bodies()
    connection = bodies["after_connection_status_changed"]
    assert "receiptSender" in bodies["message_read_receipt"]  # the receipts example's, not the refused one
    lines = [
        connection,  # the API examples' connection, message and read receipt
        bodies["after_message"],
        bodies["message_read_receipt"],
        "",  # a blank line
        bodies["after_group_member_added"],  # a trigger presence does not act on
        '{"trigger": "message_read_receipt", "data": {"messageId": "57"}}',  # no receiptSender
        connection[: len(connection) // 2],  # a line cut short
    ]
    (tmp_path / "events.jsonl").write_text("\n".join(lines) + "\n")
    environment = presence_environment(f"sqlite+aiosqlite:///{tmp_path / 'presence.db'}")
    [session] = _code_blocks(_section("Commands"), "console")
    returncode: int | None = None
    for command, *shown in (part.split("\n") for part in session.strip().split("$ ")[1:]):
        expected = [line for line in shown if line and not _is_progress(line)]
        if command == "echo $?":
            assert expected == [str(returncode)]
            continue
        words = shlex.split(command)
        assert words[0] == "presence", command
        result = await run_presence(words[1:], environment, tmp_path)
        printed = [line for line in (result.stderr + result.stdout).splitlines() if not _is_progress(line)]
        assert printed == expected, f"$ {command}\n{result.stderr}{result.stdout}"
        returncode = result.returncode
