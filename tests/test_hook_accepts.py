"""What ``POST /hook`` accepts and how it acknowledges it (contract §2)."""

from __future__ import annotations

import io
from datetime import timedelta
from typing import Any

import orjson
import pytest

from presence.db.models import InboxEvent
from presence.settings import Settings
from tests.support import payloads, samples
from tests.support.api import HOOK_AUTH, Api, serving
from tests.support.oracle import NOTHING_CURRENT
from tests.support.state import dump, inbox_count, state_tables

CONVERSATION = "u-1_user_u-2"


async def inbox(database_url: str) -> list[dict[str, Any]]:
    """The inbox rows, oldest first, by column name."""
    columns = [column.name for column in InboxEvent.__table__.columns]
    rows = [dict(zip(columns, row, strict=True)) for row in (await dump(database_url))["inbox_event"]]
    return sorted(rows, key=lambda row: row["id"])


def empty_state(tables: dict[str, list[tuple[Any, ...]]]) -> bool:
    return all(rows == [] for rows in tables.values())


async def test_an_unknown_trigger_is_ignored_and_kept(api: Api, database_url: str) -> None:
    """§2: an unknown trigger is 200 ignored, kept in the inbox, and changes no state."""
    body = {"trigger": "after_user_created", "appId": payloads.APP_ID, "data": {"user": {"uid": "u-1"}}}

    assert await api.hook(body) == {"status": "ignored"}

    rows = await inbox(database_url)
    assert [row["trigger"] for row in rows] == ["after_user_created"]
    assert orjson.loads(rows[0]["body"]) == body
    assert empty_state(await state_tables(database_url))
    assert await api.presence("u-1") is None


@pytest.mark.parametrize("category", ["action", "call"])
async def test_an_untracked_message_category_is_ignored_kept_and_not_a_message(
    api: Api, database_url: str, category: str
) -> None:
    """§2: an after_message of category action or call is 200 ignored, kept, and its id stays unknown."""
    body = payloads.message(57, CONVERSATION, "u-2", receiver="u-1", category=category)

    assert await api.hook(body) == {"status": "ignored"}

    rows = await inbox(database_url)
    assert [row["trigger"] for row in rows] == ["after_message"]
    assert orjson.loads(rows[0]["body"])["data"]["category"] == category
    assert empty_state(await state_tables(database_url))
    assert await api.receipts("57") is None


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(payloads.message(57, CONVERSATION, "u-2", receiver="u-1"), id="after_message"),
        pytest.param(payloads.message(57, CONVERSATION, "u-2", receiver="u-1", category="custom"), id="custom"),
        pytest.param(samples.BEFORE_MESSAGE, id="before_message"),
        pytest.param(samples.CONNECTION_STATUS_CHANGED, id="connection"),
        pytest.param(samples.DELIVERY_RECEIPT, id="delivery"),
        pytest.param(samples.READ_RECEIPT, id="read"),
    ],
)
async def test_a_tracked_event_is_accepted_and_kept(api: Api, database_url: str, body: dict[str, Any]) -> None:
    """§2: an event the service acts on is 200 accepted, with one inbox row of its trigger."""
    assert await api.hook(body) == {"status": "accepted"}

    assert [row["trigger"] for row in await inbox(database_url)] == [body["trigger"]]


async def test_a_tracked_message_becomes_known(api: Api) -> None:
    """§2, §4: an accepted after_message makes its id known, with its conversation and sender."""
    assert await api.hook(payloads.message(57, CONVERSATION, "u-2", receiver="u-1")) == {"status": "accepted"}

    assert await api.receipts("57") == {
        "message_id": "57",
        "conversation_id": CONVERSATION,
        "sender": "u-2",
        "receipts": [],
        "delivered_count": 0,
        "read_count": 0,
        **NOTHING_CURRENT,
    }


