"""Contract §10: reconciliation against a stand-in for CometChat's REST API (``tests.support.cometchat``).

Each test posts webhooks to the app, sets what CometChat says, runs one pass through the app's
own engine and committer (as ``serve`` does), and asks the query API what it answers now.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from presence.core.times import ms_to_datetime
from presence.db import reads, reconciling
from presence.db.engine import create_engine
from presence.http.keys import COMMITTER, INTAKE_ENGINE, METRICS, SETTINGS
from presence.jobs.rebuild import rebuild
from presence.jobs.reconcile import ReconcileFailed, ReconcileSummary, run_pass
from presence.settings import Secret, Settings, SettingsError
from tests.support import payloads
from tests.support.api import Api, make_settings, serving
from tests.support.cometchat import API_KEY, CometChatStandIn, Scripted, Slow
from tests.support.server import presence_environment, run_presence
from tests.support.state import inbox_count, state_tables

Client = TestClient[web.Request, web.Application]

#: Webhooks from long ago: settled, outside any grace window.
T0 = 1_763_720_000_000


def _online(uid: str, at: int, session: str = "s1") -> dict[str, Any]:
    return payloads.connection(uid, "connected", at, payloads.device(session, connected_at=at))


def _offline(uid: str, at: int, session: str = "s1") -> dict[str, Any]:
    return payloads.connection(uid, "disconnected", at, payloads.device(session, connected_at=at))


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


@pytest.fixture
async def cometchat() -> AsyncIterator[CometChatStandIn]:
    async with CometChatStandIn() as stand_in:
        yield stand_in


def _configured(settings: Settings, cometchat: CometChatStandIn) -> Settings:
    return settings.replace(cometchat_api_url=cometchat.url, cometchat_api_key=Secret(API_KEY))


@pytest.fixture
async def app(settings: Settings, cometchat: CometChatStandIn) -> AsyncIterator[Client]:
    async with serving(_configured(settings, cometchat)) as client:
        yield client


class Slept:
    """The waits a pass asked for, without waiting: a retry's delay is a number to check, not a time to spend."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


async def _pass(app: Client, **options: Any) -> ReconcileSummary:
    options.setdefault("sleep", Slept())
    options.setdefault("request_timeout", 2.0)
    return await run_pass(
        app.app[INTAKE_ENGINE], app.app[COMMITTER], app.app[SETTINGS], metrics=app.app[METRICS], **options
    )


async def test_a_stale_online_user_is_confirmed_then_corrected_offline(
    app: Client, cometchat: CometChatStandIn
) -> None:
    api = Api(app)
    await api.hook(_online("u1", T0))
    cometchat.offline("u1")
    cometchat.last_active["u1"] = T0 // 1000 + 30

    summary = await _pass(app)

    presence = await api.presence("u1")
    assert presence is not None
    assert (presence["status"], presence["status_source"], presence["connections"]) == ("offline", "reconcile", [])
    assert presence["last_seen_at"] == "2025-11-21T10:13:50.000Z"  # CometChat's lastActiveAt, later than the webhook
    assert (await api.sessions("u1"))[0]["disconnected_at"] is not None
    assert cometchat.lookups() == ["u1"]  # asked alone before it was marked offline
    assert (summary.checked, summary.corrected_offline, summary.corrected_online, summary.unchanged) == (1, 1, 0, 0)
    assert summary.requests == 2


async def test_a_user_only_cometchat_has_online_is_added_without_connections(
    app: Client, cometchat: CometChatStandIn
) -> None:
    api = Api(app)
    await api.hook(_offline("u2", T0))
    cometchat.online("u2", "u3")

    summary = await _pass(app)

    for uid in ("u2", "u3"):  # u2 was offline here, u3 never seen
        presence = await api.presence(uid)
        assert presence is not None
        assert (presence["status"], presence["status_source"], presence["connections"]) == ("online", "reconcile", [])
    assert (summary.corrected_online, summary.corrected_offline) == (2, 0)
    assert cometchat.lookups() == []  # only a user about to be marked offline is asked alone


