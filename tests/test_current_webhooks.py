"""Contract §8: CometChat's current webhooks, posted as documented, read back through the API.

Every sample of ``cometchat/webhooks-current.md`` (``tests/support/samples_current.py``) goes
through ``POST /hook``; the answers are the ones a legacy body saying the same would give.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import create_async_engine

from presence.core.events import MembershipChanged
from presence.core.facts import NO_KEY, order_key
from presence.core.parse import parse_event
from presence.core.times import format_instant, ms_to_datetime
from presence.db.models import Base
from tests.support import payloads
from tests.support import samples_current as cc
from tests.support.api import Api
from tests.support.state import dump, state_tables

SESSION = "javascript:1696934440982"
CONNECTED_AT = "2023-10-10T10:40:40.982Z"
#: The documented sample's ``data.timestamp``, 1696935103114 ms.
DISCONNECTED_AT = "2023-10-10T10:51:43.114Z"
#: Text some samples carry; the service never stores it.
CONTENT = ("Hello from the current webhooks", "Hello, edited", "Hello, edited live")


def iso(ms: int) -> str:
    formatted = format_instant(ms_to_datetime(ms))
    assert formatted is not None
    return formatted


def iso_s(seconds: int) -> str:
    return iso(seconds * 1000)


def picked(answer: dict[str, Any] | None, *keys: str) -> dict[str, Any]:
    """The ``keys`` of an answer (others may be added by other sections of the contract)."""
    assert answer is not None
    missing = [key for key in keys if key not in answer]
    assert not missing, f"the answer lacks {missing}: {answer}"
    return {key: answer[key] for key in keys}


RECEIPT_KEYS = ("message_id", "conversation_id", "sender", "receipts", "delivered_count", "read_count")
GROUP_KEYS = ("delivered_to_all", "delivered_to_all_at", "read_by_all", "read_by_all_at")

ACTED_ON = [
    pytest.param(cc.MESSAGE_SENT, id="message_sent"),
    pytest.param(cc.MESSAGE_SENT_GROUP, id="message_sent in a group"),
    pytest.param(cc.MESSAGE_EDITED, id="message_edited as documented"),
    pytest.param(cc.MESSAGE_DELETED, id="message_deleted as documented"),
    pytest.param(cc.MESSAGE_EDITED_LIVE, id="message_edited as seen live"),
    pytest.param(cc.MESSAGE_DELETED_LIVE, id="message_deleted as seen live"),
    pytest.param(cc.READ_RECEIPT, id="message_read_receipt"),
    pytest.param(cc.DELIVERY_RECEIPT, id="message_delivery_receipt"),
    pytest.param(cc.GROUP_READ_RECEIPT, id="message_read_receipt in a group"),
    pytest.param(cc.GROUP_DELIVERY_RECEIPT, id="message_delivery_receipt in a group"),
    pytest.param(cc.DELIVERED_TO_ALL, id="message_delivered_to_all"),
    pytest.param(cc.READ_BY_ALL, id="message_read_by_all without a time"),
    pytest.param(cc.READ_BY_ALL_TIMED, id="message_read_by_all with a time"),
    pytest.param(cc.CONNECTION_STATUS_CHANGED, id="user_connection_status_changed"),
    pytest.param(cc.CONNECTION_CONNECTED, id="user_connection_status_changed connected"),
    *(pytest.param(body, id=body["trigger"]) for body in cc.MEMBERSHIP),
]


@pytest.mark.parametrize("body", ACTED_ON)
async def test_every_sample_acted_on_is_accepted_and_kept_without_content(
    api: Api, database_url: str, body: dict[str, Any]
) -> None:
    """§8, §2: each documented body is acknowledged as accepted, kept in the inbox, its content dropped."""
    assert await api.hook(body) == {"status": "accepted"}

    tables = await dump(database_url)
    assert [row[2] for row in tables["inbox_event"]] == [body["trigger"]]
    assert not any(text in repr(tables) for text in CONTENT)


@pytest.mark.parametrize("body", [pytest.param(body, id=body["trigger"]) for body in cc.IGNORED])
async def test_every_other_current_trigger_is_ignored_and_kept(
    api: Api, database_url: str, body: dict[str, Any]
) -> None:
    """§8: a current trigger the service does not act on: ``ignored``, kept less content, no state."""
    await api.hook(cc.CONNECTION_CONNECTED)
    state = await state_tables(database_url)

    assert await api.hook(body) == {"status": "ignored"}

    tables = await dump(database_url)
    assert [row[2] for row in tables["inbox_event"]] == [cc.CONNECTION_CONNECTED["trigger"], body["trigger"]]
    assert await state_tables(database_url) == state
    assert not any(text in repr(tables) for text in CONTENT)


# --- user_connection_status_changed --------------------------------------------------------


async def test_the_connection_samples_give_one_session_named_by_its_connection(api: Api) -> None:
    """§8: the ``connected`` and the documented ``disconnected`` of one connection name one session,
    ``<platform>:<connectedAt>``, with no device id."""
    await api.hook(cc.CONNECTION_CONNECTED)

    assert await api.presence(cc.UID_1) == {
        "uid": cc.UID_1,
        "status": "online",
        "status_updated_at": "2023-10-10T10:40:40.990Z",
        "last_seen_at": "2023-10-10T10:40:40.990Z",
        "status_source": "webhook",
        "connections": [
            {"session_id": SESSION, "device_id": None, "platform": "javascript", "connected_at": CONNECTED_AT}
        ],
    }

    await api.hook(cc.CONNECTION_STATUS_CHANGED)

    assert await api.presence(cc.UID_1) == {
        "uid": cc.UID_1,
        "status": "offline",
        "status_updated_at": DISCONNECTED_AT,
        "last_seen_at": DISCONNECTED_AT,
        "status_source": "webhook",
        "connections": [],
    }
    assert await api.sessions(cc.UID_1) == [
        {
            "session_id": SESSION,
            "device_id": None,
            "platform": "javascript",
            "connected_at": CONNECTED_AT,
            "disconnected_at": DISCONNECTED_AT,
        }
    ]


async def test_a_disconnected_before_its_connected_still_ends_the_session(api: Api) -> None:
    """§2, §8: the same two events in the other order leave the same presence and history."""
    await api.hook(cc.CONNECTION_STATUS_CHANGED)
    await api.hook(cc.CONNECTION_CONNECTED)

    presence = await api.presence(cc.UID_1)
    assert presence is not None
    assert (presence["status"], presence["connections"], presence["last_seen_at"]) == ("offline", [], DISCONNECTED_AT)
    assert [(s["session_id"], s["disconnected_at"]) for s in await api.sessions(cc.UID_1)] == [
        (SESSION, DISCONNECTED_AT)
    ]


async def test_status_updated_at_is_the_newest_event_whose_presence_changed(api: Api) -> None:
    """§8: a second connection does not flip the status (``userPresenceChanged`` false): ``status_updated_at``
    stays at the first connection, ``last_seen_at`` moves on. Needs the database layer of issue 12."""
    await api.hook(cc.CONNECTION_CONNECTED)
    second = cc.connection(
        "connected", 1696934500000, connected_at=1696934499000, platform="android", presence_changed=False
    )
    await api.hook(second)

    presence = await api.presence(cc.UID_1)
    assert presence is not None
    assert (presence["status"], presence["status_updated_at"], presence["last_seen_at"]) == (
        "online",
        "2023-10-10T10:40:40.990Z",
        "2023-10-10T10:41:40.000Z",
    )
    assert [c["session_id"] for c in presence["connections"]] == [SESSION, "android:1696934499000"]


def _offline_story() -> list[dict[str, Any]]:
    """Two connections; the first one's ``disconnected`` is lost; the second ends ``offline``; a third comes."""
    return [
        cc.CONNECTION_CONNECTED,
        cc.connection("connected", 1696934500000, connected_at=1696934499000, platform="android"),
        cc.connection("disconnected", 1696935000000, connected_at=1696934499000, platform="android"),
        cc.connection("connected", 1696935200000, connected_at=1696935199000, platform="ios"),
    ]