@pytest.mark.parametrize(
    "content_type",
    [
        pytest.param(None, id="missing"),
        pytest.param("text/plain", id="text/plain"),
        pytest.param("Application/json", id="Application/json"),
        pytest.param("application/octet-stream", id="application/octet-stream"),
        pytest.param("application/x-www-form-urlencoded", id="form"),
        pytest.param("multipart/form-data; boundary=x", id="multipart"),
    ],
)
async def test_the_content_type_is_not_trusted(api: Api, content_type: str | None) -> None:
    """§2: whatever the Content-Type, or none, the body is parsed as JSON."""
    body = payloads.connection("u-1", "connected", 1_763_720_130_123, payloads.device("s-1"))
    headers = {"Authorization": HOOK_AUTH}
    if content_type is not None:
        headers["Content-Type"] = content_type

    response = await api.client.post(
        "/hook", data=orjson.dumps(body), headers=headers, skip_auto_headers=["Content-Type"]
    )

    assert response.status == 200, await response.text()
    assert await response.json() == {"status": "accepted"}
    presence = await api.presence("u-1")
    assert presence is not None
    assert presence["status"] == "online"


EVENTS = [
    payloads.connection(
        "u-1",
        "connected",
        1_763_720_130_123,
        payloads.device("s-1"),
        connections=[payloads.device("s-1"), payloads.device("s-0")],
    ),
    payloads.connection("u-1", "disconnected", 1_763_720_140_000, payloads.device("s-0")),
    payloads.message(57, CONVERSATION, "u-2", receiver="u-1"),
    payloads.receipt("delivered", 57, reader="u-1", message_sender="u-2", at=1_763_720_131, receiver="u-2"),
    payloads.receipt("read", 57, reader="u-1", message_sender="u-2", at=1_763_720_135, receiver="u-2"),
    payloads.receipt(
        "read", 58, reader="u-3", message_sender="u-2", at=1_763_720_136, receiver="g-1", receiver_type="group"
    ),
    {"trigger": "after_user_created", "data": {"uid": "u-4"}},
]


async def test_a_repeated_delivery_is_kept_twice_but_counts_once(api: Api, database_url: str) -> None:
    """§2: every delivery is kept in the inbox, but posting an event again leaves the state as once."""
    for body in EVENTS:
        await api.hook(body)
    once = await state_tables(database_url)
    answers_once = (await api.presence("u-1"), await api.receipts("57"), await api.receipts("58"))

    for body in EVENTS:
        await api.hook(body)

    assert await inbox_count(database_url) == 2 * len(EVENTS)
    assert await state_tables(database_url) == once
    assert (await api.presence("u-1"), await api.receipts("57"), await api.receipts("58")) == answers_once
    assert not empty_state(once)


@pytest.mark.parametrize("form", [int, str], ids=["number", "numeric string"])
async def test_connection_times_as_numbers_or_numeric_strings_read_alike(api: Api, form: type) -> None:
    """§2: a connection time may arrive as a number or a numeric string, with the same answer."""
    at, connected_at = 1_763_720_130_123, 1_763_720_100_000
    session = payloads.device("s-1", connected_at=form(connected_at), device_id="d-1")
    body = payloads.connection("u-1", "connected", form(at), session, connections=[session])

    await api.hook(body)

    assert await api.presence("u-1") == {
        "uid": "u-1",
        "status": "online",
        "status_updated_at": "2025-11-21T10:15:30.123Z",
        "last_seen_at": "2025-11-21T10:15:30.123Z",
        "status_source": "webhook",
        "connections": [
            {"session_id": "s-1", "device_id": "d-1", "platform": "web", "connected_at": "2025-11-21T10:15:00.000Z"}
        ],
    }