async def test_users_inside_the_grace_window_are_untouched(app: Client, cometchat: CometChatStandIn) -> None:
    api = Api(app)
    now = _now_ms()
    await api.hook(_online("u4", now - 10_000))  # CometChat's offline may be older than this connect
    await api.hook(_offline("u5", now - 10_000))  # its online may be older than this disconnect
    cometchat.offline("u4")
    cometchat.online("u5")

    summary = await _pass(app)

    assert (await api.presence("u4") or {})["status"] == "online"
    assert (await api.presence("u5") or {})["status"] == "offline"
    assert all(p["status_source"] == "webhook" for p in [await api.presence("u4"), await api.presence("u5")] if p)
    assert (summary.corrected_online, summary.corrected_offline, summary.unchanged) == (0, 0, 2)
    assert cometchat.lookups() == []


async def test_a_user_the_listing_missed_but_online_when_asked_alone_is_kept(
    app: Client, cometchat: CometChatStandIn
) -> None:
    api = Api(app)
    await api.hook(_online("u6", T0))
    cometchat.online("u6")
    cometchat.hidden.add("u6")  # the list shifted while it was paged

    summary = await _pass(app)

    presence = await api.presence("u6")
    assert presence is not None
    assert (presence["status"], presence["status_source"], len(presence["connections"])) == ("online", "webhook", 1)
    assert cometchat.lookups() == ["u6"]
    assert summary.unchanged == 1


async def test_a_user_cometchat_does_not_know_is_left_alone(app: Client, cometchat: CometChatStandIn) -> None:
    api = Api(app)
    await api.hook(_online("ghost", T0))

    await _pass(app)

    assert (await api.presence("ghost") or {})["status"] == "online"
    assert cometchat.lookups() == ["ghost"]  # 404: no answer is not an offline


async def test_a_listing_of_several_pages_is_walked_to_its_end(app: Client, cometchat: CometChatStandIn) -> None:
    api = Api(app)
    listed = [f"p{i}" for i in range(5)]
    cometchat.online(*listed)
    await api.hook(_online("p2", T0))  # already online here: unchanged

    summary = await _pass(app, per_page=2)

    assert [s.query for s in cometchat.listings()] == [
        {"status": "available", "perPage": "2", "page": str(page)} for page in (1, 2, 3)
    ]
    assert all(s.apikey == API_KEY for s in cometchat.seen)
    assert (summary.checked, summary.corrected_online, summary.unchanged) == (5, 4, 1)
    for uid in listed:
        assert (await api.presence(uid) or {})["status"] == "online"


async def test_a_page_of_a_thousand_users_is_read_whole(app: Client, cometchat: CometChatStandIn) -> None:
    """A full page (about 300 kB here) comes in many chunks: the pass reads each answer to its end."""
    listed = [f"crowd-{i:04}" for i in range(1500)]
    cometchat.online(*listed)

    summary = await _pass(app, per_page=1000)

    assert len(cometchat.listings()) == 2
    assert (summary.checked, summary.corrected_online, summary.errors) == (1500, 1500, 0)
    assert (await Api(app).presence("crowd-1499") or {})["status"] == "online"


async def test_a_pass_past_its_deadline_stops_and_changes_nothing(app: Client, cometchat: CometChatStandIn) -> None:
    """A background pass may take its interval at most: then no other replica's next pass meets it."""
    api = Api(app)
    await api.hook(_online("u1", T0))
    cometchat.offline("u1")
    cometchat.scripts.user.append("hang")
    before = await api.presence("u1")

    with pytest.raises(ReconcileFailed) as failed:
        await _pass(app, deadline=0.3)

    assert failed.value.outcome == "timed_out"
    assert "longer than its 0.3 s" in str(failed.value)
    assert await api.presence("u1") == before


async def test_a_429_is_waited_out_as_its_retry_after_says(app: Client, cometchat: CometChatStandIn) -> None:
    api = Api(app)
    await api.hook(_online("u1", T0))
    cometchat.offline("u1")
    cometchat.scripts.listing.append(Scripted(429, retry_after="7"))
    cometchat.scripts.user.append(Scripted(503))
    slept = Slept()

    summary = await _pass(app, sleep=slept)

    assert slept.delays == [7.0, 0.5]  # CometChat's hint, then the first back-off
    assert (summary.corrected_offline, summary.errors, summary.requests) == (1, 2, 4)
    assert (await api.presence("u1") or {})["status"] == "offline"


