"""Contract §7: ``presence import FILE`` feeds webhook bodies through the path ``/hook`` takes.

The reference is always ``/hook`` itself: the valid lines of a file, posted one by
one, must leave exactly the state (and inbox bodies) that importing the file leaves.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import pty
import select
import struct
import subprocess
import termios
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import exc
from sqlalchemy.ext.asyncio import AsyncEngine

from presence.core.facts import Changes
from presence.core.inbox import InboxRow
from presence.db.driver import Step
from presence.db.engine import create_engine
from presence.db.recording import ChangeSink
from presence.db.writes import Writer
from presence.intake.importer import REJECTIONS_KEPT, ImportInterrupted, ImportSummary, RejectedLine, import_lines
from presence.settings import Settings
from tests.support import payloads
from tests.support.api import Api, make_settings, serving
from tests.support.databases import Databases, migrate
from tests.support.server import COMMAND_TIMEOUT, PRESENCE_MODULE, Completed, presence_environment, run_presence
from tests.support.state import dump, state_tables, without_reception

# Recent times: nothing here is old enough for retention to expire while a test runs.
T = (int(time.time()) // 3600 - 1) * 3_600_000  # ms, on the hour, an hour ago
S = T // 1000  # s; receipts carry seconds
DIRECT = "alice_user_bob"
GROUP = "group_team"
UIDS = ("alice", "bob", "carol", "nobody")
MESSAGE_IDS = ("10", "11", "20", "21", "99")
#: Message text in the file; the service must never store it.
CONTENT = "import-secret-text-Qm3v"


@dataclass(frozen=True, slots=True)
class Line:
    raw: bytes
    #: What the import must make of it: accepted, ignored, rejected (with a code) or blank.
    kind: str
    code: str | None = None


def body(value: payloads.Body) -> bytes:
    return orjson.dumps(value)


def mixed_file() -> list[Line]:
    """Every trigger the service knows, the two kinds of ignored body, the three kinds of bad line, blanks."""
    a1 = payloads.device("a-1", connected_at=T, device_id="alice-laptop", platform="web")
    b1 = payloads.device("b-1", connected_at=str(T + 1_000), device_id="bob-phone", platform="ios")
    c1 = payloads.device("c-1", connected_at=T + 2_000, platform="android")
    hello = payloads.message(10, DIRECT, "alice", receiver="bob", sent_at=S + 10, text=CONTENT)
    return [
        Line(body(payloads.connection("alice", "connected", T, a1, connections=[a1])), "accepted"),
        Line(
            body(
                payloads.connection(
                    "bob", "connected", str(T + 1_000), b1, trigger="user_connection_status_change", status="available"
                )
            ),
            "accepted",
        ),
        Line(body(hello), "accepted"),
        Line(b"", "blank"),
        Line(
            body(payloads.receipt("delivered", 10, reader="bob", message_sender="alice", at=S + 20, receiver="alice")),
            "accepted",
        ),
        Line(
            body(payloads.receipt("read", 10, reader="bob", message_sender="alice", at=str(S + 30), receiver="alice")),
            "accepted",
        ),
        Line(
            body(payloads.message(99, DIRECT, "alice", receiver="bob", trigger="before_message", text=CONTENT)),
            "accepted",
        ),
        Line(
            body({"trigger": "after_reaction_added", "appId": payloads.APP_ID, "data": {"messageId": "10"}}), "ignored"
        ),
        Line(
            body(payloads.message(11, DIRECT, "bob", receiver="alice", category="action", sent_at=S, text=CONTENT)),
            "ignored",
        ),
        Line(b'{"trigger": "after_message", "data": {', "rejected", "invalid_json"),
        Line(b'{"trigger": "message_read_receipt", "data": {"messageId": "10"}}', "rejected", "invalid_event"),
        Line(b"[1, 2, 3]", "rejected", "invalid_body"),
        Line(b"  \t ", "blank"),
        Line(body(payloads.connection("alice", "disconnected", T + 9_000, a1)) + b"\r", "accepted"),  # a CRLF line
        Line(body(payloads.connection("carol", "connected", T + 2_000, c1)), "accepted"),
        Line(
            body(payloads.message(20, GROUP, "carol", receiver="team", receiver_type="group", sent_at=S + 50)),
            "accepted",
        ),
        Line(
            body(payloads.message(21, GROUP, "carol", receiver="team", receiver_type="group", sent_at=S + 51)),
            "accepted",
        ),
        Line(
            body(
                payloads.receipt(
                    "read",
                    21,
                    reader="alice",
                    message_sender="carol",
                    at=S + 60,
                    receiver="team",
                    receiver_type="group",
                )
            ),
            "accepted",
        ),
        Line(body(hello), "accepted"),  # a retry, as CometChat sends them
    ]


MIXED = mixed_file()
ACCEPTED = sum(1 for line in MIXED if line.kind == "accepted")
IGNORED = sum(1 for line in MIXED if line.kind == "ignored")
REJECTED = [(number, line.code) for number, line in enumerate(MIXED, start=1) if line.kind == "rejected"]
BLANK = sum(1 for line in MIXED if line.kind == "blank")


def write_lines(path: Path, lines: Sequence[Line]) -> Path:
    path.write_bytes(b"".join(line.raw + b"\n" for line in lines))
    return path


def summary_of(summary: ImportSummary) -> tuple[int, int, list[tuple[int, str]], int]:
    return summary.accepted, summary.ignored, [(r.line, r.code) for r in summary.rejections], summary.blank


Inbox = list[tuple[str, str]]


async def inbox_bodies(database_url: str) -> Inbox:
    """The inbox as (trigger, body), without ids and reception times."""
    return sorted((row[2], row[3]) for row in (await dump(database_url))["inbox_event"])


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a database holds and answers after some intake."""

    state: dict[str, list[tuple[Any, ...]]]
    inbox: Inbox
    answers: dict[str, tuple[int, Any]]