@pytest.mark.parametrize("form", [int, str], ids=["number", "numeric string"])
async def test_receipt_times_as_numbers_or_numeric_strings_read_alike(api: Api, form: type) -> None:
    """§2: a receipt time may arrive as a number or a numeric string, with the same answer."""
    await api.hook(payloads.message(57, CONVERSATION, "u-2", receiver="u-1"))
    await api.hook(
        payloads.receipt("delivered", 57, reader="u-1", message_sender="u-2", at=form(1_673_017_183), receiver="u-2")
    )
    await api.hook(
        payloads.receipt("read", 57, reader="u-1", message_sender="u-2", at=form(1_673_017_190), receiver="u-2")
    )

    receipts = await api.receipts("57")

    assert receipts is not None
    assert receipts["receipts"] == [
        {"uid": "u-1", "delivered_at": "2023-01-06T14:59:43.000Z", "read_at": "2023-01-06T14:59:50.000Z"}
    ]


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        pytest.param(1_763_720_130, "2025-11-21T10:15:30.000Z", id="seconds"),
        pytest.param("1763720130", "2025-11-21T10:15:30.000Z", id="seconds as a string"),
        pytest.param(1_763_720_130.25, "2025-11-21T10:15:30.250Z", id="fractional seconds"),
        pytest.param("1763720130.25", "2025-11-21T10:15:30.250Z", id="fractional seconds as a string"),
        pytest.param(10**11, "5138-11-16T09:46:40.000Z", id="10^11 is still seconds"),
        pytest.param(10**11 + 1, "1973-03-03T09:46:40.001Z", id="above 10^11 is milliseconds"),
    ],
)
async def test_a_connection_time_at_or_below_10_11_is_seconds(settings: Settings, at: Any, expected: str) -> None:
    """§2: connection events carry milliseconds, but a value at or below 10^11 is read as seconds.

    10^11 seconds is in the year 5138: the clock skew allowed is widened to let it in."""
    session = payloads.device("s-1", connected_at=at)
    async with serving(settings.replace(max_clock_skew=timedelta(days=1_300_000))) as client:
        api = Api(client)
        await api.hook(payloads.connection("u-1", "connected", at, session, connections=[session]))
        presence = await api.presence("u-1")
    assert presence is not None
    assert presence["last_seen_at"] == expected
    assert presence["status_updated_at"] == expected
    assert [c["connected_at"] for c in presence["connections"]] == [expected]


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        pytest.param(1_673_017_190_123, "2023-01-06T14:59:50.123Z", id="milliseconds"),
        pytest.param("1673017190123", "2023-01-06T14:59:50.123Z", id="milliseconds as a string"),
        pytest.param(1_673_017_190, "2023-01-06T14:59:50.000Z", id="seconds"),
    ],
)
@pytest.mark.parametrize("kind", ["delivered", "read"])
async def test_a_receipt_time_above_10_11_is_milliseconds(api: Api, kind: str, at: int | str, expected: str) -> None:
    """§2: receipts carry seconds, but a value above 10^11 is read as milliseconds."""
    await api.hook(payloads.message(57, CONVERSATION, "u-2", receiver="u-1"))

    await api.hook(payloads.receipt(kind, 57, reader="u-1", message_sender="u-2", at=at, receiver="u-2"))

    receipts = await api.receipts("57")
    assert receipts is not None
    [receipt] = receipts["receipts"]
    assert receipt["delivered_at"] == expected  # reading implies delivery
    assert receipt["read_at"] == (expected if kind == "read" else None)


async def test_a_body_of_exactly_the_limit_is_accepted(api: Api, database_url: str) -> None:
    """§2: only a body over the limit (default 1 MiB) is refused; one of exactly 1 MiB is taken."""
    empty = orjson.dumps({"trigger": "padding_test", "pad": ""})
    body = orjson.dumps({"trigger": "padding_test", "pad": "x" * (1024 * 1024 - len(empty))})
    assert len(body) == 1024 * 1024
    headers = {"Authorization": HOOK_AUTH, "Content-Type": "Application/json"}

    # A stream: aiohttp's client warns about raw bytes over 1 MiB.
    response = await api.client.post("/hook", data=io.BytesIO(body), headers=headers)

    assert response.status == 200, await response.text()
    assert await response.json() == {"status": "ignored"}
    assert [row["trigger"] for row in await inbox(database_url)] == ["padding_test"]
