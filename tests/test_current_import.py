"""Contract §7, §8: ``presence import`` and ``presence rebuild`` of bodies in both of CometChat's formats.

A deployment may receive both systems while an app moves over, so a file (and an inbox) mixes
them. Importing it leaves what posting it to ``/hook`` leaves; rebuilding from the inbox gives it
back. The reference is always ``/hook`` itself.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from presence.db.engine import create_engine
from presence.intake.importer import import_lines
from presence.jobs.rebuild import rebuild
from presence.settings import Settings
from tests.support import payloads
from tests.support import samples_current as cc
from tests.support.api import Api, make_settings, serving
from tests.support.databases import Databases
from tests.support.server import presence_environment, run_presence
from tests.support.state import dump, state_tables, without_reception
from tests.test_current_webhooks import GROUP_COLUMNS, MEMBER_COLUMNS, expected_rows, iso_s, rows_of
from tests.test_rebuild import wipe_state

S = 1696934900  # s: the samples' own times
LEGACY_DIRECT = f"{cc.UID_1}_user_{cc.UID_2}"  # the same conversation, as legacy bodies name it
UIDS = (cc.UID_1, cc.UID_2, "alice", "nobody")
MESSAGE_IDS = ("1", "10", "11", "12", "13", "56", "57", "58", "99")


def legacy_bodies() -> list[payloads.Body]:
    """What the app's legacy webhooks said before it moved over (or besides)."""
    laptop = payloads.device("a-1", connected_at=S * 1000, device_id="alice-laptop", platform="web")
    return [
        payloads.connection("alice", "connected", S * 1000, laptop, connections=[laptop]),
        payloads.message(56, LEGACY_DIRECT, cc.UID_1, receiver=cc.UID_2, sent_at=S),
        payloads.message(57, LEGACY_DIRECT, cc.UID_1, receiver=cc.UID_2, sent_at=S + 10),
        payloads.receipt("delivered", 56, reader=cc.UID_2, message_sender=cc.UID_1, at=S + 30, receiver=cc.UID_1),
        # The current READ_RECEIPT again, in the legacy spelling: one receipt.
        payloads.receipt("read", 57, reader=cc.UID_2, message_sender=cc.UID_1, at=S + 50, receiver=cc.UID_1),
        payloads.message(10, cc.GROUP, cc.UID_1, receiver=cc.GUID, receiver_type="group", sent_at=S + 10),
        {"trigger": "after_reaction_added", "appId": payloads.APP_ID, "data": {"messageId": "57"}},
    ]


def current_bodies() -> list[payloads.Body]:
    """Every current sample, the connection's ``disconnected`` before its ``connected``."""
    return [
        cc.CONNECTION_STATUS_CHANGED,
        cc.CONNECTION_CONNECTED,
        cc.connection("connected", 1696935200000, connected_at=1696935199000, platform="ios", uid=cc.UID_2),
        cc.MESSAGE_SENT,
        cc.message_sent("58", S + 20),
        cc.DELIVERY_RECEIPT,
        cc.READ_RECEIPT,
        cc.MESSAGE_EDITED,
        cc.MESSAGE_EDITED_LIVE,
        cc.MESSAGE_DELETED,
        cc.MESSAGE_SENT_GROUP,
        cc.message_sent("12", S + 50, group=True),
        cc.message_sent("13", S + 70, group=True),
        cc.GROUP_DELIVERY_RECEIPT,
        cc.GROUP_READ_RECEIPT,
        cc.DELIVERED_TO_ALL,
        cc.READ_BY_ALL,
        cc.READ_BY_ALL_TIMED,
        *cc.MEMBERSHIP,
        *cc.IGNORED,
    ]


def mixed_lines() -> list[bytes]:
    """The two formats interleaved, with a retry of each kind."""
    legacy, current = legacy_bodies(), current_bodies()
    mixed: list[payloads.Body] = []
    for index in range(max(len(legacy), len(current))):
        mixed += legacy[index : index + 1] + current[index : index + 1]
    mixed += [cc.READ_RECEIPT, legacy[4], cc.MESSAGE_EDITED]
    return [orjson.dumps(body) for body in mixed]


LINES = mixed_lines()
IGNORED = len(cc.IGNORED) + 1  # the current triggers not acted on, and one legacy unknown trigger


async def outcome_of(database_url: str) -> dict[str, Any]:
    """The state (less reception times), the inbox bodies, and every answer the file can influence."""
    paths = [f"/users/{uid}/presence" for uid in UIDS] + [f"/users/{uid}/sessions" for uid in UIDS[:-1]]
    paths += [f"/messages/{mid}/receipts" for mid in MESSAGE_IDS]
    paths += [f"/conversations/{cid}/receipts" for cid in (cc.DIRECT, cc.GROUP)] + ["/stats"]
    answers = {}
    async with serving(make_settings(database_url)) as client:
        api = Api(client)
        for path in paths:
            response = await api.get(path)
            answers[path] = (response.status, await response.json())
    inbox = sorted((row[2], row[3]) for row in (await dump(database_url))["inbox_event"])
    return {"state": without_reception(await state_tables(database_url)), "inbox": inbox, "answers": answers}


