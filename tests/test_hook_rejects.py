"""Bad input is refused with the error shape and changes nothing (contract §2, §5).

Every rejection is posted against a database that already holds state, and the
whole database (inbox included) is compared before and after.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import gzip
import io
import logging
import re
import sys
import time
import zlib
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import brotli  # type: ignore[import-untyped]
import orjson
import pytest
import pytest_asyncio
from aiohttp import ClientResponse
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.ext.asyncio import AsyncEngine

from presence.db.models import InboxEvent
from presence.settings import Settings
from tests.support import payloads, samples
from tests.support.api import API_AUTH, HOOK_AUTH, HOOK_PASSWORD, HOOK_USERNAME, Api, serving
from tests.support.openapi_check import check_client_response
from tests.support.state import dump

CONNECTED_AT = 1_763_720_130_123
CONNECTION = payloads.connection(
    "u-1", "connected", CONNECTED_AT, payloads.device("s-1"), connections=[payloads.device("s-1")]
)
LEGACY_CONNECTION = {**CONNECTION, "trigger": "user_connection_status_change"}
MESSAGE = payloads.message(57, "u-1_user_u-2", "u-2", receiver="u-1")
DELIVERY = payloads.receipt("delivered", 57, reader="u-1", message_sender="u-2", at=1_763_720_131, receiver="u-2")
READ = payloads.receipt("read", 57, reader="u-1", message_sender="u-2", at=1_763_720_132, receiver="u-2")
GROUP_READ = payloads.receipt(
    "read", 58, reader="u-1", message_sender="u-2", at=1_763_720_133, receiver="g-1", receiver_type="group"
)
BEFORE_MESSAGE = samples.BEFORE_MESSAGE

#: Every well-formed body that the rejected ones below are spoiled copies of.
BASES: dict[str, dict[str, Any]] = {
    "connection": CONNECTION,
    "legacy_connection": LEGACY_CONNECTION,
    "message": MESSAGE,
    "delivery": DELIVERY,
    "read": READ,
    "group_read": GROUP_READ,
    "before_message": BEFORE_MESSAGE,
}

#: Where the trigger is in a row of ``dump(...)["inbox_event"]``.
INBOX_TRIGGER = [column.name for column in InboxEvent.__table__.columns].index("trigger")
SNAKE_CASE = re.compile(r"[a-z]+(_[a-z0-9]+)*")
BASIC_CHALLENGE = 'Basic realm="presence"'


def basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def without(body: dict[str, Any], *path: str | int) -> dict[str, Any]:
    """A copy of ``body`` with the value at ``path`` removed."""
    spoiled = copy.deepcopy(body)
    parent: Any = spoiled
    for step in path[:-1]:
        parent = parent[step]
    del parent[path[-1]]
    return spoiled


def replaced(body: dict[str, Any], value: object, *path: str | int) -> dict[str, Any]:
    """A copy of ``body`` with the value at ``path`` set to ``value``."""
    spoiled = copy.deepcopy(body)
    parent: Any = spoiled
    for step in path[:-1]:
        parent = parent[step]
    parent[path[-1]] = value
    return spoiled


def _connection_cases(name: str, base: dict[str, Any]) -> list[Any]:
    """Missing and mistyped required fields of one connection trigger."""
    cases = [
        (without(base, "data"), "data missing"),
        (replaced(base, [], "data"), "data a list"),
        (without(base, "data", "user"), "data.user missing"),
        (without(base, "data", "user", "uid"), "data.user.uid missing"),
        (replaced(base, 42, "data", "user", "uid"), "data.user.uid a number"),
        (replaced(base, "", "data", "user", "uid"), "data.user.uid empty"),
        (replaced(base, "u\x00-1", "data", "user", "uid"), "data.user.uid with NUL"),
        (replaced(base, "u" * 256, "data", "user", "uid"), "data.user.uid too long"),
        (without(base, "data", "user", "status"), "data.user.status missing"),
        (replaced(base, "soon", "data", "user", "status_updated_at"), "data.user.status_updated_at soon"),
        (without(base, "data", "event"), "data.event missing"),
        (without(base, "data", "event", "type"), "data.event.type missing"),
        (replaced(base, "paused", "data", "event", "type"), "data.event.type paused"),
        (without(base, "data", "event", "at"), "data.event.at missing"),
        (replaced(base, "soon", "data", "event", "at"), "data.event.at soon"),
        (replaced(base, -1, "data", "event", "at"), "data.event.at negative"),
        (replaced(base, "-1763720130123", "data", "event", "at"), "data.event.at negative string"),
        (replaced(base, True, "data", "event", "at"), "data.event.at boolean"),
        (replaced(base, 1e300, "data", "event", "at"), "data.event.at beyond year 9999"),
        (replaced(base, [CONNECTED_AT], "data", "event", "at"), "data.event.at a list"),
        (without(base, "data", "event", "event_for"), "data.event.event_for missing"),
        (without(base, "data", "event", "event_for", "session_id"), "data.event.event_for.session_id missing"),
        (replaced(base, {"s-1": {}}, "data", "connections"), "data.connections an object"),
        (replaced(base, "s-1", "data", "connections"), "data.connections a string"),
        (without(base, "data", "connections", 0, "session_id"), "data.connections[0].session_id missing"),
        (replaced(base, "s-1", "data", "connections", 0), "data.connections[0] a string"),
        (replaced(base, "soon", "data", "connections", 0, "connected_at"), "data.connections[0].connected_at soon"),
    ]
    return [pytest.param(body, "invalid_event", id=f"{name}: {label}") for body, label in cases]


def _message_cases() -> list[Any]:
    cases = [
        (without(MESSAGE, "data"), "data missing"),
        (without(MESSAGE, "data", "id"), "data.id missing"),
        (replaced(MESSAGE, "abc", "data", "id"), "data.id abc"),
        (replaced(MESSAGE, 1.5, "data", "id"), "data.id 1.5"),
        (replaced(MESSAGE, "1.5", "data", "id"), "data.id '1.5'"),
        (replaced(MESSAGE, True, "data", "id"), "data.id boolean"),
        (replaced(MESSAGE, "-57", "data", "id"), "data.id negative"),
        (replaced(MESSAGE, str(2**63), "data", "id"), "data.id beyond 64 bits"),
        (without(MESSAGE, "data", "conversationId"), "data.conversationId missing"),
        (replaced(MESSAGE, 5, "data", "conversationId"), "data.conversationId a number"),
        (replaced(MESSAGE, 5, "data", "sender"), "data.sender a number"),
        (replaced(MESSAGE, "u\x00-2", "data", "sender"), "data.sender with NUL"),
        (replaced(MESSAGE, "soon", "data", "sentAt"), "data.sentAt soon"),
    ]
    return [pytest.param(body, "invalid_event", id=f"after_message: {label}") for body, label in cases]


def _receipt_cases(name: str, base: dict[str, Any], time_field: str) -> list[Any]:
    cases = [
        (without(base, "data"), "data missing"),
        (without(base, "data", "messageId"), "data.messageId missing"),
        (replaced(base, "abc", "data", "messageId"), "data.messageId abc"),
        (replaced(base, 1.5, "data", "messageId"), "data.messageId 1.5"),
        (without(base, "data", "receiptSender"), "data.receiptSender missing"),
        (replaced(base, "u\x00-1", "data", "receiptSender"), "data.receiptSender with NUL"),
        (without(base, "data", "receiverType"), "data.receiverType missing"),
        (replaced(base, "channel", "data", "receiverType"), "data.receiverType channel"),
        (without(base, "data", "messageSender"), "user receipt without messageSender"),
        (without(replaced(base, "group", "data", "receiverType"), "data", "receiptReceiver"), "group without guid"),
        (without(base, "data", time_field), f"data.{time_field} missing"),
        (replaced(base, "soon", "data", time_field), f"data.{time_field} soon"),
        (replaced(base, -1_763_720_131, "data", time_field), f"data.{time_field} negative"),
        (replaced(base, False, "data", time_field), f"data.{time_field} boolean"),
        (replaced(base, None, "data", time_field), f"data.{time_field} null"),
        # Two uids of 255 characters make a 516-character conversation id: refused alike on every
        # backend, rather than stored by SQLite and refused by PostgreSQL's 512-character column.
        (
            replaced(replaced(base, "r" * 255, "data", "receiptSender"), "s" * 255, "data", "messageSender"),
            "a conversation id of two longest uids",
        ),
    ]
    return [pytest.param(body, "invalid_event", id=f"{name}: {label}") for body, label in cases]


MALFORMED_BODIES = [
    pytest.param(b"not json", "invalid_json", id="not JSON"),
    pytest.param(b"", "invalid_json", id="empty body"),
    pytest.param(b'{"trigger": "after_message",}', "invalid_json", id="trailing comma"),
    pytest.param(b'{"trigger": NaN}', "invalid_json", id="NaN"),
    pytest.param(b"[" * 100_000 + b"]" * 100_000, "invalid_json", id="array nested 100000 deep"),
    pytest.param(b'{"a":' * 100_000 + b"1" + b"}" * 100_000, "invalid_json", id="object nested 100000 deep"),
    pytest.param(b'{"trigger": "x", "a":' * 1_000 + b"1" + b"}" * 1_000, "invalid_body", id="object nested 1000 deep"),
    pytest.param(b'{"trigger": "after_message", "data": "\xff\xfe"}', "invalid_json", id="invalid UTF-8"),
    pytest.param(b"\xef\xbb\xbf\xff", "invalid_json", id="BOM then invalid UTF-8"),
    pytest.param(b'[{"trigger": "after_message"}]', "invalid_body", id="a JSON array"),
    pytest.param(b"[]", "invalid_body", id="an empty JSON array"),
    pytest.param(b'"after_message"', "invalid_body", id="a JSON string"),
    pytest.param(b"57", "invalid_body", id="a JSON number"),
    pytest.param(b"null", "invalid_body", id="JSON null"),
    pytest.param(b"true", "invalid_body", id="JSON true"),
    pytest.param(orjson.dumps({"data": MESSAGE["data"]}), "invalid_event", id="trigger missing"),
    pytest.param(orjson.dumps({**MESSAGE, "trigger": 5}), "invalid_event", id="trigger a number"),
    pytest.param(orjson.dumps({**MESSAGE, "trigger": None}), "invalid_event", id="trigger null"),
    pytest.param(orjson.dumps({**MESSAGE, "trigger": ["after_message"]}), "invalid_event", id="trigger a list"),
    pytest.param(orjson.dumps({**MESSAGE, "trigger": ""}), "invalid_event", id="trigger empty"),
    pytest.param(orjson.dumps({**MESSAGE, "trigger": "t" * 101}), "invalid_event", id="trigger too long"),
]

INVALID_EVENTS = [
    *_connection_cases("after_connection_status_changed", CONNECTION),
    *_connection_cases("user_connection_status_change", LEGACY_CONNECTION),
    *_message_cases(),
    *_receipt_cases("message_delivery_receipt", DELIVERY, "deliveredAt"),
    *_receipt_cases("message_read_receipt", READ, "readAt"),
    pytest.param(without(GROUP_READ, "data", "receiptReceiver"), "invalid_event", id="group read without guid"),
    pytest.param(without(BEFORE_MESSAGE, "data"), "invalid_event", id="before_message: data missing"),
    pytest.param(replaced(BEFORE_MESSAGE, "hi", "data"), "invalid_event", id="before_message: data a string"),
    pytest.param(replaced(BEFORE_MESSAGE, None, "data"), "invalid_event", id="before_message: data null"),
]


async def assert_error(response: ClientResponse, status: int, code: str) -> dict[str, Any]:
    """``response`` has ``status`` and the error shape of §5 with ``code``."""
    assert response.content_type == "application/json"
    payload = await response.json()
    assert response.status == status, payload
    assert set(payload) == {"error"}, payload
    assert set(payload["error"]) == {"code", "message"}, payload
    assert SNAKE_CASE.fullmatch(payload["error"]["code"]), payload
    assert payload["error"]["code"] == code, payload
    assert isinstance(payload["error"]["message"], str), payload
    assert payload["error"]["message"], payload
    return payload  # type: ignore[no-any-return]


async def seed(api: Api) -> Api:
    """The API over a database that already holds a user, a message and receipts."""
    for body in (CONNECTION, MESSAGE, DELIVERY, READ, GROUP_READ):
        await api.hook(body)
    return api


@pytest.fixture
async def seeded(api: Api) -> Api:
    return await seed(api)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared_seeded(module_api: Api) -> Api:
    """:func:`seeded`, once per backend for the module's many cases of one refusal (tests/conftest.py)."""
    return await seed(module_api)