async def outcome_of(database_url: str) -> Outcome:
    paths = [f"/users/{uid}/presence" for uid in UIDS] + [f"/users/{uid}/sessions" for uid in UIDS[:-1]]
    paths += [f"/messages/{mid}/receipts" for mid in MESSAGE_IDS]
    paths += [f"/conversations/{cid}/receipts" for cid in (DIRECT, GROUP)] + ["/stats"]
    answers = {}
    async with serving(make_settings(database_url)) as client:
        api = Api(client)
        for path in paths:
            response = await api.get(path)
            answers[path] = (response.status, await response.json())
    # When each row was received differs between two intakes of the same events: compare the rest.
    return Outcome(without_reception(await state_tables(database_url)), await inbox_bodies(database_url), answers)


async def post_through_hook(database_url: str, lines: Sequence[Line]) -> list[str]:
    """Post every line the import should commit to /hook, one by one; the statuses /hook answered."""
    statuses = []
    async with serving(make_settings(database_url)) as client:
        api = Api(client)
        for line in lines:
            if line.kind in ("accepted", "ignored"):
                statuses.append((await api.hook(line.raw))["status"])
    return statuses


@pytest.fixture
async def reference_url(databases: Databases) -> AsyncIterator[str]:
    """A second fresh database of the same backend, for what /hook builds."""
    url = await databases.fresh()
    yield url
    await databases.drop(url)


@pytest.fixture
async def reference(reference_url: str) -> Outcome:
    """The mixed file's valid lines posted through /hook: what an import must leave."""
    statuses = await post_through_hook(reference_url, MIXED)
    # /hook itself classifies the lines as this file says it does.
    assert statuses == [line.kind for line in MIXED if line.kind in ("accepted", "ignored")]
    outcome = await outcome_of(reference_url)
    # The history built something worth comparing: every answer is found but these three (a uid never
    # seen, a message in flight that has no id yet, an untracked ``action``).
    missing = {path for path, (status, _) in outcome.answers.items() if status == 404}
    assert missing == {"/users/nobody/presence", "/messages/99/receipts", "/messages/11/receipts"}, outcome.answers
    assert all(status == 200 for path, (status, _) in outcome.answers.items() if path not in missing)
    assert outcome.answers["/messages/10/receipts"][1]["read_count"] == 1
    assert outcome.answers["/messages/21/receipts"][1]["read_count"] == 1
    return outcome