@pytest.fixture
async def reference(databases: Databases) -> AsyncIterator[dict[str, Any]]:
    """The mixed lines posted to /hook, one by one, on a second database of the same backend."""
    url = await databases.fresh()
    try:
        async with serving(make_settings(url)) as client:
            api = Api(client)
            statuses = [(await api.hook(line))["status"] for line in LINES]
        assert statuses.count("ignored") == IGNORED
        outcome = await outcome_of(url)
        # The file built something worth comparing: everything is found but a uid never seen.
        missing = {path for path, (status, _) in outcome["answers"].items() if status == 404}
        assert missing == {"/users/nobody/presence", "/messages/99/receipts"}, outcome["answers"]
        yield outcome
    finally:
        await databases.drop(url)


@pytest.fixture
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(settings)
    yield engine
    await engine.dispose()


async def test_importing_a_file_of_both_formats_leaves_what_hook_leaves(
    database_url: str, engine: AsyncEngine, settings: Settings, reference: dict[str, Any]
) -> None:
    """§7, §8: every line of either format is accepted or ignored, none rejected; the state, the inbox
    and every answer are those of /hook."""
    summary = await import_lines(engine, LINES, settings=settings)

    assert (summary.accepted, summary.ignored, summary.rejected, summary.blank) == (
        len(LINES) - IGNORED,
        IGNORED,
        0,
        0,
    )
    assert await outcome_of(database_url) == reference


async def test_the_import_command_takes_both_formats(
    database_url: str, reference: dict[str, Any], tmp_path: Path
) -> None:
    """§7: ``presence import FILE`` of the mixed file: exit 0, its summary, the state /hook builds."""
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b"\n".join(LINES) + b"\n")

    result = await run_presence(["import", str(path)], presence_environment(database_url, credentials=False), tmp_path)

    assert result.returncode == 0, result
    assert result.stdout.strip() == (
        f"imported {path}: {len(LINES) - IGNORED} accepted, {IGNORED} ignored, 0 rejected ({len(LINES)} lines, 0 blank)"
    )
    assert await outcome_of(database_url) == reference


async def test_rebuild_of_an_inbox_of_both_formats_gives_the_same_state(
    api: Api, database_url: str, engine: AsyncEngine, settings: Settings, tmp_path: Path
) -> None:
    """§7, §8: from the inbox alone, ``rebuild`` (the function and the command) gives back every answer
    and every row that intake built from both formats."""
    for line in LINES:
        await api.hook(line)
    built = await outcome_of(database_url)
    state = await state_tables(database_url)

    await wipe_state(engine)
    summary = await rebuild(engine, settings=settings, batch_size=7)

    assert (summary.replayed, summary.unreadable) == (len(LINES), 0)
    assert await outcome_of(database_url) == built
    assert await state_tables(database_url) == state

    await wipe_state(engine)
    result = await run_presence(["rebuild"], presence_environment(database_url, credentials=False), tmp_path)

    assert result.returncode == 0, result.stderr
    assert await outcome_of(database_url) == built
    assert await state_tables(database_url) == state


async def test_import_and_rebuild_keep_what_only_current_bodies_say(
    database_url: str, engine: AsyncEngine, settings: Settings
) -> None:
    """§8: edits, deletions, group aggregates and membership survive an import and a rebuild (a rebuild
    that wiped every state table). Needs the database layer of issue 12."""
    await import_lines(engine, LINES, settings=settings)

    async def check() -> None:
        async with serving(settings) as client:
            api = Api(client)
            first = await api.receipts("1")
            eleven = await api.receipts("11")
        assert first is not None
        assert eleven is not None
        assert (first["edited_at"], first["deleted_at"]) == (iso_s(1696934990), iso_s(1696935000))
        # Delivered to all at 1696934930, read by all (untimed: its sentAt) at 1696934920; reading implies delivery.
        assert (eleven["delivered_to_all_at"], eleven["read_by_all_at"]) == (iso_s(1696934920), iso_s(1696934920))
        group, members = expected_rows(len(cc.MEMBERSHIP))
        assert await rows_of(database_url, "chat_group", GROUP_COLUMNS) == group
        assert await rows_of(database_url, "group_member", MEMBER_COLUMNS) == members

    await check()
    await wipe_state(engine)
    assert await rows_of(database_url, "chat_group", GROUP_COLUMNS) == []
    await rebuild(engine, settings=settings)
    await check()


@pytest.mark.parametrize("body", [cc.MESSAGE_EDITED, cc.MESSAGE_DELETED], ids=lambda body: body["trigger"])
async def test_rebuild_of_a_documented_edit_or_deletion_names_its_target(
    api: Api, database_url: str, engine: AsyncEngine, settings: Settings, body: dict[str, Any]
) -> None:
    """§2, §8: the inbox keeps enough of an action message to rebuild it: its target (message 1) is known
    again, and the action message itself (2, 3) is not made a message."""
    await api.hook(body)
    state = await state_tables(database_url)
    assert await api.receipts(body["data"]["message"]["id"]) is None

    await wipe_state(engine)
    await rebuild(engine, settings=settings)

    assert await api.receipts(body["data"]["message"]["id"]) is None
    assert await api.receipts("1") is not None
    assert await state_tables(database_url) == state