@pytest.mark.parametrize("name", list(BASES))
async def test_the_unspoiled_bodies_are_accepted(api: Api, name: str) -> None:
    """The bodies the rejected cases are spoiled from are themselves accepted (so the spoiling is what fails)."""
    assert await api.hook(BASES[name]) == {"status": "accepted"}


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize(("body", "code"), MALFORMED_BODIES)
async def test_a_body_that_is_not_one_json_object_with_a_trigger_is_400(
    shared_seeded: Api, module_engine: AsyncEngine, body: bytes, code: str
) -> None:
    """§2: not JSON, not an object, no usable trigger: 400 with the error shape, nothing changed."""
    before = await dump(module_engine)

    await assert_error(await shared_seeded.post_hook(body), 400, code)

    assert await dump(module_engine) == before


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param(b"", "the body is empty", id="empty"),
        pytest.param(b" \r\n\t", "the body is empty", id="only whitespace"),
        pytest.param(
            b'{\n  "trigger": "after_message",\n}',
            "the body is not valid JSON: trailing comma is not allowed at line 2, column 29 (byte 30)",
            id="trailing comma",
        ),
        pytest.param(
            '{"uid": "élise", x}'.encode(),
            "the body is not valid JSON: unexpected character, expected a string key at line 1, column 18 (byte 18)",
            id="after a two-byte character: the column counts characters, the byte offset bytes",
        ),
        pytest.param(
            b'{"trigger": "after_message",\n "data": "\xff\xfe"}',
            "the body is not valid UTF-8 at line 2, column 11 (byte 39)",
            id="invalid UTF-8",
        ),
    ],
)
async def test_invalid_json_says_where_the_body_breaks(seeded: Api, body: bytes, message: str) -> None:
    """§2: ``invalid_json`` names the line, column and byte where parsing stopped, or says the body is empty."""
    payload = await assert_error(await seeded.post_hook(body), 400, "invalid_json")

    assert payload["error"]["message"] == message