@pytest.fixture
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(settings)
    yield engine
    await engine.dispose()


# --- import_lines, directly ------------------------------------------------------------------


async def test_import_lines_leaves_what_hook_leaves(
    database_url: str, engine: AsyncEngine, reference: Outcome, tmp_path: Path
) -> None:
    """§7: every trigger, ignored and bad lines, blanks: exact counts, bad lines by number, the state /hook
    builds from the valid lines, the same inbox bodies, and no message text stored anywhere."""
    path = write_lines(tmp_path / "mixed.jsonl", MIXED)
    progress: list[tuple[int, int]] = []

    summary = await import_lines(
        engine, path, settings=make_settings(database_url), progress=lambda lines, read: progress.append((lines, read))
    )

    assert summary_of(summary) == (ACCEPTED, IGNORED, REJECTED, BLANK)
    assert (summary.rejected, summary.committed, summary.lines) == (len(REJECTED), ACCEPTED + IGNORED, len(MIXED))
    assert all(rejection.message for rejection in summary.rejections)
    assert str(summary.rejections[1]) == "line 11: invalid_event: data.receiptSender: required"
    assert progress[-1] == (len(MIXED), path.stat().st_size)
    assert await outcome_of(database_url) == reference
    assert CONTENT not in repr(await dump(database_url))


async def test_importing_the_same_lines_twice_changes_no_state(
    database_url: str, engine: AsyncEngine, settings: Settings, reference: Outcome
) -> None:
    """§2, §7: an import is idempotent: the second one commits every line again and changes no state."""
    lines = [line.raw for line in MIXED]

    first = await import_lines(engine, lines, settings=settings)
    after_first = await outcome_of(database_url)
    second = await import_lines(engine, iter(lines), settings=settings)
    after_second = await outcome_of(database_url)

    assert summary_of(first) == summary_of(second) == (ACCEPTED, IGNORED, REJECTED, BLANK)
    assert after_first == reference
    assert after_second.state == after_first.state
    assert after_second.answers == after_first.answers
    assert after_second.inbox == sorted(after_first.inbox * 2)  # the inbox keeps every delivery


async def test_import_lines_in_small_batches_and_a_small_window(
    database_url: str, engine: AsyncEngine, settings: Settings, reference: Outcome
) -> None:
    """§7: one event per commit, two in flight: the same counts and the same state."""
    small = settings.replace(commit_max_batch=1, intake_queue_limit=2)

    summary = await import_lines(engine, [line.raw for line in MIXED], settings=small)

    assert summary_of(summary) == (ACCEPTED, IGNORED, REJECTED, BLANK)
    assert await outcome_of(database_url) == reference


async def test_an_oversized_line_is_rejected_as_hook_would(engine: AsyncEngine, settings: Settings) -> None:
    """§2, §7: a line over PRESENCE_MAX_BODY_BYTES is rejected as /hook rejects such a body, with its number."""
    session = payloads.device("big-1")
    big = payloads.connection("big", "connected", T, session, connections=[session])
    big["padding"] = "x" * settings.max_body_bytes
    lines = [body(payloads.connection("small", "connected", T, session)), body(big)]

    summary = await import_lines(engine, lines, settings=settings)

    assert (summary.accepted, [(r.line, r.code) for r in summary.rejections]) == (1, [(2, "payload_too_large")])


MARKER = "the-database-refuses-this"


def failing_steps(error: Exception, *, when: list[bool]) -> Any:
    """A Writer.steps that raises ``error`` for a batch holding a row with MARKER (while ``when[0]``)."""
    original = Writer.steps

    def steps(self: Writer, inbox: Sequence[InboxRow], changes: Changes, *, record: ChangeSink | None) -> list[Step]:
        if any(MARKER in row.body for row in inbox) and when[0]:
            raise error
        return original(self, inbox, changes, record=record)

    return steps