@pytest.mark.parametrize("order", ["as sent", "reversed"])
async def test_an_offline_event_ends_every_older_session(api: Api, order: str) -> None:
    """§8: ``offline`` says no connection is left: the javascript session, whose ``disconnected`` never came,
    is ended by the android one's; the ios session, newer, is live. Any order."""
    story = _offline_story()
    for body in story if order == "as sent" else reversed(story):
        await api.hook(body)

    presence = await api.presence(cc.UID_1)
    assert presence is not None
    assert presence["status"] == "online"
    assert presence["connections"] == [
        {"session_id": "ios:1696935199000", "device_id": None, "platform": "ios", "connected_at": iso(1696935199000)}
    ]


async def test_an_offline_event_ends_sessions_whose_disconnected_was_lost(api: Api) -> None:
    """§8: without the later connection, the user is offline with no connection at all."""
    for body in _offline_story()[:3]:
        await api.hook(body)

    presence = await api.presence(cc.UID_1)
    assert presence is not None
    assert (presence["status"], presence["connections"]) == ("offline", [])


async def test_available_means_online(api: Api) -> None:
    """§8: user entities say ``available`` for online; the API says ``online``."""
    await api.hook(cc.connection("connected", 1696934440990, status="available"))

    presence = await api.presence(cc.UID_1)
    assert presence is not None
    assert presence["status"] == "online"
    assert [c["session_id"] for c in presence["connections"]] == [SESSION]