async def test_a_documented_sample_posted_verbatim_is_refused_at_its_trailing_comma(
    seeded: Api, database_url: str
) -> None:
    """§2: CometChat's documented ``after_message`` sample carries a trailing comma; posted as
    documented, it is 400 ``invalid_json`` pointing at that comma, and nothing changes."""
    before = await dump(database_url)
    comma_line = samples.AFTER_MESSAGE_AS_DOCUMENTED.splitlines()[36]
    assert comma_line.rstrip().endswith(b"1586435925,")  # line 37, column 32: the comma itself
    assert len(comma_line) == 32

    payload = await assert_error(await seeded.post_hook(samples.AFTER_MESSAGE_AS_DOCUMENTED), 400, "invalid_json")

    assert payload["error"]["message"] == (
        "the body is not valid JSON: trailing comma is not allowed at line 37, column 32 (byte 1329)"
    )
    assert await dump(database_url) == before


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize(("body", "code"), INVALID_EVENTS)
async def test_a_known_trigger_with_a_missing_or_mistyped_field_is_400(
    shared_seeded: Api, module_engine: AsyncEngine, body: dict[str, Any], code: str
) -> None:
    """§2: a known trigger with a missing or mistyped required field: 400 with the error shape, nothing changed."""
    before = await dump(module_engine)

    await assert_error(await shared_seeded.post_hook(body), 400, code)

    assert await dump(module_engine) == before