#: Every way CometChat can fail a pass, in the listing or in a single user's confirmation.
FAILURES: dict[str, tuple[str, list[Any]]] = {
    "401": ("listing", [Scripted(401)]),
    "403": ("listing", [Scripted(403)]),
    "429 beyond the budget": ("listing", [Scripted(429, retry_after="3600")]),
    "5xx every time": ("listing", [Scripted(500)] * 5),
    "timeout": ("listing", ["hang"] * 5),
    "not JSON": ("listing", [Scripted(200, body=b"<html>")]),
    "no data list": ("listing", [Scripted(200, body=b'{"data": {"uid": "u1"}}')]),
    "a user without a uid": ("listing", [Scripted(200, body=b'{"data": [{"status": "available"}]}')]),
    "confirmation 401": ("user", [Scripted(401)]),
    "confirmation timeout": ("user", ["hang"] * 10),  # two users asked at once: one runs out
    "confirmation malformed": ("user", [Scripted(200, body=b'{"data": []}')]),
}


@pytest.mark.parametrize("failure", FAILURES)
async def test_every_failure_of_cometchat_changes_nothing_and_ends_in_one_line(
    app: Client,
    cometchat: CometChatStandIn,
    database_url: str,
    failure: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    api = Api(app)
    await api.hook(_online("u1", T0))
    await api.hook(_online("u2", T0))
    cometchat.offline("u1", "u2")
    cometchat.online("u3")
    where, answers = FAILURES[failure]
    (cometchat.scripts.listing if where == "listing" else cometchat.scripts.user).extend(answers)
    before, inbox_before = await state_tables(database_url), await inbox_count(database_url)

    with caplog.at_level(logging.DEBUG), pytest.raises(ReconcileFailed) as failed:
        await _pass(app, request_timeout=0.2)

    message = str(failed.value)
    assert "\n" not in message
    assert "nothing changed for the users not reached" in message
    assert failed.value.outcome == "cometchat_failed"
    assert await state_tables(database_url) == before
    assert await inbox_count(database_url) == inbox_before
    # The key goes into the apikey header, nowhere else: no error, no log line.
    assert API_KEY not in message
    assert all(API_KEY not in record.getMessage() for record in caplog.records)
    # Intake and queries went on answering meanwhile (they share nothing with a pass).
    await api.hook(_offline("u2", T0 + 1))
    assert (await api.presence("u2") or {})["status"] == "offline"


async def test_a_later_real_event_wins_over_a_correction_and_an_older_one_loses(
    app: Client, cometchat: CometChatStandIn
) -> None:
    api = Api(app)
    await api.hook(_online("u1", T0))
    cometchat.offline("u1")
    await _pass(app)

    await api.hook(_offline("u1", T0 + 5_000, session="s0"))  # delayed, older than the pass: loses
    assert (await api.presence("u1") or {})["status_source"] == "reconcile"
    await api.hook(_online("u1", _now_ms() + 1_000, session="s2"))  # after the pass: wins
    presence = await api.presence("u1")
    assert presence is not None
    assert (presence["status"], presence["status_source"]) == ("online", "webhook")
    assert [c["session_id"] for c in presence["connections"]] == ["s2"]  # s1 stays ended by the correction


async def test_corrections_appear_as_changes(app: Client, cometchat: CometChatStandIn) -> None:
    api = Api(app)
    await api.hook(_online("u1", T0))
    cometchat.offline("u1")
    cometchat.online("u2")
    after = (await api.get_json("/changes?limit=1000"))["next_after"]

    await _pass(app)

    changes = (await api.get_json(f"/changes?after={after}&limit=1000"))["changes"]
    by_uid = {c["uid"]: c["presence"] for c in changes}
    assert {uid: (p["status"], p["status_source"]) for uid, p in by_uid.items()} == {
        "u1": ("offline", "reconcile"),
        "u2": ("online", "reconcile"),
    }
    # A second pass finds nothing to correct: no change, no new inbox row.
    await _pass(app)
    assert (await api.get_json(f"/changes?after={after}&limit=1000"))["changes"] == changes


async def test_rebuild_after_a_pass_reproduces_it(app: Client, cometchat: CometChatStandIn, database_url: str) -> None:
    api = Api(app)
    await api.hook(_online("u1", T0))
    await api.hook(_online("u2", T0, session="s9"))
    cometchat.offline("u1")
    cometchat.online("u2", "u3")
    await _pass(app)
    before = await state_tables(database_url, without_checkpoint=True)
    answers = [await api.presence(uid) for uid in ("u1", "u2", "u3")]

    engine = create_engine(app.app[SETTINGS])
    try:
        summary = await rebuild(engine, settings=app.app[SETTINGS])
    finally:
        await engine.dispose()

    assert summary.unreadable == 0
    assert await state_tables(database_url, without_checkpoint=True) == before
    assert [await api.presence(uid) for uid in ("u1", "u2", "u3")] == answers
    assert answers[0] is not None
    assert answers[0]["status_source"] == "reconcile"


async def test_the_hook_refuses_the_services_own_trigger(api: Api) -> None:
    body = {"trigger": "presence_reconcile", "data": {"uid": "u1", "status": "offline", "at": T0}}
    response = await api.post_hook(body)
    assert response.status == 400
    error = (await response.json())["error"]
    assert error["code"] == "invalid_event"
    assert "presence_reconcile" in error["message"]
    assert await api.presence("u1") is None


async def test_the_metrics_count_passes_corrections_and_cometchat_errors(
    app: Client, cometchat: CometChatStandIn
) -> None:
    api = Api(app)
    await api.hook(_online("u1", T0))
    cometchat.offline("u1")
    cometchat.online("u2")
    await _pass(app)
    cometchat.scripts.listing.append(Scripted(401))
    with pytest.raises(ReconcileFailed):
        await _pass(app)

    text = await (await api.get("/metrics")).text()
    for line in (
        'presence_reconcile_runs_total{outcome="completed"} 1.0',
        'presence_reconcile_runs_total{outcome="cometchat_failed"} 1.0',
        'presence_reconcile_corrections_total{direction="offline"} 1.0',
        'presence_reconcile_corrections_total{direction="online"} 1.0',
        'presence_cometchat_errors_total{status="401"} 1.0',
        "presence_reconcile_seconds_count 2.0",
    ):
        assert line in text, line


# --- PRESENCE_CONNECTION_TTL -------------------------------------------------------------------------

TTL = timedelta(minutes=10)
TTL_MS = 600_000


async def test_the_ttl_at_its_boundary(api: Api, database_url: str) -> None:
    """A signal exactly TTL old is still fresh; one millisecond later it is not: the session stops being
    live and, with none left, the user answers offline, ``expired``. The rows are never rewritten."""
    await api.hook(_online("u1", T0, session="s1"))
    await api.hook(_online("u1", T0 + 5_000, session="s2"))
    stored = await state_tables(database_url)
    engine = create_engine(make_settings(database_url))
    try:
        async with engine.connect() as connection:

            async def read(now_ms: int) -> tuple[reads.Presence, int, int]:
                floor = reads.ttl_floor(TTL, ms_to_datetime(now_ms))
                (presence,) = await reads.list_users(
                    connection, status=None, platform=None, after=None, limit=5, floor=floor
                )
                online = len(
                    await reads.list_users(
                        connection, status="online", platform="web", after=None, limit=5, floor=floor
                    )
                )
                counts = await reads.stats(connection, floor)
                assert counts.users_online == online
                return (
                    presence,
                    counts.connections,
                    len(
                        await reads.list_users(
                            connection, status="offline", platform=None, after=None, limit=5, floor=floor
                        )
                    ),
                )

            both, connections, offline = await read(T0 + TTL_MS)
            assert ([c.session_id for c in both.connections], both.status, connections, offline) == (
                ["s1", "s2"],
                "online",
                2,
                0,
            )
            one, connections, offline = await read(T0 + TTL_MS + 1)
            assert ([c.session_id for c in one.connections], one.status, connections, offline) == (
                ["s2"],
                "online",
                1,
                0,
            )
            edge, connections, offline = await read(T0 + 5_000 + TTL_MS)
            assert (edge.status, edge.status_source, connections) == ("online", "webhook", 1)
            gone, connections, offline = await read(T0 + 5_000 + TTL_MS + 1)
            assert (gone.status, gone.status_source, gone.connections, connections, offline) == (
                "offline",
                "expired",
                (),
                0,
                1,
            )
    finally:
        await engine.dispose()
    assert await state_tables(database_url) == stored


async def test_with_a_ttl_a_user_left_with_no_live_session_is_offline_expired_however_recent_its_status(
    api: Api, database_url: str
) -> None:
    """§10: a session with no signal newer than the TTL is no longer live; a user left with none answers
    offline, ``expired``, even when its newest event (here another session's disconnection) is recent."""
    await api.hook(_online("u1", T0, session="old"))
    await api.hook(_online("u1", T0 + 1_000, session="short"))
    await api.hook(
        payloads.connection(
            "u1",
            "disconnected",
            T0 + 300_000,
            payloads.device("short", connected_at=T0 + 1_000),
            status="online",  # still connected elsewhere, as CometChat says; no snapshot names "old" again
        )
    )
    engine = create_engine(make_settings(database_url))
    try:
        async with engine.connect() as connection:
            for now_ms, expected in [
                (T0 + TTL_MS, ("online", "webhook", 1)),
                (T0 + TTL_MS + 1, ("offline", "expired", 0)),
            ]:
                floor = reads.ttl_floor(TTL, ms_to_datetime(now_ms))
                (presence,) = await reads.list_users(
                    connection, status=None, platform=None, after=None, limit=5, floor=floor
                )
                assert (presence.status, presence.status_source, len(presence.connections)) == expected
                by_status = {
                    status: len(
                        await reads.list_users(
                            connection, status=status, platform=None, after=None, limit=5, floor=floor
                        )
                    )
                    for status in ("online", "offline")
                }
                assert by_status == {expected[0]: 1, "offline" if expected[0] == "online" else "online": 0}
                assert (await reads.stats(connection, floor)).users_online == (expected[0] == "online")
    finally:
        await engine.dispose()


async def test_with_a_ttl_a_user_it_expired_whom_cometchat_lists_online_is_corrected_online(
    settings: Settings, cometchat: CometChatStandIn
) -> None:
    """TTL and reconciliation together: the pass compares CometChat with what the API answers (expired),
    not with what is stored (online), and its ``online`` stands for the user over the stale session."""
    async with serving(_configured(settings, cometchat).replace(connection_ttl=TTL)) as app:
        api = Api(app)
        await api.hook(_online("quiet", T0))  # one session, silent for far longer than the TTL
        assert (await api.presence("quiet") or {})["status_source"] == "expired"
        cometchat.online("quiet")

        summary = await _pass(app)

        assert summary.corrected_online == 1
        answer = await api.presence("quiet")
        assert answer is not None
        assert (answer["status"], answer["status_source"], answer["connections"]) == ("online", "reconcile", [])
        assert (await api.get_json("/stats"))["users_online"] == 1
        assert [p["uid"] for p in (await api.get_json("/users?status=online"))["users"]] == ["quiet"]


async def test_the_ttl_through_the_api(settings: Settings) -> None:
    """With a TTL, an old connection answers offline (``expired``) everywhere a presence is shown; a fresh one
    online; without a TTL, the old one stays online, as its webhooks left it."""
    async with serving(settings.replace(connection_ttl=TTL)) as client:
        api = Api(client)
        await api.hook(_online("old", T0))
        await api.hook(_online("new", _now_ms()))
        old = await api.presence("old")
        assert old is not None
        assert (old["status"], old["status_source"], old["connections"]) == ("offline", "expired", [])
        assert (await api.presence("new") or {})["status_source"] == "webhook"
        listed = await api.get_json("/presence?uid=old&uid=new")
        assert [(p["uid"], p["status"]) for p in listed["users"]] == [("old", "offline"), ("new", "online")]
        assert [p["uid"] for p in (await api.get_json("/users?status=online"))["users"]] == ["new"]
        assert (await api.get_json("/stats"))["users_online"] == 1
    async with serving(settings) as client:
        assert (await Api(client).presence("old") or {})["status"] == "online"


# --- settings and the command ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"PRESENCE_COMETCHAT_API_KEY": API_KEY}, "must say where the REST API is"),
        ({"PRESENCE_COMETCHAT_API_KEY": API_KEY, "PRESENCE_COMETCHAT_APP_ID": "abc1"}, "PRESENCE_COMETCHAT_REGION"),
        ({"PRESENCE_COMETCHAT_APP_ID": "abc1", "PRESENCE_COMETCHAT_REGION": "eu"}, "COMETCHAT_API_KEY is not"),
        ({"PRESENCE_RECONCILE_INTERVAL": "5m"}, "PRESENCE_COMETCHAT_API_KEY is not"),
        (
            {
                "PRESENCE_COMETCHAT_API_KEY": API_KEY,
                "PRESENCE_COMETCHAT_API_URL": "ftp://x",
                "PRESENCE_RECONCILE_INTERVAL": "5m",
            },
            "PRESENCE_COMETCHAT_API_URL must be an http",
        ),
        (
            {
                "PRESENCE_COMETCHAT_API_KEY": API_KEY,
                "PRESENCE_COMETCHAT_API_URL": "http://x",
                "PRESENCE_RECONCILE_INTERVAL": "1s",
            },
            "at least 10s",
        ),
    ],
)
def test_bad_reconciliation_settings_fail_with_one_line_that_never_shows_the_key(
    environ: dict[str, str], message: str
) -> None:
    with pytest.raises(SettingsError, match=message) as failed:
        Settings.from_env(environ)
    assert "\n" not in str(failed.value)
    assert API_KEY not in str(failed.value)