async def refuse_marker(engine: AsyncEngine) -> None:
    """Make the database itself refuse, as a constraint violation, every inbox row holding MARKER."""
    async with engine.begin() as connection:
        if connection.dialect.name == "sqlite":
            await connection.exec_driver_sql(
                "CREATE TRIGGER refuse_marker BEFORE INSERT ON inbox_event "
                f"WHEN instr(NEW.body, '{MARKER}') > 0 BEGIN SELECT RAISE(ABORT, 'refused for the test'); END"
            )
        else:
            await connection.exec_driver_sql(
                f"ALTER TABLE inbox_event ADD CONSTRAINT refuse_marker CHECK (strpos(body, '{MARKER}') = 0)"
            )


def user_line(uid: str) -> bytes:
    session = payloads.device(f"{uid}-s")
    return body(payloads.connection(uid, "connected", T, session, connections=[session]))


async def test_a_line_the_database_refuses_is_rejected_and_its_neighbours_committed(
    database_url: str, engine: AsyncEngine, settings: Settings
) -> None:
    """§7: when the database refuses one event of a batch, only that line is rejected, by number."""
    await refuse_marker(engine)
    lines = [user_line(f"u-{n}") for n in range(1, 7)]
    lines[3] = user_line(MARKER)

    summary = await import_lines(engine, lines, settings=settings)

    assert (summary.accepted, summary.ignored) == (5, 0)
    assert [(r.line, r.code) for r in summary.rejections] == [(4, "unprocessable_event")]
    assert len((await dump(database_url))["inbox_event"]) == 5
    assert {row[0] for row in (await dump(database_url))["user_presence"]} == {f"u-{n}" for n in (1, 2, 3, 5, 6)}