@pytest.mark.parametrize("trigger", ["after_message\x00", "unknown\x00trigger"])
async def test_a_trigger_with_nul_is_ignored_or_refused_never_5xx(seeded: Api, database_url: str, trigger: str) -> None:
    """§2: a trigger naming nothing known, with a NUL in it: 200 ignored and kept, or 400 and nothing changed.

    Either answer keeps the contract; a 503 would have CometChat retry forever an event no retry can store.
    """
    before = await dump(database_url)

    response = await seeded.post_hook({"trigger": trigger, "data": {}})

    if response.status == 200:
        assert await response.json() == {"status": "ignored"}
        after = await dump(database_url)
        assert len(after["inbox_event"]) == len(before["inbox_event"]) + 1
        assert trigger in [row[INBOX_TRIGGER] for row in after["inbox_event"]]
        assert {k: v for k, v in after.items() if k != "inbox_event"} == {
            k: v for k, v in before.items() if k != "inbox_event"
        }
    else:
        await assert_error(response, 400, "invalid_event")
        assert await dump(database_url) == before


def padded(size: int) -> bytes:
    """A JSON object of an unknown trigger, exactly ``size`` bytes long."""
    empty = orjson.dumps({"trigger": "padding_test", "pad": ""})
    body = orjson.dumps({"trigger": "padding_test", "pad": "x" * (size - len(empty))})
    assert len(body) == size
    return body