def test_reconciliation_settings_parse_with_their_defaults() -> None:
    settings = Settings.from_env(
        {"PRESENCE_COMETCHAT_API_KEY": API_KEY, "PRESENCE_COMETCHAT_APP_ID": "abc1", "PRESENCE_COMETCHAT_REGION": "EU"}
    )
    assert settings.cometchat_url == "https://abc1.api-eu.cometchat.io/v3"
    assert (settings.reconcile_interval, settings.reconcile_grace, settings.connection_ttl) == (
        None,
        timedelta(seconds=60),
        None,
    )
    assert API_KEY not in repr(settings)
    tuned = Settings.from_env(
        {
            "PRESENCE_COMETCHAT_API_KEY": API_KEY,
            "PRESENCE_COMETCHAT_API_URL": "http://127.0.0.1:9/v3/",
            "PRESENCE_RECONCILE_INTERVAL": "5m",
            "PRESENCE_RECONCILE_GRACE": "90s",
            "PRESENCE_CONNECTION_TTL": "2h",
        }
    )
    assert tuned.cometchat_url == "http://127.0.0.1:9/v3"
    assert (tuned.reconcile_interval, tuned.reconcile_grace, tuned.connection_ttl) == (
        timedelta(minutes=5),
        timedelta(seconds=90),
        timedelta(hours=2),
    )
    assert Settings.from_env({"PRESENCE_CONNECTION_TTL": "off"}).connection_ttl is None