# --- message_sent and receipts -------------------------------------------------------------


async def test_message_sent_gives_the_message_its_conversation_and_sender(api: Api) -> None:
    """§8: ``message_sent`` is ``after_message`` one level deeper."""
    await api.hook(cc.MESSAGE_SENT)
    await api.hook(cc.MESSAGE_SENT_GROUP)

    assert picked(await api.receipts("1"), *RECEIPT_KEYS) == {
        "message_id": "1",
        "conversation_id": cc.DIRECT,
        "sender": cc.UID_1,
        "receipts": [],
        "delivered_count": 0,
        "read_count": 0,
    }
    assert picked(await api.receipts("11"), "conversation_id", "sender", "receipts") == {
        "conversation_id": cc.GROUP,
        "sender": cc.UID_1,
        "receipts": [],
    }


async def test_a_message_sent_of_an_untracked_category_is_ignored(api: Api, database_url: str) -> None:
    """§8: same untracked categories as ``after_message``: acknowledged, kept, not a message."""
    body = copy.deepcopy(cc.MESSAGE_SENT)
    body["data"]["message"]["category"] = "action"

    assert await api.hook(body) == {"status": "ignored"}

    assert await api.receipts("1") is None
    assert len((await dump(database_url))["inbox_event"]) == 1


async def test_current_receipts_are_watermarks_in_a_one_to_one_conversation(api: Api) -> None:
    """§8, §4: uid-2's delivery and read of message 57 cover 56, not 58; uid-1 sent them."""
    for message_id, sent_at in (("56", 1696934900), ("57", 1696934910), ("58", 1696934920)):
        await api.hook(cc.message_sent(message_id, sent_at))
    await api.hook(cc.DELIVERY_RECEIPT)
    await api.hook(cc.READ_RECEIPT)

    read = {"uid": cc.UID_2, "delivered_at": iso_s(1696934940), "read_at": iso_s(1696934950)}
    for message_id in ("56", "57"):
        assert picked(await api.receipts(message_id), *RECEIPT_KEYS) == {
            "message_id": message_id,
            "conversation_id": cc.DIRECT,
            "sender": cc.UID_1,
            "receipts": [read],
            "delivered_count": 1,
            "read_count": 1,
        }
    assert picked(await api.receipts("58"), "receipts", "delivered_count") == {"receipts": [], "delivered_count": 0}


async def test_a_current_receipt_alone_names_its_message(api: Api) -> None:
    """§8: before its ``message_sent``, a receipt says the conversation and (``messageSender``) the sender."""
    await api.hook(cc.READ_RECEIPT)

    assert picked(await api.receipts("57"), *RECEIPT_KEYS) == {
        "message_id": "57",
        "conversation_id": cc.DIRECT,
        "sender": cc.UID_1,
        "receipts": [{"uid": cc.UID_2, "delivered_at": iso_s(1696934950), "read_at": iso_s(1696934950)}],
        "delivered_count": 1,
        "read_count": 1,
    }


