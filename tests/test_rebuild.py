"""Contract §2 and §7: ``presence rebuild`` derives from the inbox exactly the state intake built."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import delete, insert
from sqlalchemy.ext.asyncio import AsyncEngine

from presence.core.times import ms_to_datetime
from presence.db.engine import create_engine
from presence.db.models import STATE_MODELS, InboxEvent
from presence.jobs import retention
from presence.jobs.rebuild import RebuildWouldLose, rebuild
from presence.settings import Settings
from tests.support import payloads
from tests.support.api import Api
from tests.support.server import presence_environment, run_presence
from tests.support.state import inbox_count, state_tables

T = 1_763_720_000_000  # ms; connection events carry milliseconds
S = T // 1000  # s; receipts carry seconds
DIRECT = "alice_user_bob"
GROUP = "group_team"
UIDS = ("alice", "bob", "carol", "dave", "erin", "nobody")
MESSAGE_IDS = ("10", "11", "12", "20", "21", "22", "30", "999")

Answers = dict[str, tuple[int, Any]]


def history() -> list[payloads.Body]:
    """A varied history, with duplicates and late arrivals, as CometChat might deliver it."""
    a1 = payloads.device("a-1", connected_at=T, device_id="alice-laptop", platform="web")
    a2 = payloads.device("a-2", connected_at=T + 5_000, device_id="alice-phone", platform="ios")
    b0 = payloads.device("b-0", connected_at=T - 60_000, device_id="bob-old", platform="android")
    b1 = payloads.device("b-1", connected_at=T + 1_000, device_id="bob-phone", platform="android")
    c1 = payloads.device("c-1", connected_at=str(T + 2_000), device_id="carol-tab", platform="ios")
    d1 = payloads.device("d-1", connected_at=T + 3_000, platform="web")
    e1 = payloads.device("e-1", connected_at=T, platform="web")
    e2 = payloads.device("e-2", connected_at=T + 1, platform="macos")
    return [
        # alice: a session without a snapshot, a second with one, then the first one leaves.
        payloads.connection("alice", "connected", T, a1),
        payloads.connection("alice", "connected", T + 5_000, a2, connections=[a1, a2]),
        payloads.connection("alice", "disconnected", T + 9_000, a1),
        payloads.connection("alice", "connected", T + 5_000, a2, connections=[a1, a2]),  # a retry
        # bob: snapshot, then an empty snapshot; an old event arrives late.
        payloads.connection("bob", "connected", T + 1_000, b1, connections=[b1]),
        payloads.connection("bob", "disconnected", T + 8_000, b1, connections=[]),
        payloads.connection("bob", "connected", T - 60_000, b0),
        # carol: the legacy trigger name, numeric strings.
        payloads.connection(
            "carol", "connected", str(T + 2_000), c1, trigger="user_connection_status_change", status="available"
        ),
        # dave: connected and disconnected at the same instant, the disconnect first.
        payloads.connection("dave", "disconnected", T + 3_000, d1),
        payloads.connection("dave", "connected", T + 3_000, d1),
        # erin: two devices, no snapshots.
        payloads.connection("erin", "connected", T, e1),
        payloads.connection("erin", "connected", T + 1, e2),
        # A one-to-one conversation: messages, receipts (one before its message arrives).
        payloads.receipt("delivered", 11, reader="bob", message_sender="alice", at=S + 20, receiver="alice"),
        payloads.message(10, DIRECT, "alice", receiver="bob", sent_at=S + 10),
        payloads.message(11, DIRECT, "alice", receiver="bob", sent_at=S + 11),
        payloads.message(12, DIRECT, "bob", receiver="alice", sent_at=S + 12),
        payloads.receipt("read", 10, reader="bob", message_sender="alice", at=str(S + 30), receiver="alice"),
        payloads.receipt("read", 12, reader="alice", message_sender="bob", at=S + 40, receiver="bob"),
        payloads.receipt("read", 12, reader="alice", message_sender="bob", at=S + 45, receiver="bob"),  # later: no-op
        payloads.message(99, DIRECT, "alice", receiver="bob", trigger="before_message"),
        # A group conversation, with an untracked category and a receipt for a message never announced.
        payloads.message(20, GROUP, "carol", receiver="team", receiver_type="group", sent_at=S + 50),
        payloads.message(21, GROUP, "carol", receiver="team", receiver_type="group", sent_at=(S + 51) * 1000),
        payloads.message(22, GROUP, "carol", receiver="team", receiver_type="group", category="action"),
        payloads.receipt(
            "delivered", 21, reader="alice", message_sender="carol", at=S + 60, receiver="team", receiver_type="group"
        ),
        payloads.receipt(
            "read", 20, reader="bob", message_sender="carol", at=S + 70, receiver="team", receiver_type="group"
        ),
        payloads.receipt(
            "read", 21, reader="carol", message_sender="carol", at=S + 71, receiver="team", receiver_type="group"
        ),
        payloads.receipt(
            "delivered", 30, reader="dave", message_sender=None, at=S + 80, receiver="team", receiver_type="group"
        ),
        # Something this service does not know: acknowledged and kept.
        {"trigger": "after_reaction_added", "appId": payloads.APP_ID, "data": {"reaction": "+1", "messageId": "10"}},
    ]


async def post_history(api: Api) -> None:
    for body in history():
        await api.hook(body)


async def answers(api: Api) -> Answers:
    """Every GET answer the history can influence: status and body, by path."""
    paths = [f"/users/{uid}/presence" for uid in UIDS] + [f"/messages/{mid}/receipts" for mid in MESSAGE_IDS]
    recorded: Answers = {}
    for path in paths:
        response = await api.get(path)
        recorded[path] = (response.status, await response.json())
    return recorded


async def wipe_state(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        for model in STATE_MODELS:
            await connection.execute(delete(model))


def found(recorded: Answers) -> int:
    return sum(1 for status, _ in recorded.values() if status == 200)


@pytest.fixture
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(settings)
    yield engine
    await engine.dispose()


@pytest.fixture
async def built(api: Api, database_url: str) -> tuple[Answers, dict[str, list[tuple[Any, ...]]]]:
    """The history posted through /hook; the answers and the state that intake built."""
    await post_history(api)
    recorded = await answers(api)
    # The history did build something worth rebuilding: every user but "nobody", every message but
    # 999 (never named) and 22 (an ``action``: kept in the inbox, not counted as a message).
    assert found(recorded) == len(UIDS) - 1 + len(MESSAGE_IDS) - 2, recorded
    assert recorded["/messages/12/receipts"][1]["read_count"] == 1
    assert recorded["/messages/20/receipts"][1]["read_count"] == 1
    assert [c["session_id"] for c in recorded["/users/alice/presence"][1]["connections"]] == ["a-2"]
    return recorded, await state_tables(database_url)


async def test_rebuild_leaves_the_state_intake_built(
    api: Api,
    database_url: str,
    engine: AsyncEngine,
    settings: Settings,
    built: tuple[Answers, dict[str, list[tuple[Any, ...]]]],
) -> None:
    """§7: rebuild over intact state changes no answer and no row; so does a rebuild in small batches."""
    before, state = built
    inbox = await inbox_count(database_url)
    assert inbox == len(history())

    summary = await rebuild(engine, settings=settings)

    assert (summary.replayed, summary.unreadable) == (inbox, 0)
    assert await answers(api) == before
    assert await state_tables(database_url) == state

    summary = await rebuild(engine, settings=settings, batch_size=3)

    assert (summary.replayed, summary.unreadable) == (inbox, 0)
    assert await answers(api) == before
    assert await state_tables(database_url) == state


async def test_rebuild_restores_wiped_state(
    api: Api,
    database_url: str,
    engine: AsyncEngine,
    settings: Settings,
    built: tuple[Answers, dict[str, list[tuple[Any, ...]]]],
) -> None:
    """§2: the inbox alone is enough: with every state row deleted, rebuild gives back every answer."""
    before, state = built
    await wipe_state(engine)
    assert found(await answers(api)) == 0
    progress: list[tuple[int, int]] = []

    summary = await rebuild(
        engine, settings=settings, batch_size=10, progress=lambda done, total: progress.append((done, total))
    )

    inbox = len(history())
    assert summary.replayed == inbox
    assert progress[-1] == (inbox, inbox)
    assert await answers(api) == before
    assert await state_tables(database_url) == state


async def test_a_later_repeated_receipt_changes_nothing_in_intake_or_rebuild(
    api: Api, engine: AsyncEngine, settings: Settings
) -> None:
    """§2, §4: a later read receipt for the same message, in its own request, keeps the earliest time."""
    await api.hook(payloads.message(12, DIRECT, "bob", receiver="alice", sent_at=S))
    first = payloads.receipt("read", 12, reader="alice", message_sender="bob", at=S + 40, receiver="bob")
    later = payloads.receipt("read", 12, reader="alice", message_sender="bob", at=S + 45, receiver="bob")
    earliest = {"uid": "alice", "delivered_at": "2025-11-21T10:14:00.000Z", "read_at": "2025-11-21T10:14:00.000Z"}
    await api.hook(first)
    await api.hook(later)

    intake = await api.receipts("12")
    await rebuild(engine, settings=settings)
    rebuilt = await api.receipts("12")

    assert intake is not None
    assert rebuilt is not None
    assert intake["receipts"] == [earliest]
    assert rebuilt["receipts"] == [earliest]


async def test_rebuild_command_prints_a_summary_and_restores_state(
    api: Api,
    database_url: str,
    engine: AsyncEngine,
    tmp_path: Path,
    built: tuple[Answers, dict[str, list[tuple[Any, ...]]]],
) -> None:
    """§7: `presence rebuild` re-derives wiped state from the inbox and says how many events it replayed."""
    before, state = built
    await wipe_state(engine)
    assert found(await answers(api)) == 0

    result = await run_presence(["rebuild"], presence_environment(database_url, credentials=False), tmp_path)

    assert result.returncode == 0, result.stderr
    assert re.search(rf"\b{len(history())} inbox events\b", result.stdout), result.stdout
    assert "0 unreadable" in result.stdout
    assert await answers(api) == before
    assert await state_tables(database_url) == state


async def test_rebuild_after_retention_pruned_the_inbox_keeps_every_answer(
    api: Api,
    database_url: str,
    engine: AsyncEngine,
    settings: Settings,
    built: tuple[Answers, dict[str, list[tuple[Any, ...]]]],
) -> None:
    """§7: retention folds what it prunes into the checkpoint, so a rebuild loses nothing the inbox no longer holds."""
    before, state = built
    # Half the inbox pruned (as if received more than a week ago), then the rest.
    pruning = settings.replace(retention_batch=len(history()) // 2, inbox_retention=timedelta(days=7))
    await retention.run_pass(engine, pruning, datetime.now(UTC) + timedelta(days=8), stop=_stop_after_first_batch())
    assert 0 < await inbox_count(database_url) < len(history())

    summary = await rebuild(engine, settings=settings)

    assert summary.from_checkpoint > 0
    assert summary.lost == {}
    assert await answers(api) == before
    assert await state_tables(database_url, without_checkpoint=True) == without_checkpoint(state)

    await retention.run_pass(engine, pruning, datetime.now(UTC) + timedelta(days=8))
    assert await inbox_count(database_url) == 0
    await wipe_state(engine)
    await rebuild(engine, settings=settings)
    assert await answers(api) == before


def without_checkpoint(state: dict[str, list[tuple[Any, ...]]]) -> dict[str, list[tuple[Any, ...]]]:
    return {name: rows for name, rows in state.items() if not name.startswith("checkpoint_")}


def _stop_after_first_batch() -> asyncio.Event:
    stop = asyncio.Event()
    stop.set()  # the pass ends after the batch in progress: one batch of the inbox
    return stop


async def test_rebuild_refuses_to_lose_state_that_nothing_justifies(  # noqa: PLR0917 - fixtures
    api: Api,
    database_url: str,
    engine: AsyncEngine,
    settings: Settings,
    tmp_path: Path,
    built: tuple[Answers, dict[str, list[tuple[Any, ...]]]],
) -> None:
    """§7: inbox rows gone with no checkpoint (pruned before there was one): rebuild says what it would lose
    and changes nothing, unless told to accept the loss."""
    before, state = built
    async with engine.begin() as connection:
        await connection.execute(delete(InboxEvent))  # as retention did before revision 0003

    with pytest.raises(RebuildWouldLose) as refused:
        await rebuild(engine, settings=settings)
    assert refused.value.lost["user_presence"] == len(UIDS) - 1
    assert "nothing was changed" in str(refused.value)
    assert await state_tables(database_url) == state

    result = await run_presence(["rebuild"], presence_environment(database_url, credentials=False), tmp_path)
    assert result.returncode == 4, result
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "user_presence rows" in result.stderr
    assert await answers(api) == before

    summary = await rebuild(engine, settings=settings, accept_loss=True)
    assert summary.lost["user_presence"] == len(UIDS) - 1
    assert found(await answers(api)) == 0


async def test_rebuild_judges_event_times_against_their_recorded_arrival(
    api: Api, engine: AsyncEngine, settings: Settings
) -> None:
    """An inbox row whose event is dated far ahead of the time it was received is not replayed."""
    session = payloads.device("s-1", connected_at=T)
    ahead = payloads.connection("zed", "connected", T + 2 * 3_600_000, session, connections=[session])
    async with engine.begin() as connection:
        await connection.execute(
            insert(InboxEvent).values(
                received_at=ms_to_datetime(T), trigger=ahead["trigger"], body=orjson.dumps(ahead).decode()
            )
        )

    summary = await rebuild(engine, settings=settings)

    assert summary.unreadable == 1
    assert await api.presence("zed") is None