async def test_the_reconcile_command_prints_its_summary_and_exits_as_documented(
    cometchat: CometChatStandIn, database_url: str, tmp_path: Path
) -> None:
    async with serving(make_settings(database_url)) as client:
        await Api(client).hook(_online("u1", T0))
    cometchat.offline("u1")
    cometchat.online("u2")
    configured = {"PRESENCE_COMETCHAT_API_URL": cometchat.url, "PRESENCE_COMETCHAT_API_KEY": API_KEY}

    done = await run_presence(["reconcile"], presence_environment(database_url, extra=configured), tmp_path)
    assert done.returncode == 0, done.stderr
    assert "2 users checked: 1 corrected offline, 1 corrected online, 0 unchanged, 0 errors" in done.stdout

    cometchat.scripts.listing.append(Scripted(401))
    refused = await run_presence(["reconcile"], presence_environment(database_url, extra=configured), tmp_path)
    assert refused.returncode == 1
    (line,) = refused.stderr.strip().splitlines()
    assert "refused the REST API key (401)" in line
    assert API_KEY not in refused.stderr + refused.stdout

    unconfigured = await run_presence(["reconcile"], presence_environment(database_url), tmp_path)
    assert unconfigured.returncode == 2
    assert "reconciliation is not configured" in unconfigured.stderr