async def test_current_receipts_are_watermarks_in_a_group(api: Api) -> None:
    """§8: in a group the conversation is ``group_`` + ``data.receiver``; message 11's receipts cover 10."""
    await api.hook(cc.message_sent("10", 1696934910, group=True))
    await api.hook(cc.MESSAGE_SENT_GROUP)
    await api.hook(cc.message_sent("12", 1696934950, group=True))
    await api.hook(cc.GROUP_DELIVERY_RECEIPT)
    await api.hook(cc.GROUP_READ_RECEIPT)

    read = {"uid": cc.UID_2, "delivered_at": iso_s(1696934925), "read_at": iso_s(1696934935)}
    for message_id in ("10", "11"):
        assert picked(await api.receipts(message_id), "conversation_id", "sender", "receipts") == {
            "conversation_id": cc.GROUP,
            "sender": cc.UID_1,
            "receipts": [read],
        }
    assert picked(await api.receipts("12"), "receipts")["receipts"] == []
    assert (await api.get_json(f"/conversations/{cc.GROUP}/receipts"))["readers"] == [
        {
            "uid": cc.UID_2,
            "delivered_up_to": "11",
            "delivered_at": iso_s(1696934925),
            "read_up_to": "11",
            "read_at": iso_s(1696934935),
        }
    ]


def legacy_read(message_id: str, at: int) -> dict[str, Any]:
    """The legacy spelling of uid-2's read receipt of uid-1's message."""
    return payloads.receipt("read", message_id, reader=cc.UID_2, message_sender=cc.UID_1, at=at, receiver=cc.UID_1)


async def test_a_receipt_and_its_legacy_duplicate_are_one_receipt(api: Api, database_url: str) -> None:
    """§8: the same receipt in both formats (an app moving over) is one row and one answer."""
    await api.hook(cc.message_sent("57", 1696934910))
    await api.hook(cc.READ_RECEIPT)
    state = await state_tables(database_url)
    assert len(state["receipt"]) == 1
    answer = await api.receipts("57")

    await api.hook(legacy_read("57", 1696934950))

    assert await state_tables(database_url) == state
    assert await api.receipts("57") == answer
    assert len((await dump(database_url))["inbox_event"]) == 3


async def test_the_watermark_rule_holds_across_formats(api: Api, database_url: str) -> None:
    """§8, §4: a legacy read of 57 covers 55 read later in the current format (no new row); a current read
    of 50, earlier, is its own row; a current read of 60, earlier still, covers the legacy one."""
    for message_id in ("50", "55", "57", "60"):
        await api.hook(cc.message_sent(message_id, 1696934900))
    await api.hook(legacy_read("57", 1696934950))

    await api.hook(cc.receipt("read", "55", 1696934960))
    assert len((await state_tables(database_url))["receipt"]) == 1
    assert picked(await api.receipts("55"), "receipts")["receipts"][0]["read_at"] == iso_s(1696934950)

    await api.hook(cc.receipt("read", "50", 1696934940))
    assert len((await state_tables(database_url))["receipt"]) == 2
    assert picked(await api.receipts("50"), "receipts")["receipts"][0]["read_at"] == iso_s(1696934940)
    assert picked(await api.receipts("55"), "receipts")["receipts"][0]["read_at"] == iso_s(1696934950)

    await api.hook(cc.receipt("read", "60", 1696934945))
    assert len((await state_tables(database_url))["receipt"]) == 2
    read_at = {mid: picked(await api.receipts(mid), "receipts")["receipts"][0]["read_at"] for mid in ("50", "55", "60")}
    assert read_at == {"50": iso_s(1696934940), "55": iso_s(1696934945), "60": iso_s(1696934945)}


# --- message_edited, message_deleted -------------------------------------------------------


async def test_an_edit_names_its_target_not_the_action_message(api: Api) -> None:
    """§8: the documented edit is action message 2 about message 1: message 1 is known, 2 is not."""
    await api.hook(cc.MESSAGE_EDITED)
    await api.hook(cc.MESSAGE_DELETED)

    assert picked(await api.receipts("1"), "conversation_id", "sender", "receipts") == {
        "conversation_id": cc.DIRECT,
        "sender": cc.UID_1,
        "receipts": [],
    }
    assert await api.receipts("2") is None
    assert await api.receipts("3") is None