async def post_large(api: Api, body: bytes) -> ClientResponse:
    """Post ``body`` as a stream: aiohttp's client warns about raw bytes over 1 MiB."""
    headers = {"Authorization": HOOK_AUTH, "Content-Type": "Application/json"}
    return await api.client.post("/hook", data=io.BytesIO(body), headers=headers)


async def test_a_body_over_the_default_limit_is_413(seeded: Api, database_url: str) -> None:
    """§2: a body of 1 MiB + 1 bytes is refused with 413 payload_too_large; nothing changed."""
    before = await dump(database_url)

    await assert_error(await post_large(seeded, padded(1024 * 1024 + 1)), 413, "payload_too_large")

    assert await dump(database_url) == before


async def test_a_configured_body_limit_is_honoured(settings: Settings, database_url: str) -> None:
    """§2: PRESENCE_MAX_BODY_BYTES sets the limit: one byte over it is 413, the limit itself is accepted."""
    async with serving(settings.replace(max_body_bytes=4096)) as client:
        api = Api(client)
        before = await dump(database_url)

        await assert_error(await api.post_hook(padded(4097)), 413, "payload_too_large")
        assert await dump(database_url) == before

        assert await api.hook(padded(4096)) == {"status": "ignored"}


WRONG_CREDENTIALS = [
    pytest.param(basic(HOOK_USERNAME, "wrong-secret"), id="wrong password"),
    pytest.param(basic("someone-else", HOOK_PASSWORD), id="wrong username"),
    pytest.param(basic(HOOK_USERNAME, HOOK_PASSWORD + "x"), id="password with a suffix"),
    pytest.param(basic(HOOK_USERNAME, ""), id="empty password"),
    pytest.param(None, id="missing Authorization"),
    pytest.param("", id="empty Authorization"),
    pytest.param(API_AUTH, id="the API's Bearer token"),
    pytest.param("Bearer " + HOOK_AUTH.removeprefix("Basic "), id="Bearer with the Basic credentials"),
    pytest.param("Basic !!!not-base64!!!", id="malformed base64"),
    pytest.param("Basic " + base64.b64encode(HOOK_USERNAME.encode()).decode(), id="no colon"),
    pytest.param("Basic " + base64.b64encode(b"\xff\xfe:\xff").decode(), id="credentials not UTF-8"),
    pytest.param("Basic", id="Basic without credentials"),
    pytest.param(HOOK_AUTH.removeprefix("Basic "), id="credentials without a scheme"),
]


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("authorization", WRONG_CREDENTIALS)
async def test_hook_without_the_right_basic_credentials_is_401(
    shared_seeded: Api, module_engine: AsyncEngine, authorization: str | None
) -> None:
    """§2: a missing or wrong Authorization is 401 with the Basic challenge; a valid body is not stored."""
    before = await dump(module_engine)
    body = payloads.connection("u-9", "connected", CONNECTED_AT, payloads.device("s-9"))

    response = await shared_seeded.post_hook(body, authorization=authorization)

    await assert_error(response, 401, "unauthorized")
    assert response.headers["WWW-Authenticate"] == BASIC_CHALLENGE
    assert await dump(module_engine) == before
    assert await shared_seeded.presence("u-9") is None