# --- background passes inside serve ------------------------------------------------------------------


async def test_background_passes_run_on_one_replica_at_a_time(settings: Settings, cometchat: CometChatStandIn) -> None:
    """Two replicas on one database, both with ``PRESENCE_RECONCILE_INTERVAL``: one pass, by one of them."""
    configured = _configured(settings, cometchat).replace(reconcile_interval=timedelta(seconds=30))
    cometchat.offline("u1")
    async with serving(settings) as plain:
        await Api(plain).hook(_online("u1", T0))
    async with serving(configured) as first, serving(configured) as second:
        recorded = asyncio.Event()
        for replica in (first, second):
            replica.app[COMMITTER].on_changes(lambda _seq: recorded.set())
        if (await Api(second).presence("u1") or {}).get("status_source") != "reconcile":
            async with asyncio.timeout(20):
                await recorded.wait()  # the pass's correction committed, on whichever replica ran it
        presence = await Api(second).presence("u1")
        assert presence is not None
        assert (presence["status"], presence["status_source"]) == ("offline", "reconcile")
        engine = first.app[INTAKE_ENGINE]
        now = datetime.now(UTC)
        async with engine.begin() as connection:
            # The next pass is not due: a third replica could not claim it either.
            assert not await reconciling.claim_pass(connection, "another", now=now, next_at=now)
    assert len(cometchat.listings()) == 1
    assert cometchat.lookups() == ["u1"]