@pytest.mark.parametrize(
    ("edited", "deleted", "edited_at", "deleted_at"),
    [
        pytest.param(cc.MESSAGE_EDITED, cc.MESSAGE_DELETED, 1696934985, 1696935000, id="as documented"),
        pytest.param(cc.MESSAGE_EDITED_LIVE, cc.MESSAGE_DELETED_LIVE, 1696934990, 1696935010, id="as seen live"),
    ],
)
async def test_edits_and_deletions_give_edited_at_and_deleted_at(
    api: Api, edited: dict[str, Any], deleted: dict[str, Any], edited_at: int, deleted_at: int
) -> None:
    """§8: ``edited_at`` / ``deleted_at`` of the target, ``null`` until known; a deleted message's receipts
    still answer. Needs the database layer of issue 12."""
    await api.hook(cc.MESSAGE_SENT)
    await api.hook(cc.receipt("read", "1", 1696934950))
    assert picked(await api.receipts("1"), "edited_at", "deleted_at") == {"edited_at": None, "deleted_at": None}

    await api.hook(edited)
    assert picked(await api.receipts("1"), "edited_at", "deleted_at") == {
        "edited_at": iso_s(edited_at),
        "deleted_at": None,
    }

    await api.hook(deleted)
    answer = await api.receipts("1")
    assert picked(answer, "edited_at", "deleted_at", "sender", "read_count") == {
        "edited_at": iso_s(edited_at),
        "deleted_at": iso_s(deleted_at),
        "sender": cc.UID_1,
        "read_count": 1,
    }


async def test_both_shapes_of_edits_and_deletions_join_in_any_order(api: Api) -> None:
    """§8, §2: the latest edit and the earliest deletion, whichever shape and order they came in,
    before or after the message itself. Needs the database layer of issue 12."""
    for body in (
        cc.MESSAGE_DELETED_LIVE,
        cc.MESSAGE_EDITED_LIVE,
        cc.MESSAGE_DELETED,
        cc.MESSAGE_EDITED,
        cc.MESSAGE_SENT,
    ):
        await api.hook(body)

    assert picked(await api.receipts("1"), "conversation_id", "sender", "edited_at", "deleted_at") == {
        "conversation_id": cc.DIRECT,
        "sender": cc.UID_1,
        "edited_at": iso_s(1696934990),
        "deleted_at": iso_s(1696935000),
    }


# --- message_delivered_to_all, message_read_by_all -----------------------------------------


def _group_story() -> list[dict[str, Any]]:
    return [
        cc.message_sent("10", 1696934910, group=True),
        cc.MESSAGE_SENT_GROUP,  # 11, sent at 1696934920
        cc.message_sent("12", 1696934950, group=True),
        cc.message_sent("13", 1696934970, group=True),
        cc.DELIVERED_TO_ALL,  # 11 at 1696934930
        cc.READ_BY_ALL,  # 11, no time: its sentAt
        cc.READ_BY_ALL_TIMED,  # 12 at 1696934960
    ]


@pytest.mark.parametrize("order", ["as sent", "reversed"])
async def test_group_aggregates_cover_the_message_and_every_earlier_one(api: Api, order: str) -> None:
    """§8: ``delivered_to_all`` / ``read_by_all`` of a group message hold for earlier ones, the earliest
    time winning; an aggregate without a time is timed by its message's ``sentAt``. Any order. Needs the
    database layer of issue 12."""
    story = _group_story()
    for body in story if order == "as sent" else reversed(story):
        await api.hook(body)

    answers = {mid: picked(await api.receipts(mid), *GROUP_KEYS) for mid in ("10", "11", "12", "13")}
    # Reading implies delivery, as for receipts: a read by all is a delivery to all, no later.
    assert answers == {
        "10": {
            "delivered_to_all": True,
            "delivered_to_all_at": iso_s(1696934920),
            "read_by_all": True,
            "read_by_all_at": iso_s(1696934920),
        },
        "11": {
            "delivered_to_all": True,
            "delivered_to_all_at": iso_s(1696934920),
            "read_by_all": True,
            "read_by_all_at": iso_s(1696934920),
        },
        "12": {
            "delivered_to_all": True,
            "delivered_to_all_at": iso_s(1696934960),
            "read_by_all": True,
            "read_by_all_at": iso_s(1696934960),
        },
        "13": {"delivered_to_all": False, "delivered_to_all_at": None, "read_by_all": False, "read_by_all_at": None},
    }


