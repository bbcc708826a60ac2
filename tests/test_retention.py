"""Contract §7: retention in the background, in bounded batches; presence is never expired."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from presence.jobs import retention
from presence.settings import Settings, SettingsError
from tests.support import payloads
from tests.support.api import Api, make_settings, serving
from tests.support.state import dump

AT = 1_795_256_130_000


async def _history(api: Api) -> None:
    for index in range(5):
        session = payloads.device(f"s{index}", connected_at=AT)
        await api.hook(payloads.connection(f"u{index}", "connected", AT, session, connections=[session]))
    await api.hook(payloads.message(10, "u0_user_u1", "u0", receiver="u1", sent_at=AT // 1000))
    await api.hook(payloads.receipt("read", 10, reader="u1", message_sender="u0", at=AT // 1000 + 5, receiver="u0"))


async def _counts(url: str) -> dict[str, int]:
    return {table: len(rows) for table, rows in (await dump(url)).items()}


def _nothing(**counts: int) -> dict[str, int]:
    """A pass's answer: every table retention works on, 0 unless given."""
    tables = ["inbox_event", "change"]
    for name in ("receipt", "receipt_watermark", "group_receipt", "group_receipt_flag", "message", "user_session"):
        tables += [name, f"checkpoint_{name}"]
    return {table: counts.get(table, 0) for table in tables}


@pytest.mark.parametrize("batch", [1, 2, 1000])
async def test_a_pass_deletes_what_was_received_before_each_window_and_never_presence(
    api: Api, database_url: str, batch: int
) -> None:
    """Inbox rows 7 days after they were received (into the checkpoint), messages and receipts after 90;
    the events' own times (2026-11-21) play no part; users and live sessions stay; any batch size."""
    await _history(api)
    settings = make_settings(database_url).replace(
        retention_batch=batch, inbox_retention=timedelta(days=7), receipt_retention=timedelta(days=90)
    )
    engine = create_async_engine(database_url)
    received = datetime.now(UTC)
    try:
        assert await retention.run_pass(engine, settings, received + timedelta(days=6)) == _nothing()
        deleted = await retention.run_pass(engine, settings, received + timedelta(days=8))
        assert deleted == _nothing(inbox_event=7)
        counts = await _counts(database_url)
        assert counts["inbox_event"] == 0
        assert (counts["receipt"], counts["message"]) == (1, 1)
        # What the pruned rows held is in the checkpoint now, for a rebuild to start from.
        assert (counts["checkpoint_user_presence"], counts["checkpoint_receipt"], counts["checkpoint_message"]) == (
            5,
            1,
            1,
        )

        assert await retention.run_pass(engine, settings, received + timedelta(days=89)) == _nothing()
        deleted = await retention.run_pass(engine, settings, received + timedelta(days=91))
        assert deleted == _nothing(
            receipt=1,
            checkpoint_receipt=1,
            receipt_watermark=2,
            checkpoint_receipt_watermark=2,
            message=1,
            checkpoint_message=1,
        )
    finally:
        await engine.dispose()
    counts = await _counts(database_url)
    assert counts["user_presence"] == 5
    assert counts["user_session"] == 5  # all live: never expired
    assert counts["message"] == counts["receipt"] == counts["receipt_watermark"] == 0
    assert await api.presence("u3") is not None
    assert await api.receipts("10") is None


async def test_history_dated_long_ago_is_kept_for_the_window_from_its_reception(api: Api, database_url: str) -> None:
    """§7: a message and receipt dated 2020, received now (CometChat's samples, an import), are not expired."""
    old = 1_577_836_800  # 2020-01-01, in seconds
    await api.hook(payloads.message(7, "u0_user_u1", "u0", receiver="u1", sent_at=old))
    await api.hook(payloads.receipt("read", 7, reader="u1", message_sender="u0", at=old + 5, receiver="u0"))
    settings = make_settings(database_url).replace(receipt_retention=timedelta(days=90))
    engine = create_async_engine(database_url)
    try:
        await retention.run_pass(engine, settings, datetime.now(UTC) + timedelta(days=1))
        kept = await api.receipts("7")
        assert kept is not None
        assert [r["uid"] for r in kept["receipts"]] == ["u1"]
        await retention.run_pass(engine, settings, datetime.now(UTC) + timedelta(days=91))
    finally:
        await engine.dispose()
    assert await api.receipts("7") is None


async def test_ended_sessions_expire_with_receipts_and_live_ones_never(api: Api, database_url: str) -> None:
    """A user's history stays for the receipt window; a session still live stays as long as it is."""
    live, ended, superseded = (payloads.device(name, connected_at=AT) for name in ("live", "ended", "superseded"))
    await api.hook(payloads.connection("u", "connected", AT, ended))
    await api.hook(payloads.connection("u", "disconnected", AT + 1, ended))
    await api.hook(payloads.connection("u", "connected", AT + 2, superseded, connections=[superseded]))
    await api.hook(payloads.connection("u", "connected", AT + 3, live, connections=[live]))
    settings = make_settings(database_url).replace(receipt_retention=timedelta(days=90))
    engine = create_async_engine(database_url)
    try:
        await retention.run_pass(engine, settings, datetime.now(UTC) + timedelta(days=89))
        assert {s["session_id"] for s in await api.sessions("u")} == {"live", "ended", "superseded"}
        deleted = await retention.run_pass(engine, settings, datetime.now(UTC) + timedelta(days=91))
    finally:
        await engine.dispose()
    assert deleted["user_session"] == 2
    assert [s["session_id"] for s in await api.sessions("u")] == ["live"]
    presence = await api.presence("u")
    assert presence is not None
    assert [c["session_id"] for c in presence["connections"]] == ["live"]


async def test_retention_runs_in_the_background(database_url: str) -> None:
    """The app deletes expired inbox rows by itself, while intake goes on; presence stays."""
    settings = make_settings(database_url).replace(inbox_retention=timedelta(seconds=1), retention_interval=0.05)
    async with serving(settings) as client:
        api = Api(client)
        await _history(api)
        assert (await _counts(database_url))["inbox_event"] == 7
        for _ in range(200):  # up to 20 s
            if not (await _counts(database_url))["inbox_event"]:
                break
            await asyncio.sleep(0.1)
        assert (await _counts(database_url))["inbox_event"] == 0
        assert await api.presence("u0") is not None
        session = payloads.device("late", connected_at=AT)
        await api.hook(payloads.connection("late", "connected", AT, session))  # intake is not held up


def test_retention_windows_are_durations() -> None:
    settings = Settings.from_env(
        {"PRESENCE_INBOX_RETENTION": "12h", "PRESENCE_RECEIPT_RETENTION": "30d", "PRESENCE_RETENTION_BATCH": "50"}
    )
    assert settings.inbox_retention == timedelta(hours=12)
    assert settings.receipt_retention == timedelta(days=30)
    assert settings.retention_batch == 50
    assert Settings.from_env({"PRESENCE_INBOX_RETENTION": "90"}).inbox_retention == timedelta(seconds=90)
    for bad in ("soon", "7w", "0d", "-1d"):
        with pytest.raises(SettingsError, match="PRESENCE_INBOX_RETENTION"):
            Settings.from_env({"PRESENCE_INBOX_RETENTION": bad})