async def test_confirmations_beyond_the_pass_budget_wait_for_the_next_pass(
    app: Client, cometchat: CometChatStandIn
) -> None:
    api = Api(app)
    stale = [f"s{i}" for i in range(5)]
    for uid in stale:
        await api.hook(_online(uid, T0))
    cometchat.offline(*stale)

    first = await _pass(app, max_confirmations=2)
    second = await _pass(app, max_confirmations=2)

    assert (first.corrected_offline, first.deferred, second.corrected_offline, second.deferred) == (2, 3, 2, 1)
    assert len(cometchat.lookups()) == 4
    still_online = [uid for uid in stale if (await api.presence(uid) or {})["status"] == "online"]
    assert len(still_online) == 1


async def test_a_slow_answer_within_the_timeout_is_waited_for_and_one_past_it_is_asked_again(
    app: Client, cometchat: CometChatStandIn
) -> None:
    api = Api(app)
    cometchat.online("u1", "u2")
    cometchat.scripts.listing.append(Slow(0.3))

    patient = await _pass(app, request_timeout=5.0)
    assert (patient.corrected_online, patient.errors, patient.requests) == (2, 0, 1)

    await api.hook(_online("u3", T0))
    cometchat.offline("u3")
    cometchat.scripts.user.append(Slow(1.0))
    hasty = await _pass(app, request_timeout=0.2)
    assert (hasty.corrected_offline, hasty.errors) == (1, 1)  # u3, asked again after its timeout
    assert cometchat.lookups() == ["u3", "u3"]
    assert (await api.presence("u3") or {})["status"] == "offline"


async def test_a_pass_stuck_on_cometchat_holds_up_neither_intake_nor_queries(
    app: Client, cometchat: CometChatStandIn
) -> None:
    api = Api(app)
    await api.hook(_online("u1", T0))
    cometchat.offline("u1")
    cometchat.scripts.listing.append("hang")
    stuck = asyncio.create_task(_pass(app, request_timeout=60.0))
    try:
        async with asyncio.timeout(10):
            await cometchat.hanging.wait()
        await api.hook(_online("u2", T0))  # committed while the pass waits for CometChat
        assert (await api.presence("u2") or {})["status"] == "online"
        assert (await api.get_json("/stats"))["users_online"] == 2
        assert not stuck.done()
    finally:
        stuck.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await stuck
    assert (await api.presence("u1") or {})["status_source"] == "webhook"  # cut short: nothing changed