async def test_an_untimed_aggregate_of_an_unknown_message_is_kept_without_a_time(api: Api) -> None:
    """§8: no ``sentAt`` known: ``read_by_all`` true, ``read_by_all_at`` null, for it and earlier messages.
    Needs the database layer of issue 12."""
    await api.hook(cc.message_sent("13", 1696934970, group=True))
    untimed = copy.deepcopy(cc.READ_BY_ALL)
    untimed["data"]["body"]["messageId"] = "14"
    await api.hook(untimed)

    for message_id in ("13", "14"):
        assert picked(await api.receipts(message_id), "conversation_id", *GROUP_KEYS) == {
            "conversation_id": cc.GROUP,
            "delivered_to_all": True,  # reading implies delivery
            "delivered_to_all_at": None,
            "read_by_all": True,
            "read_by_all_at": None,
        }


# --- Membership ----------------------------------------------------------------------------


def key_of(body: dict[str, Any]) -> bytes:
    event = parse_event(body)
    assert isinstance(event, MembershipChanged)
    return order_key(event)


async def rows_of(database_url: str, table_name: str, columns: tuple[str, ...]) -> list[tuple[Any, ...]]:
    """``columns`` of every row of a table, sorted; keys of ``NO_KEY`` as stored either way."""
    assert table_name in Base.metadata.tables, f"no table {table_name}: the database layer of issue 12 makes it"
    table = Base.metadata.tables[table_name]
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as connection:
            rows = (await connection.execute(select(*(table.c[name] for name in columns)))).all()
    finally:
        await engine.dispose()
    return sorted(
        (tuple(NO_KEY if v is None and c.endswith("key") else v for c, v in zip(columns, row, strict=True)))
        for row in rows
    )


GROUP_COLUMNS = ("guid", "key", "members_count", "deleted_key")
MEMBER_COLUMNS = ("guid", "uid", "key", "member", "joined_at")


def joined(seconds: int) -> Any:
    return ms_to_datetime(seconds * 1000)


def expected_rows(upto: int) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """The rows of ``chat_group`` and ``group_member`` after the first ``upto`` membership samples."""
    story = cc.MEMBERSHIP[:upto]
    newest = story[-1]
    deleted = key_of(cc.GROUP_DELETED) if cc.GROUP_DELETED in story else NO_KEY
    group = [(cc.GUID, key_of(newest), newest["data"]["group"]["membersCount"], deleted)]
    members: dict[str, tuple[Any, ...]] = {}
    for body in story:
        event = parse_event(body)
        assert isinstance(event, MembershipChanged)
        for uid in event.members:
            added = event.kind == "added"
            members[uid] = (cc.GUID, uid, order_key(event), added, ms_to_datetime(event.at_ms) if added else None)
    return group, sorted(members.values())


async def test_each_membership_trigger_is_kept_in_the_group_tables(api: Api, database_url: str) -> None:
    """§8: who is a member of each group, newest event winning per member, and CometChat's ``membersCount``
    from the newest group event; ``group_deleted`` records its key. Needs the database layer of issue 12."""
    for upto, body in enumerate(cc.MEMBERSHIP, start=1):
        await api.hook(body)
        group, members = expected_rows(upto)
        assert await rows_of(database_url, "chat_group", GROUP_COLUMNS) == group, body["trigger"]
        assert await rows_of(database_url, "group_member", MEMBER_COLUMNS) == members, body["trigger"]

    # The owner joined when the group was created (``createdAt``: ``group_created`` has no ``updatedAt``).
    owner = [row for row in await rows_of(database_url, "group_member", MEMBER_COLUMNS) if row[1] == cc.UID_1]
    assert owner == [(cc.GUID, cc.UID_1, key_of(cc.GROUP_CREATED), True, joined(1696932915))]


async def test_membership_in_any_order_and_repeated_gives_the_same_rows(api: Api, database_url: str) -> None:
    """§8, §2: the membership samples reversed and each twice leave the rows of the story told in order.
    Needs the database layer of issue 12."""
    for body in reversed(cc.MEMBERSHIP):
        await api.hook(body)
        await api.hook(body)

    group, members = expected_rows(len(cc.MEMBERSHIP))
    assert await rows_of(database_url, "chat_group", GROUP_COLUMNS) == group
    assert await rows_of(database_url, "group_member", MEMBER_COLUMNS) == members