async def test_an_outage_stops_the_import_and_importing_again_completes_it(
    database_url: str,
    reference_url: str,
    engine: AsyncEngine,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """§7: the database going away stops the import with the line and the count committed; the same
    import, run again once the database is back, leaves the state of an import that never failed."""
    lines = [user_line(f"u-{n:03}") for n in range(60)]
    lines[20] = user_line(MARKER)
    outage = [True]
    monkeypatch.setattr(
        Writer, "steps", failing_steps(exc.OperationalError("BEGIN", {}, Exception("gone")), when=outage)
    )
    small = settings.replace(commit_max_batch=2)

    with pytest.raises(ImportInterrupted) as interrupted:
        await import_lines(engine, lines, settings=small)

    error = interrupted.value
    assert error.line in (20, 21)  # the marker's line, or the line before it in its batch
    committed = len((await dump(database_url))["inbox_event"])
    assert error.summary.committed == committed
    assert 0 < committed < len(lines) - 1  # it stopped: it did not go on through the file
    assert "importing the same file again is safe" in str(error).lower()
    assert f"{committed} lines were committed" in str(error)

    outage[0] = False
    summary = await import_lines(engine, lines, settings=small)
    assert summary_of(summary) == (len(lines), 0, [], 0)

    engine_of_reference = create_engine(make_settings(reference_url))
    try:
        await import_lines(engine_of_reference, lines, settings=small)
    finally:
        await engine_of_reference.dispose()
    reference = without_reception(await state_tables(reference_url))
    assert without_reception(await state_tables(database_url)) == reference
    assert len((await dump(database_url))["inbox_event"]) == committed + len(lines)


async def test_an_unreachable_database_stops_the_import_at_once(tmp_path: Path) -> None:
    """§7: a database that cannot be reached at all: ImportInterrupted at the first line, nothing committed."""
    settings = make_settings(f"sqlite+aiosqlite:///{tmp_path / 'missing-dir' / 'x.db'}")
    engine = create_engine(settings)
    try:
        with pytest.raises(ImportInterrupted) as interrupted:
            await import_lines(engine, [user_line("u-1"), user_line("u-2")], settings=settings)
    finally:
        await engine.dispose()
    assert interrupted.value.line == 1
    assert interrupted.value.summary.committed == 0


# --- presence import, the command ------------------------------------------------------------


async def run_with_input(args: Sequence[str], data: bytes, environment: dict[str, str], cwd: Path) -> Completed:
    """``presence ARGS`` with ``data`` piped to its standard input."""
    process = await asyncio.create_subprocess_exec(
        *PRESENCE_MODULE,
        *args,
        env=environment,
        cwd=cwd,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(COMMAND_TIMEOUT):
            stdout, stderr = await process.communicate(data)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return Completed(process.returncode, stdout.decode(errors="replace"), stderr.decode(errors="replace"))


async def test_import_command_prints_the_summary_and_the_bad_lines(
    database_url: str, reference: Outcome, tmp_path: Path
) -> None:
    """§7: `presence import FILE`: the summary on stdout, each bad line by number on stderr, exit 1 because
    some lines were rejected, no progress bar off a terminal, and the state /hook builds."""
    path = write_lines(tmp_path / "mixed.jsonl", MIXED)

    result = await run_presence(["import", str(path)], presence_environment(database_url, credentials=False), tmp_path)

    assert result.returncode == 1, result
    expected = (
        f"imported {path}: {ACCEPTED} accepted, {IGNORED} ignored, {len(REJECTED)} rejected"
        f" ({len(MIXED)} lines, {BLANK} blank)"
    )
    assert result.stdout.strip() == expected
    reported = [line for line in result.stderr.splitlines() if line.startswith("line ")]
    assert [line.split(":")[0:2] for line in reported] == [[f"line {n}", f" {code}"] for n, code in REJECTED]
    assert "line 11: invalid_event: data.receiptSender: required" in reported
    assert "\r" not in result.stderr
    assert "%|" not in result.stderr
    assert await outcome_of(database_url) == reference


async def test_import_command_reads_standard_input_and_exits_0_when_all_is_well(tmp_path: Path) -> None:
    """§7: `presence import -` reads a pipe; a file without a bad line exits 0, and says so."""
    good = [line for line in MIXED if line.kind != "rejected"]
    database = tmp_path / "stdin.db"
    environment = presence_environment(f"sqlite+aiosqlite:///{database}", credentials=False)

    result = await run_with_input(["import", "-"], b"".join(line.raw + b"\n" for line in good), environment, tmp_path)

    assert result.returncode == 0, result
    counts = f"{ACCEPTED} accepted, {IGNORED} ignored, 0 rejected ({len(good)} lines, {BLANK} blank)"
    expected = f"imported standard input: {counts}"
    assert result.stdout.strip() == expected
    assert not [line for line in result.stderr.splitlines() if line.startswith("line ")]
    assert len((await dump(f"sqlite+aiosqlite:///{database}"))["inbox_event"]) == ACCEPTED + IGNORED


async def test_import_command_lists_the_first_rejected_lines_and_counts_the_rest(tmp_path: Path) -> None:
    """§7: many bad lines: the first 20 on stderr, how many more, and every one in the summary."""
    lines = [Line(user_line("u-1"), "accepted")] + [Line(b"{nope", "rejected", "invalid_json")] * 25
    path = write_lines(tmp_path / "bad.jsonl", lines)
    environment = presence_environment(f"sqlite+aiosqlite:///{tmp_path / 'bad.db'}", credentials=False)

    result = await run_presence(["import", str(path)], environment, tmp_path)

    assert result.returncode == 1, result
    assert "1 accepted, 0 ignored, 25 rejected" in result.stdout
    reported = [line for line in result.stderr.splitlines() if line.startswith("line ")]
    message = "the body is not valid JSON: unexpected character, expected a string key at line 1, column 2 (byte 1)"
    assert reported == [f"line {n}: invalid_json: {message}" for n in range(2, 22)]
    assert "... and 5 more rejected lines" in result.stderr.splitlines()


async def test_import_command_fails_with_one_line_without_a_file_or_a_database(tmp_path: Path) -> None:
    """§7: a missing file (exit 2) or an unreachable database (exit 3) is one line, not a traceback."""
    path = write_lines(tmp_path / "one.jsonl", [Line(user_line("u-1"), "accepted")])
    reachable = presence_environment(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}", credentials=False)
    unreachable = presence_environment(f"sqlite+aiosqlite:///{tmp_path / 'missing-dir' / 'x.db'}", credentials=False)

    missing = await run_presence(["import", str(tmp_path / "nope.jsonl")], reachable, tmp_path)
    away = await run_presence(["import", str(path)], unreachable, tmp_path)

    assert missing.returncode == 2, missing
    assert missing.stderr.strip().splitlines() == [
        f"presence: cannot read {tmp_path / 'nope.jsonl'}: No such file or directory"
    ]
    assert not (tmp_path / "x.db").exists()
    assert away.returncode == 3, away
    [line] = away.stderr.strip().splitlines()
    assert line.startswith("presence: cannot use the database of PRESENCE_DATABASE_URL (")
    assert away.stdout == ""


# --- progress bars on a terminal -------------------------------------------------------------


def run_on_a_terminal(args: Sequence[str], environment: dict[str, str], cwd: Path) -> tuple[int, str, str]:
    """``presence ARGS`` with stderr on a pseudo-terminal 100 columns wide: exit code, stdout, terminal output."""
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    stdout_path = cwd / f"terminal-{args[0]}.stdout"
    chunks: list[bytes] = []
    with stdout_path.open("wb") as stdout:
        process = subprocess.Popen(
            [*PRESENCE_MODULE, *args],
            env=environment,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=terminal,
        )
    os.close(terminal)
    try:
        deadline = time.monotonic() + COMMAND_TIMEOUT
        chunks.extend(iter_reads(controller, deadline))
        returncode = process.wait(timeout=max(0.1, deadline - time.monotonic()))
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(controller)
    return returncode, stdout_path.read_text(), b"".join(chunks).decode(errors="replace")


def iter_reads(controller: int, deadline: float) -> Iterator[bytes]:
    """What the process writes to the terminal, until it closes it (EIO) or the deadline passes."""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError("the command did not finish writing to the terminal in time")
        ready, _, _ = select.select([controller], [], [], remaining)
        if not ready:
            continue
        try:
            data = os.read(controller, 65536)
        except OSError:  # EIO: every writer closed the terminal
            return
        if not data:
            return
        yield data


def test_import_and_rebuild_show_progress_bars_on_a_terminal(tmp_path: Path) -> None:
    """§7: on a terminal, import shows a bar over the file's bytes and rebuild one over the inbox; both reach
    100 %, and the summaries still go to stdout."""
    path = write_lines(tmp_path / "mixed.jsonl", MIXED)
    database = tmp_path / "terminal.db"
    environment = presence_environment(f"sqlite+aiosqlite:///{database}", credentials=False)
    asyncio.run(migrate(f"sqlite+aiosqlite:///{database}"))

    returncode, stdout, terminal = run_on_a_terminal(["import", str(path)], environment, tmp_path)

    assert returncode == 1, terminal
    assert f"{ACCEPTED} accepted, {IGNORED} ignored, {len(REJECTED)} rejected" in stdout
    bars = [part for part in terminal.replace("\n", "\r").split("\r") if part.startswith("importing:")]
    assert bars, terminal
    assert bars[-1].startswith("importing: 100%|"), bars  # a percentage: the file's size was known
    assert "line 10: invalid_json" in terminal  # the bad lines are still listed on stderr

    returncode, stdout, terminal = run_on_a_terminal(["rebuild"], environment, tmp_path)

    assert returncode == 0, terminal
    events = ACCEPTED + IGNORED
    assert f"rebuilt state from 0 checkpoint rows and {events} inbox events" in stdout
    bars = [part for part in terminal.replace("\n", "\r").split("\r") if part.startswith("rebuilding:")]
    assert bars, terminal
    assert bars[-1].startswith("rebuilding: 100%|"), bars
    assert f"{events}/{events}" in bars[-1], bars


async def test_rejected_lines_are_streamed_and_only_the_first_are_kept(engine: AsyncEngine, settings: Settings) -> None:
    """A file of many bad lines costs no more memory than one of a few: each goes to ``on_rejected``."""
    lines = [user_line("u-1")] + [b"{nope"] * (3 * REJECTIONS_KEPT)
    streamed: list[RejectedLine] = []

    summary = await import_lines(engine, lines, settings=settings, on_rejected=streamed.append)

    assert [r.line for r in streamed] == list(range(2, len(lines) + 1))
    assert summary.rejected == 3 * REJECTIONS_KEPT
    assert summary.rejections == streamed[:REJECTIONS_KEPT]
    assert summary.accepted == 1
