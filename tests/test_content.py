"""Contract §2: message content is never stored, anywhere; what rebuilding needs is kept in the inbox."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import make_url

from presence.core.inbox import MAX_DEPTH, TooDeep, cannot_hold_content, without_content
from presence.db.models import InboxEvent
from presence.http.app import create_app
from presence.settings import Settings
from tests.support.api import Api
from tests.support.oracle import NOTHING_CURRENT
from tests.support.payloads import Body, connection, device, message
from tests.support.state import dump

CONVERSATION = "cometchat-uid-4_user_cometchat-uid-5"
SENDER = "cometchat-uid-5"
RECEIVER = "cometchat-uid-4"
SENT_AT = 1_763_720_131

#: One distinctive string per content field; none may reach the database.
MARKERS = {
    name: f"MARKER-{name}-Zq7vX"
    for name in (
        "text",
        "attachment-url",
        "attachment-name",
        "entity-name",
        "custom-data",
        "metadata",
        "message-metadata",
        "caption",
        "edited-text",
        "edited-inner-text",
        "edited-attachment",
        "edited-entity",
        "edited-custom-data",
        "edited-metadata",
    )
}


def with_content(body: Body) -> Body:
    """``body`` (an ``after_message`` or ``before_message``) carrying content in every field CometChat has."""
    body = copy.deepcopy(body)
    data = body["data"]
    data["data"] = {
        "text": MARKERS["text"],
        "attachments": [
            {
                "url": f"https://files.example/{MARKERS['attachment-url']}.png",
                "name": MARKERS["attachment-name"],
                "extension": "png",
                "mimeType": "image/png",
                "size": 1024,
            }
        ],
        "entities": {
            "sender": {"entity": {"uid": SENDER, "name": MARKERS["entity-name"]}, "entityType": "user"},
            "receiver": {"entity": {"uid": RECEIVER, "name": MARKERS["entity-name"]}, "entityType": "user"},
        },
        "customData": {"note": MARKERS["custom-data"], "nested": [MARKERS["custom-data"]]},
        "metadata": {"@injected": {"extensions": {"caption": MARKERS["caption"]}}, "x": MARKERS["metadata"]},
    }
    data["metadata"] = {"tag": MARKERS["message-metadata"]}
    return body


def after_message() -> Body:
    return with_content(message(57, CONVERSATION, SENDER, receiver=RECEIVER, sent_at=SENT_AT))


def before_message() -> Body:
    body = with_content(message(57, CONVERSATION, SENDER, receiver=RECEIVER, sent_at=SENT_AT, trigger="before_message"))
    del body["data"]["id"]  # in flight: no id yet
    return body


def edited_message() -> Body:
    """A trigger the service does not know, whose data carries a whole message with its content."""
    return {
        "trigger": "after_message_edited",
        "appId": "167*****1529",
        "webhook": "edit-message",
        "data": {
            "message": {
                "id": "57",
                "conversationId": CONVERSATION,
                "sender": SENDER,
                "receiver": RECEIVER,
                "receiverType": "user",
                "text": MARKERS["edited-text"],
                "attachments": [{"url": MARKERS["edited-attachment"]}],
                "entities": {"sender": {"entity": {"name": MARKERS["edited-entity"]}}},
                "customData": {"note": MARKERS["edited-custom-data"]},
                "metadata": {"x": MARKERS["edited-metadata"]},
                "data": {"text": MARKERS["edited-inner-text"]},
                "editedAt": SENT_AT + 5,
            }
        },
    }


async def post_then_close(settings: Settings) -> None:
    """Run the app, post the three bodies as CometChat does, and stop the app (engine disposed)."""
    bodies = [before_message(), after_message(), edited_message()]
    sent = orjson.dumps(bodies).decode()
    assert all(marker in sent for marker in MARKERS.values())  # the test posts every marker
    async with TestClient(TestServer(create_app(settings))) as client:
        api = Api(client)
        assert await api.hook(bodies[0]) == {"status": "accepted"}
        assert await api.hook(bodies[1]) == {"status": "accepted"}
        assert await api.hook(bodies[2]) == {"status": "ignored"}
        assert await api.receipts("57") == {
            "message_id": "57",
            "conversation_id": CONVERSATION,
            "sender": SENDER,
            "receipts": [],
            "delivered_count": 0,
            "read_count": 0,
            **NOTHING_CURRENT,
        }


def inbox_bodies(tables: dict[str, list[tuple[Any, ...]]]) -> dict[str, Any]:
    """The inbox bodies, decoded, by trigger."""
    names = [column.name for column in InboxEvent.__table__.columns]
    rows = [dict(zip(names, row, strict=True)) for row in tables[InboxEvent.__tablename__]]
    return {row["trigger"]: orjson.loads(row["body"]) for row in rows}


async def test_message_content_reaches_no_table_nor_the_sqlite_files(settings: Settings, database_url: str) -> None:
    """§2: no text, attachment, entity, custom data or metadata is stored, from any trigger."""
    await post_then_close(settings)

    tables = await dump(database_url)
    assert set(inbox_bodies(tables)) == {"before_message", "after_message", "after_message_edited"}
    for name, rows in tables.items():
        stored = repr(rows)
        leaked = [marker for marker in MARKERS.values() if marker in stored]
        assert not leaked, f"table {name} holds message content: {leaked}"

    if database_url.startswith("sqlite"):
        database = Path(make_url(database_url).database or "")
        files = [path for path in (database, Path(f"{database}-wal")) if path.exists()]
        assert database in files
        raw = b"".join(path.read_bytes() for path in files)
        assert CONVERSATION.encode() in raw  # the scan sees what is stored
        leaked = [marker for marker in MARKERS.values() if marker.encode() in raw]
        assert not leaked, f"the SQLite files hold message content: {leaked}"


async def test_the_inbox_keeps_what_a_rebuild_needs(settings: Settings, database_url: str) -> None:
    """§2: the inbox keeps the message id, conversation, sender and time, though not the content."""
    await post_then_close(settings)

    bodies = inbox_bodies(await dump(database_url))

    after = bodies["after_message"]
    assert after["trigger"] == "after_message"
    assert after["data"]["id"] == "57"
    assert after["data"]["conversationId"] == CONVERSATION
    assert after["data"]["sender"] == SENDER
    assert after["data"]["sentAt"] == SENT_AT
    assert after["data"]["category"] == "message"
    assert after["data"]["receiverType"] == "user"
    assert after["data"]["receiver"] == RECEIVER
    assert "data" not in after["data"]
    before = bodies["before_message"]
    assert before["data"]["conversationId"] == CONVERSATION
    assert before["data"]["sender"] == SENDER
    assert before["data"]["sentAt"] == SENT_AT
    edited = bodies["after_message_edited"]["data"]["message"]
    assert edited["id"] == "57"
    assert edited["conversationId"] == CONVERSATION
    assert edited["sender"] == SENDER
    assert edited["editedAt"] == SENT_AT + 5


# --- the fast path: bodies whose bytes cannot hold content are not walked ---------------------

KEYS = st.sampled_from(["data", "text", "metadata", "entities", "uid", "session_id", "x", "customData", "é"])
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=8) | KEYS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=3),
    max_leaves=40,
)


def encode(value: Any, escape: st.DataObject) -> str:
    """JSON text for ``value`` whose strings have characters written as ``\\uXXXX`` where ``escape`` says."""
    if isinstance(value, dict):
        items = (f"{encode(k, escape)}: {encode(v, escape)}" for k, v in value.items())
        return "{" + ", ".join(items) + "}"
    if isinstance(value, list):
        return "[" + ",".join(encode(v, escape) for v in value) + "]"
    if isinstance(value, str):
        return (
            '"'
            + "".join(
                f"\\u{ord(c):04x}"
                if ord(c) < 0x10000 and escape.draw(st.booleans(), label="escape")
                else orjson.dumps(c).decode()[1:-1]
                for c in value
            )
            + '"'
        )
    return orjson.dumps(value).decode()


@settings(max_examples=500)
@given(body=st.dictionaries(KEYS, JSON_VALUES, max_size=4), escape=st.data())
def test_a_body_that_cannot_hold_content_is_what_the_scrub_leaves(body: dict[str, Any], escape: st.DataObject) -> None:
    raw = encode(body, escape).encode()
    assert orjson.loads(raw) == body
    if cannot_hold_content(raw):
        assert without_content(body) == body


def test_connection_events_take_the_fast_path_and_messages_do_not() -> None:
    session = device("s-1")
    assert cannot_hold_content(
        orjson.dumps(connection("u-1", "connected", 1_700_000_000_000, session, connections=[session]))
    )
    assert not cannot_hold_content(orjson.dumps(after_message()))
    assert not cannot_hold_content(orjson.dumps(before_message()))


def test_a_body_nested_near_the_limit_is_walked_and_refused() -> None:
    deep: Any = 1
    for _ in range(MAX_DEPTH):
        deep = {"x": deep}
    raw = orjson.dumps(deep)
    assert not cannot_hold_content(raw)
    with pytest.raises(TooDeep):
        without_content(deep)