async def test_hook_checks_credentials_before_the_body(seeded: Api, database_url: str) -> None:
    """§2: a bad body with wrong credentials is 401, not 400: nothing about the body is revealed."""
    before = await dump(database_url)

    response = await seeded.post_hook(b"not json", authorization=basic(HOOK_USERNAME, "wrong"))

    await assert_error(response, 401, "unauthorized")
    assert response.headers["WWW-Authenticate"] == BASIC_CHALLENGE
    assert await dump(database_url) == before


QUERY_PATHS = ["/users/u-1/presence", "/messages/57/receipts"]
WRONG_TOKENS = [
    pytest.param(None, id="missing token"),
    pytest.param("Bearer wrong-token", id="wrong token"),
    pytest.param("Bearer api-token-and-more", id="token with a suffix"),
    pytest.param("Bearer ", id="empty token"),
    pytest.param(HOOK_AUTH, id="the hook's Basic credentials"),
    pytest.param("Basic " + base64.b64encode(b"api-token:").decode(), id="the token as Basic"),
    pytest.param("api-token", id="token without a scheme"),
]


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("path", QUERY_PATHS)
@pytest.mark.parametrize("authorization", WRONG_TOKENS)
async def test_query_api_without_a_valid_bearer_token_is_401(
    shared_seeded: Api, path: str, authorization: str | None
) -> None:
    """§5: the query API needs one of the configured bearer tokens; otherwise 401 with the error shape."""
    assert (await shared_seeded.get(path)).status == 200  # the resource exists: the 401 is about the token

    await assert_error(await shared_seeded.get(path, authorization=authorization), 401, "unauthorized")


@pytest.mark.parametrize("path", QUERY_PATHS)
async def test_every_configured_token_is_accepted(seeded: Api, path: str) -> None:
    """§5: the second of PRESENCE_API_TOKENS works as well as the first, with the same answer."""
    first = await seeded.get(path)
    second = await seeded.get(path, authorization="Bearer second-token")

    assert second.status == 200
    assert first.status == 200
    assert await second.json() == await first.json()


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("/users/u%001/presence", id="uid with NUL"),
        pytest.param("/users/" + "u" * 300 + "/presence", id="uid longer than any stored"),
        pytest.param("/users/%FF/presence", id="uid not UTF-8"),
        pytest.param("/messages/5%007/receipts", id="message id with NUL"),
        pytest.param("/messages/abc/receipts", id="message id not a number"),
        pytest.param("/messages/-57/receipts", id="negative message id"),
        pytest.param("/messages/99999999999999999999/receipts", id="message id beyond 64 bits"),
    ],
)
async def test_a_path_no_event_could_have_named_is_404_never_500(seeded: Api, path: str) -> None:
    """§3, §4, §5: a uid or message id that can never have been stored is 404 with the error shape, not a 500."""
    await assert_error(await seeded.get(path), 404, "not_found")


async def test_an_unknown_route_is_404_with_the_error_shape(seeded: Api) -> None:
    """§5: every error is JSON, a route that does not exist too."""
    await assert_error(await seeded.get("/no/such/route"), 404, "not_found")


async def test_get_on_the_hook_is_405_with_the_error_shape(seeded: Api) -> None:
    """§5: every error is JSON, a method the route does not take too; Allow names POST."""
    response = await seeded.client.get("/hook", headers={"Authorization": HOOK_AUTH})

    await assert_error(response, 405, "method_not_allowed")
    assert "POST" in response.headers["Allow"]


#: 9999-12-31, the last instant a timestamp column holds: a clock gone wrong, or an attack.
FAR_FUTURE_MS = 253_402_300_799_000
#: The year 5138 in seconds, as receipts carry them (a value above 10^11 would be read as milliseconds).
FAR_FUTURE_S = 99_999_999_999


def _now_ms() -> int:
    return int(time.time() * 1000)


