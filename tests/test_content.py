"""Contract §2: message content is never stored, anywhere; what rebuilding needs is kept in the inbox."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import make_url

from presence.core import inbox, reconcile
from presence.core.inbox import MAX_DEPTH, TooDeep, cannot_hold_content, without_content
from presence.core.parse import KNOWN_TRIGGERS, parse_event
from presence.db.models import InboxEvent
from presence.http.app import create_app
from presence.settings import Settings
from tests.support import payloads
from tests.support.api import Api
from tests.support.ignored_current import Sample, samples
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

KEYS = st.sampled_from(
    [
        "data",
        "text",
        "metadata",
        "entities",
        "uid",
        "session_id",
        "x",
        "customData",
        "é",
        "message",
        "reaction",
        "reason",
        "moderation",
        "value",
        "reactedBy",
        "name",
        "trigger",
    ]
)
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


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
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


# --- what is kept is enough: the parser reads the same event from it --------------------------

UIDS = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=16)
SECONDS = st.integers(1_500_000_000, 1_800_000_000)
MILLISECONDS = st.integers(1_500_000_000_000, 1_800_000_000_000)
MESSAGE_IDS = st.integers(1, 2**63 - 1)
CONTENT = st.text(max_size=40)
CATEGORIES = st.sampled_from(["message", "custom", "action", "call", "interactive"])


def as_given(times: st.SearchStrategy[int]) -> st.SearchStrategy[int | str]:
    """A time as CometChat may send it: a number or a numeric string."""
    return times | times.map(str)


def _legacy_connections(trigger: str) -> st.SearchStrategy[Body]:
    return st.builds(
        lambda uid, kind, at, session_id, snapshot: connection(
            uid, kind, at, device(session_id), connections=[device(session_id)] if snapshot else None, trigger=trigger
        ),
        UIDS,
        st.sampled_from(["connected", "disconnected"]),
        as_given(MILLISECONDS),
        UIDS,
        st.booleans(),
    )


def _messages(build: Any, **fixed: Any) -> st.SearchStrategy[Body]:
    return st.builds(
        lambda mid, sender, receiver, group, category, sent_at, text: build(
            mid,
            f"group_{receiver}" if group else f"{sender}_user_{receiver}",
            sender,
            receiver=receiver,
            receiver_type="group" if group else "user",
            category=category,
            sent_at=sent_at,
            text=text,
            **fixed,
        ),
        MESSAGE_IDS,
        UIDS,
        UIDS,
        st.booleans(),
        CATEGORIES,
        as_given(SECONDS),
        CONTENT,
    )


def _receipts(build: Any, kind: str) -> st.SearchStrategy[Body]:
    return st.builds(
        lambda mid, reader, sender, group, at: build(
            kind,
            mid,
            reader=reader,
            message_sender=sender if not group or reader < sender else None,
            at=at,
            receiver=f"guid-{sender}" if group else sender,
            receiver_type="group" if group else "user",
        ),
        MESSAGE_IDS,
        UIDS,
        UIDS,
        st.booleans(),
        as_given(SECONDS),
    )


def _changes(trigger: str) -> st.SearchStrategy[Body]:
    def build(  # noqa: PLR0917 (the arguments hypothesis draws, in order)
        mid: int, sender: str, other: str, at: int | str, sent_at: int, action: bool, text: str
    ) -> Body:
        conversation = f"{sender}_user_{other}"
        if trigger == "message_edited":
            return payloads.message_edited(
                mid, conversation, sender, edited_at=at, sent_at=sent_at, action_shape=action, text=text
            )
        return payloads.message_deleted(mid, conversation, sender, deleted_at=at, action_shape=action)

    return st.builds(build, MESSAGE_IDS, UIDS, UIDS, as_given(SECONDS), SECONDS, st.booleans(), CONTENT)


def _memberships(trigger: str) -> st.SearchStrategy[Body]:
    at_least = 1 if trigger.startswith("group_member_") else 0
    return st.builds(
        lambda guid, members, at, count, by: payloads.membership(
            trigger, guid, members, updated_at=at, members_count=count, by=by
        ),
        UIDS,
        st.lists(UIDS, min_size=at_least, max_size=4, unique=True),
        as_given(SECONDS),
        st.none() | st.integers(0, 10_000),
        st.none() | UIDS,
    )


#: For every trigger the service acts on, every shape of body the builders make, in both systems.
BODIES: dict[str, st.SearchStrategy[Body]] = {
    "after_connection_status_changed": _legacy_connections("after_connection_status_changed"),
    "user_connection_status_change": _legacy_connections("user_connection_status_change"),
    "user_connection_status_changed": st.builds(
        payloads.current_connection,
        UIDS,
        st.sampled_from(["connected", "disconnected"]),
        as_given(MILLISECONDS),
        platform=st.sampled_from(["javascript", "android", "ios"]),
        connected_at=as_given(MILLISECONDS),
        status=st.sampled_from([None, "online", "offline", "available"]),
        presence_changed=st.sampled_from([True, False, None]),
    ),
    "after_message": _messages(message, trigger="after_message"),
    "before_message": _messages(message, trigger="before_message"),
    "message_sent": _messages(payloads.message_sent),
    "message_delivery_receipt": _receipts(payloads.receipt, "delivered")
    | _receipts(payloads.current_receipt, "delivered"),
    "message_read_receipt": _receipts(payloads.receipt, "read") | _receipts(payloads.current_receipt, "read"),
    "message_edited": _changes("message_edited"),
    "message_deleted": _changes("message_deleted"),
    **{
        trigger: st.builds(
            lambda mid, guid, sender, at, kind=kind: payloads.group_receipt(
                kind, mid, guid=guid, message_sender=sender, at=at
            ),
            MESSAGE_IDS,
            UIDS,
            st.none() | UIDS,
            st.none() | as_given(SECONDS),
        )
        for trigger, kind in (("message_delivered_to_all", "delivered"), ("message_read_by_all", "read"))
    },
    **{
        trigger: _memberships(trigger)
        for trigger in (
            "group_member_joined",
            "group_member_added",
            "group_created",
            "group_member_left",
            "group_member_kicked",
            "group_member_banned",
            "group_member_removed",
            "group_deleted",
        )
    },
    # The service's own (contract §10): a reconciliation pass's correction, kept whole.
    "presence_reconcile": st.builds(
        reconcile.body,
        UIDS,
        st.sampled_from(["online", "offline"]),
        MILLISECONDS,
        st.none() | MILLISECONDS,
    ),
}


def test_the_bodies_cover_every_trigger_the_service_acts_on() -> None:
    assert set(BODIES) == KNOWN_TRIGGERS


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(body=st.sampled_from(sorted(BODIES)).flatmap(BODIES.__getitem__))
def test_the_parser_reads_the_same_event_from_what_the_inbox_keeps(body: Body) -> None:
    """``presence rebuild`` reads the inbox: it must find there every event as it came, content aside."""
    kept = orjson.loads(orjson.dumps(without_content(body)))  # stored as JSON text
    assert parse_event(kept) == parse_event(body)


def test_an_action_message_keeps_its_action_and_target_and_nothing_else() -> None:
    body = payloads.message_edited(57, CONVERSATION, SENDER, edited_at=SENT_AT + 5, sent_at=SENT_AT, text="secret")
    body["data"]["message"]["data"]["entities"]["on"]["entity"]["metadata"] = {"x": "secret"}
    kept: Any = without_content(body)["data"]
    kept = kept["message"]
    assert kept["data"] == {
        "action": "edited",
        "entities": {
            "on": {
                "entity": {
                    "id": "57",
                    "conversationId": CONVERSATION,
                    "sender": SENDER,
                    "category": "message",
                    "type": "text",
                    "sentAt": SENT_AT,
                    "editedAt": SENT_AT + 5,
                    "editedBy": SENDER,
                }
            }
        },
    }
    assert kept["category"] == "action"
    assert kept["id"] == "900"


def test_an_action_message_of_another_trigger_keeps_no_data() -> None:
    body = payloads.message_edited(57, CONVERSATION, SENDER, edited_at=SENT_AT + 5, text="secret")
    body["trigger"] = "after_message"  # a legacy action message: the parser never reads its data
    kept: Any = without_content(body)
    assert "data" not in kept["data"]["message"]


@pytest.mark.parametrize("uid", ["entities", "text", "data", "name", "message", "moderation", "uid"])
def test_a_member_whose_uid_spells_a_field_name_is_kept_without_its_profile(uid: str) -> None:
    """``data.members`` is keyed by uid: no uid is taken for a key to drop (Hypothesis found "entities")."""
    body = payloads.membership("group_member_joined", "g1", [uid, "bob"], updated_at=1_700_000_000)
    kept: Any = orjson.loads(orjson.dumps(without_content(body)))
    assert kept["data"]["members"] == {uid: {"uid": uid, "status": "offline", "role": "default"},
                                       "bob": {"uid": "bob", "status": "offline", "role": "default"}}  # fmt: skip
    assert parse_event(kept) == parse_event(body)


# --- the current triggers: no content reaches the database, from any of them ------------------

#: In every content field of the bodies below; it must reach neither a table nor a file.
LEAK = "LEAK-Hq3wP"


def acted_current(marker: str) -> list[Body]:
    """The current triggers the service acts on that carry text, with ``marker`` in all of it."""
    sent = payloads.message_sent(58, CONVERSATION, SENDER, receiver=RECEIVER, sent_at=SENT_AT, text=f"{marker}-sent")
    sent["data"]["message"]["data"]["attachments"] = [{"url": f"https://files.example/{marker}.png"}]
    edits = [
        payloads.message_edited(
            57, CONVERSATION, SENDER, edited_at=SENT_AT + 5, sent_at=SENT_AT, action_shape=shape, text=f"{marker}-edit"
        )
        for shape in (True, False)
    ]
    deletions = [
        payloads.message_deleted(56, CONVERSATION, SENDER, deleted_at=SENT_AT + 9, action_shape=shape)
        for shape in (True, False)
    ]
    for action in (edits[0], deletions[0]):
        content = action["data"]["message"]["data"]
        content["entities"]["by"]["entity"]["name"] = f"{marker}-by-name"
        content["entities"]["on"]["entity"]["data"] = {
            "text": f"{marker}-target",
            "interactiveData": {"title": f"{marker}-form"},  # content under a key of its own
        }
        content["entities"]["on"]["entity"]["metadata"] = {"m": f"{marker}-target-metadata"}
    deletions[1]["data"]["message"]["data"] = {"text": f"{marker}-deleted"}
    return [sent, *edits, *deletions]


def test_the_samples_carry_the_marker_wherever_there_is_content() -> None:
    bodies = [*(sample.body for sample in samples(LEAK)), *acted_current(LEAK)]
    unmarked = [body["trigger"] for body in bodies if LEAK not in orjson.dumps(body).decode()]
    assert unmarked == ["call_started", "meeting_started"]  # a session id and a time, nothing else


async def post_current_then_close(settings: Settings) -> list[Sample]:
    ignored = samples(LEAK)
    async with TestClient(TestServer(create_app(settings))) as client:
        api = Api(client)
        for body in acted_current(LEAK):
            assert await api.hook(body) == {"status": "accepted"}, body["trigger"]
        for sample in ignored:
            assert await api.hook(sample.body) == {"status": "ignored"}, sample.trigger
    return ignored


def inbox_rows(tables: dict[str, list[tuple[Any, ...]]]) -> list[tuple[str, Any]]:
    """The inbox as (trigger, decoded body), in order."""
    names = [column.name for column in InboxEvent.__table__.columns]
    rows = [dict(zip(names, row, strict=True)) for row in tables[InboxEvent.__tablename__]]
    return [(row["trigger"], orjson.loads(row["body"])) for row in sorted(rows, key=lambda row: row["id"])]


def sqlite_files_bytes(database_url: str) -> bytes:
    """The bytes of the SQLite database file and of its write-ahead log."""
    database = Path(make_url(database_url).database or "")
    files = [path for path in (database, Path(f"{database}-wal")) if path.exists()]
    assert database in files
    return b"".join(path.read_bytes() for path in files)


async def test_no_content_of_a_current_trigger_reaches_a_table_nor_the_sqlite_files(
    settings: Settings, database_url: str
) -> None:
    """§2, §8: reactions, mentions, moderation, calls, meetings, edits: no text of any is stored."""
    ignored = await post_current_then_close(settings)

    tables = await dump(database_url)
    stored = [trigger for trigger, _ in inbox_rows(tables)]
    assert [sample.trigger for sample in ignored] == stored[-len(ignored) :]  # every ignored one is kept
    for name, rows in tables.items():
        assert LEAK not in repr(rows), f"table {name} holds content"
    if database_url.startswith("sqlite"):
        raw = sqlite_files_bytes(database_url)
        assert ignored[0].ids[0].encode() in raw  # the scan sees what is stored
        assert LEAK.encode() not in raw, "the SQLite files hold content"


async def test_the_inbox_keeps_the_envelope_and_the_ids_of_an_ignored_current_trigger(
    settings: Settings, database_url: str
) -> None:
    ignored = await post_current_then_close(settings)

    kept = inbox_rows(await dump(database_url))[-len(ignored) :]
    for sample, (trigger, body) in zip(ignored, kept, strict=True):
        assert trigger == sample.trigger
        for key in ("trigger", "appId", "region", "webhook"):
            assert body[key] == sample.body[key]
        text = orjson.dumps(body).decode()
        assert [value for value in sample.ids if f'"{value}"' not in text] == [], trigger


@pytest.mark.parametrize("sample", samples(LEAK), ids=lambda sample: sample.trigger)
def test_the_scrub_leaves_no_marked_content_in_an_ignored_current_trigger(sample: Sample) -> None:
    kept = orjson.dumps(without_content(sample.body)).decode()
    assert LEAK not in kept
    assert parse_event(without_content(sample.body)) == parse_event(sample.body)  # still ignored


def test_the_fast_path_never_takes_a_body_the_scrub_would_change() -> None:
    """The fast path's promise, on every documented body and every builder's."""
    session = device("s-1")
    bodies = [
        *(sample.body for sample in samples(LEAK)),
        *acted_current(LEAK),
        connection("u-1", "connected", 1_700_000_000_000, session, connections=[session]),
        payloads.current_connection("u-1", "connected", 1_700_000_000_000),
        payloads.current_receipt("read", 57, reader=RECEIVER, message_sender=SENDER, at=SENT_AT, receiver=SENDER),
        payloads.group_receipt("read", 57, guid="g-1"),
        payloads.membership("group_member_added", "g-1", ["u-1"], updated_at=SENT_AT, by="u-2"),
    ]
    fast = [body["trigger"] for body in bodies if cannot_hold_content(orjson.dumps(body))]
    for body in bodies:
        if cannot_hold_content(orjson.dumps(body)):
            assert without_content(body) == body, body["trigger"]
    assert "after_connection_status_changed" in fast  # the fast path is still taken


def test_the_fast_path_looks_for_exactly_the_keys_the_scrub_acts_on() -> None:
    """Its expression matches each acted-on key as JSON text, and no other word: no prefix, no extension."""
    for key in inbox._ACTED_ON:
        assert not cannot_hold_content(orjson.dumps({key: 1})), key
        assert not cannot_hold_content(orjson.dumps({"x": key})), key
        for near in (key[:-1], key + "s", key + "_", "x" + key, key.upper()):
            if near not in inbox._ACTED_ON:
                assert cannot_hold_content(orjson.dumps({near: 1})), near
    assert not cannot_hold_content(b'{"t\\u0065xt": 1}')