FAR_AHEAD = [
    pytest.param(replaced(CONNECTION, FAR_FUTURE_MS, "data", "event", "at"), "data.event.at", id="connected in 9999"),
    pytest.param(
        replaced(CONNECTION, FAR_FUTURE_MS, "data", "user", "status_updated_at"),
        "data.user.status_updated_at",
        id="status updated in 9999",
    ),
    pytest.param(
        replaced(CONNECTION, FAR_FUTURE_MS, "data", "connections", 0, "connected_at"),
        "data.connections[].connected_at",
        id="a snapshot session connected in 9999",
    ),
    pytest.param(replaced(MESSAGE, FAR_FUTURE_S, "data", "sentAt"), "data.sentAt", id="sent in 5138"),
    pytest.param(replaced(READ, FAR_FUTURE_S, "data", "readAt"), "data.readAt", id="read in 5138"),
    pytest.param(replaced(DELIVERY, FAR_FUTURE_S, "data", "deliveredAt"), "data.deliveredAt", id="delivered in 5138"),
]


@pytest.mark.parametrize(("body", "field"), FAR_AHEAD)
async def test_an_event_dated_far_ahead_of_its_arrival_is_400_naming_the_field(
    seeded: Api, database_url: str, body: dict[str, Any], field: str
) -> None:
    """A `connected` dated 9999 would be the newest event for ever, and keep its user online after every
    real `disconnected`: an event time more than PRESENCE_MAX_CLOCK_SKEW ahead of arrival is refused."""
    before = await dump(database_url)

    response = await seeded.post_hook(body)

    await assert_error(response, 400, "invalid_event")
    assert (await response.json())["error"]["message"].startswith(f"{field}: more than 3600 s ahead")
    assert await dump(database_url) == before


async def test_an_event_a_little_ahead_of_the_clock_is_accepted(api: Api) -> None:
    """Clocks drift: half an hour ahead is within the default skew of an hour."""
    session = payloads.device("s-1")
    ahead = payloads.connection("early-bird", "connected", _now_ms() + 1_800_000, session, connections=[session])
    assert await api.hook(ahead) == {"status": "accepted"}


async def test_the_skew_is_a_setting(settings: Settings) -> None:
    async with serving(settings.replace(max_clock_skew=timedelta(minutes=10))) as client:
        session = payloads.device("s-1")
        ahead = payloads.connection("early-bird", "connected", _now_ms() + 1_800_000, session, connections=[session])
        await assert_error(await Api(client).post_hook(ahead), 400, "invalid_event")
    assert Settings.from_env({"PRESENCE_MAX_CLOCK_SKEW": "10m"}).max_clock_skew == timedelta(minutes=10)


if sys.version_info >= (3, 14):
    from compression import zstd
else:
    from backports import zstd


def _compressed(encoding: str, data: bytes) -> bytes:
    if encoding == "gzip":
        return gzip.compress(data)
    if encoding == "deflate":
        return zlib.compress(data)
    if encoding == "br":
        return brotli.compress(data)  # type: ignore[no-any-return]
    return zstd.compress(data)


def _not_encoded(encoding: str, body: bytes) -> bytes:
    return body


def _corrupt_after_the_header(encoding: str, body: bytes) -> bytes:
    return _compressed(encoding, body)[:3] + b"\x00" * 40


ENCODINGS = ["gzip", "deflate", "br", "zstd"]


async def post_encoded(api: Api, body: bytes, encoding: str) -> ClientResponse:
    headers = {"Authorization": HOOK_AUTH, "Content-Type": "Application/json", "Content-Encoding": encoding}
    response = await api.client.post("/hook", data=body, headers=headers)
    await check_client_response(response)
    return response


async def rejected_events(api: Api) -> float:
    """``presence_events_total`` of outcome ``rejected``, over every trigger."""
    response = await api.get("/metrics")
    assert response.status == 200, await response.text()
    return sum(
        sample.value
        for family in text_string_to_metric_families(await response.text())
        for sample in family.samples
        if sample.name == "presence_events_total" and sample.labels["outcome"] == "rejected"
    )


@pytest.mark.parametrize("encoding", ENCODINGS)
async def test_a_body_in_its_content_encoding_is_accepted(api: Api, encoding: str) -> None:
    """The encodings the rejections below spoil are themselves understood (so the spoiling is what fails)."""
    response = await post_encoded(api, _compressed(encoding, orjson.dumps(CONNECTION)), encoding)

    assert response.status == 200, await response.text()
    assert await response.json() == {"status": "accepted"}
    assert await api.presence("u-1") is not None


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize(
    "spoil",
    [
        pytest.param(_not_encoded, id="not encoded at all"),
        pytest.param(_corrupt_after_the_header, id="corrupt after the header"),
    ],
)
async def test_a_body_not_valid_in_its_content_encoding_is_400(
    seeded: Api,
    database_url: str,
    encoding: str,
    spoil: Callable[[str, bytes], bytes],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """§2, §5: a body its Content-Encoding cannot decode is 400 invalid_encoding (not a 500), counted as
    rejected; nothing is stored, and nothing is logged as an unexpected error."""
    before = await dump(database_url)
    rejected = await rejected_events(seeded)

    with caplog.at_level(logging.ERROR):
        response = await post_encoded(seeded, spoil(encoding, orjson.dumps(CONNECTION)), encoding)
        await assert_error(response, 400, "invalid_encoding")

    assert await dump(database_url) == before
    assert await rejected_events(seeded) == rejected + 1
    assert [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR] == []
    assert (await seeded.get("/users/u-1/presence")).status == 200  # and the service serves on


async def raw_request(api: Api, head: bytes, body: bytes = b"") -> tuple[int, dict[str, str], Any]:
    """Send ``head`` (request line and headers, as bytes) and ``body`` on a socket of its own; the status,
    headers and JSON of the answer. For header bytes that no HTTP client library would send."""
    server = api.client.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        writer.write(head + b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), timeout=10)
    finally:
        writer.close()
        await writer.wait_closed()
    status_line, _, rest = answer.partition(b"\r\n")
    head_lines, _, payload = rest.partition(b"\r\n\r\n")
    headers = dict(line.decode("latin-1").split(": ", 1) for line in head_lines.split(b"\r\n"))
    return int(status_line.split()[1]), headers, orjson.loads(payload)


NOT_UTF8_AUTHORIZATIONS = [
    pytest.param(b"Basic \xff\xfe", id="Basic, credentials not UTF-8"),
    pytest.param(HOOK_AUTH.encode() + b"\xff", id="Basic, right credentials then a byte not UTF-8"),
    pytest.param(b"Bearer \xff\xfe", id="Bearer, token not UTF-8"),
    pytest.param(API_AUTH.encode() + b"\xff", id="Bearer, right token then a byte not UTF-8"),
    pytest.param(b"Bearer t\xe9t\xe9", id="Bearer, a Latin-1 token"),
    pytest.param("Bearer tëtë".encode(), id="Bearer, a UTF-8 token not configured"),
    pytest.param(b"\xc3\x28", id="no scheme, not UTF-8"),
]


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("authorization", NOT_UTF8_AUTHORIZATIONS)
@pytest.mark.parametrize("path", ["/hook", *QUERY_PATHS, "/metrics"])
async def test_an_authorization_header_not_in_utf8_is_401_never_500(
    shared_seeded: Api, module_engine: AsyncEngine, path: str, authorization: bytes
) -> None:
    """§2, §5: Authorization bytes that are not UTF-8 are wrong credentials: 401 with the error shape."""
    before = await dump(module_engine)
    method, body = (b"POST", orjson.dumps(CONNECTION)) if path == "/hook" else (b"GET", b"")
    head = method + b" " + path.encode() + b" HTTP/1.1\r\nHost: presence\r\nAuthorization: " + authorization + b"\r\n"

    status, headers, payload = await raw_request(shared_seeded, head, body)

    assert status == 401, payload
    assert payload == {"error": {"code": "unauthorized", "message": payload["error"]["message"]}}, payload
    assert headers["WWW-Authenticate"] == (BASIC_CHALLENGE if path == "/hook" else 'Bearer realm="presence"')
    assert await dump(module_engine) == before
