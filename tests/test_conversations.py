"""Contract §11: conversations' members and unread counts, through the HTTP API, on both backends.

One world, told in legacy and current events mixed: a group ``g`` (alice and bob join, carol
joins later, erin joins and leaves, dave only speaks) and a one-to-one conversation of alice
and zed. Each clause of §11 is read back from it.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import create_async_engine

from presence.core.conversations import TALLY_BITS, TALLY_LEVELS, participants, unread_ranges
from presence.db.models import Message, MessageTally
from presence.jobs import retention
from presence.jobs.rebuild import rebuild
from presence.settings import Settings
from tests.support import payloads
from tests.support.api import Api
from tests.support.databases import Databases
from tests.support.state import dump

T0 = 1_763_720_000
GROUP = "group_g"
PAIR = "alice_user_zed"


def iso_s(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def group_message(message_id: int, sender: str, sent_s: int, *, current: bool) -> dict[str, Any]:
    build = payloads.message_sent if current else payloads.message
    return build(message_id, GROUP, sender, receiver="g", receiver_type="group", sent_at=sent_s)


def group_read(message_id: int, reader: str, at_s: int, *, current: bool) -> dict[str, Any]:
    build = payloads.current_receipt if current else payloads.receipt
    return build("read", message_id, reader=reader, message_sender=None, at=at_s, receiver="g", receiver_type="group")


WORLD: list[dict[str, Any]] = [
    payloads.membership("group_member_joined", "g", ["alice", "bob"], updated_at=T0, members_count=3),
    payloads.membership("group_member_added", "g", ["erin"], updated_at=T0, members_count=4),
    payloads.membership("group_member_left", "g", ["erin"], updated_at=T0 + 10, members_count=3),
    payloads.membership("group_member_joined", "g", ["carol"], updated_at=T0 + 100, members_count=3),
    group_message(10, "alice", T0 + 50, current=False),  # before carol joined
    group_message(11, "bob", T0 + 150, current=True),
    group_message(12, "alice", T0 + 160, current=False),
    group_message(13, "dave", T0 + 170, current=True),  # dave: no membership event, only activity
    group_message(14, "bob", T0 + 180, current=False),
    payloads.message_deleted(14, GROUP, "bob", deleted_at=T0 + 190),
    group_read(12, "bob", T0 + 200, current=False),
    payloads.message(20, PAIR, "zed", receiver="alice", sent_at=T0 + 300),
    payloads.message_sent(21, PAIR, "zed", receiver="alice", sent_at=T0 + 310),
    payloads.current_receipt("read", 20, reader="alice", message_sender="zed", at=T0 + 320, receiver="zed"),
    # A receipt names message 22 without any after_message: not known, so never unread.
    payloads.receipt("delivered", 22, reader="alice", message_sender="zed", at=T0 + 330, receiver="zed"),
]


@pytest.fixture
async def world(api: Api) -> Api:
    for body in WORLD:
        await api.hook(body)
    return api


def unread_entry(conversation_id: str, count: int, last: str, read: str | None) -> dict[str, Any]:
    return {"conversation_id": conversation_id, "unread_count": count, "last_message_id": last, "read_up_to": read}


async def test_unread_counts_follow_watermarks_senders_deletions_and_joins(world: Api) -> None:
    """§11: above the read watermark, from someone else, not deleted, known, sent after the member joined."""
    alice = await world.get_json("/users/alice/unread")
    assert alice == {
        "conversations": [unread_entry(PAIR, 1, "22", "20"), unread_entry(GROUP, 2, "14", None)],
        "total_unread": 3,
        "next_cursor": None,
    }
    bob = await world.get_json("/users/bob/unread")
    assert bob["conversations"] == [unread_entry(GROUP, 1, "14", "12")]  # 13; 14 is his own and deleted
    carol = await world.get_json("/users/carol/unread")
    assert carol["conversations"] == [unread_entry(GROUP, 3, "14", None)]  # 11, 12, 13: 10 came before her
    dave = await world.get_json("/users/dave/unread")
    assert dave["conversations"] == [unread_entry(GROUP, 3, "14", None)]  # activity: from the start
    zed = await world.get_json("/users/zed/unread")
    assert zed == {"conversations": [unread_entry(PAIR, 0, "22", None)], "total_unread": 0, "next_cursor": None}
    for nobody in ("erin", "nobody"):  # erin left the group
        assert await world.get_json(f"/users/{nobody}/unread") == {
            "conversations": [],
            "total_unread": 0,
            "next_cursor": None,
        }


async def test_unread_pages_newest_conversation_first_with_the_total_on_every_page(world: Api) -> None:
    """§11: cursor-paginated, newest conversation first; ``total_unread`` over all of them."""
    first = await world.get_json("/users/alice/unread?limit=1")
    assert first["conversations"] == [unread_entry(PAIR, 1, "22", "20")]
    assert first["total_unread"] == 3
    assert first["next_cursor"] is not None
    second = await world.get_json(f"/users/alice/unread?limit=1&cursor={first['next_cursor']}")
    assert second == {"conversations": [unread_entry(GROUP, 2, "14", None)], "total_unread": 3, "next_cursor": None}
    other = await world.get_json(f"/users/bob/unread?cursor={first['next_cursor']}", status=400)
    assert other["error"]["code"] == "invalid_parameter"


async def test_members_come_from_parties_membership_and_activity(world: Api) -> None:
    """§11: one-to-one parties; a group's members from membership events plus activity, CometChat's count."""
    group = await world.get_json(f"/conversations/{GROUP}/members")
    assert group == {
        "members": [
            {"uid": "alice", "joined_at": iso_s(T0), "known_from": "membership"},
            {"uid": "bob", "joined_at": iso_s(T0), "known_from": "membership"},
            {"uid": "carol", "joined_at": iso_s(T0 + 100), "known_from": "membership"},
            {"uid": "dave", "joined_at": None, "known_from": "activity"},
        ],
        "members_count": 3,
        "next_cursor": None,
    }
    pair = await world.get_json(f"/conversations/{PAIR}/members")
    assert pair == {
        "members": [
            {"uid": "alice", "joined_at": None, "known_from": "party"},
            {"uid": "zed", "joined_at": None, "known_from": "party"},
        ],
        "members_count": None,
        "next_cursor": None,
    }
    first = await world.get_json(f"/conversations/{GROUP}/members?limit=3")
    assert [m["uid"] for m in first["members"]] == ["alice", "bob", "carol"]
    rest = await world.get_json(f"/conversations/{GROUP}/members?limit=3&cursor={first['next_cursor']}")
    assert ([m["uid"] for m in rest["members"]], rest["next_cursor"]) == (["dave"], None)
    unknown = await world.get_json("/conversations/group_nothing/members", status=404)
    assert unknown["error"]["code"] == "not_found"
    bad = await world.get_json(f"/conversations/{GROUP}/members?limit=0", status=400)
    assert bad["error"]["code"] == "invalid_parameter"


async def test_a_group_message_says_who_has_not_read_it(world: Api) -> None:
    """§11: ``members_count`` and ``unread_by``: never the sender, a reader, or one who joined after it."""
    m13 = await world.receipts("13")
    assert m13 is not None
    assert (m13["members_count"], m13["unread_by"], m13["unread_by_truncated"]) == (3, ["alice", "bob", "carol"], False)
    m10 = await world.receipts("10")
    assert m10 is not None
    assert m10["unread_by"] == ["dave"]  # bob read up to 12; carol joined after it; alice sent it
    m14 = await world.receipts("14")
    assert m14 is not None
    assert m14["unread_by"] == []  # deleted: unread by nobody
    one_to_one = await world.receipts("20")
    assert one_to_one is not None
    assert not {"members_count", "unread_by", "unread_by_truncated"} & set(one_to_one)


async def test_unread_by_stops_at_100_and_says_so(api: Api) -> None:
    """§11: at most 100 uids, then ``unread_by_truncated: true``."""
    crowd = [f"m{n:03}" for n in range(102)]
    await api.hook(payloads.membership("group_member_added", "big", crowd, updated_at=T0, members_count=102))
    await api.hook(payloads.message_sent(1, "group_big", "m000", receiver="big", receiver_type="group", sent_at=T0 + 1))
    answer = await api.receipts("1")
    assert answer is not None
    assert (len(answer["unread_by"]), answer["unread_by"][0], answer["unread_by_truncated"]) == (100, "m001", True)
    await api.hook(
        payloads.receipt(
            "read", 1, reader="m101", message_sender=None, at=T0 + 2, receiver="big", receiver_type="group"
        )
    )
    answer = await api.receipts("1")
    assert answer is not None
    assert (len(answer["unread_by"]), answer["unread_by"][-1], answer["unread_by_truncated"]) == (100, "m100", False)


async def test_who_has_not_read_is_the_same_whether_the_receipt_or_the_membership_came_first(api: Api) -> None:
    """§11 through ``read_through`` (migration 0009's triggers): a member row written after its read
    watermark takes it, a watermark written after the member row moves it; order cannot matter."""
    message = 50
    for guid, receipt_first in (("early", True), ("late", False)):
        sent = payloads.message_sent(
            message, f"group_{guid}", "erin", receiver=guid, receiver_type="group", sent_at=T0 + 1
        )
        joined = payloads.membership("group_member_added", guid, ["bob", "carol", "dave"], updated_at=T0)
        read = payloads.receipt(
            "read", message, reader="carol", message_sender=None, at=T0 + 2, receiver=guid, receiver_type="group"
        )
        for body in [sent, read, joined] if receipt_first else [sent, joined, read]:
            await api.hook(body)
        answer = await api.receipts(str(message))
        assert answer is not None
        assert (answer["unread_by"], answer["unread_by_truncated"]) == (["bob", "dave"], False), guid
        message += 1


async def test_unread_by_among_many_who_have_not_read_is_the_first_100_by_uid(api: Api) -> None:
    """More than 1000 members unread (the walk in uid order, not the index range): the first 100."""
    crowd = [f"m{n:04}" for n in range(1200)]
    await api.hook(payloads.membership("group_member_added", "huge", crowd, updated_at=T0, members_count=1200))
    await api.hook(
        payloads.message_sent(1, "group_huge", "m0000", receiver="huge", receiver_type="group", sent_at=T0 + 1)
    )
    await api.hook(
        payloads.receipt(
            "read", 1, reader="m0001", message_sender=None, at=T0 + 2, receiver="huge", receiver_type="group"
        )
    )
    answer = await api.receipts("1")
    assert answer is not None
    assert answer["unread_by"] == crowd[2:102]
    assert answer["unread_by_truncated"] is True


async def test_messages_past_receipt_retention_no_longer_count(
    world: Api, database_url: str, settings: Settings
) -> None:
    """README: a message expired by ``PRESENCE_RECEIPT_RETENTION`` is gone from every count, its tallies too;
    the messages kept still count as before."""
    before = await world.get_json("/users/alice/unread")
    counted = [c for c in before["conversations"] if c["unread_count"] > 0]
    assert len(counted) >= 2, "the world must leave unread messages in two conversations"
    aged, kept = counted[0], counted[1:]
    engine = create_async_engine(database_url)
    try:
        async with engine.begin() as connection:  # received long ago: retention's next pass takes them
            await connection.execute(
                update(Message)
                .where(Message.conversation_id == aged["conversation_id"])
                .values(received_at=datetime(2020, 1, 1, tzinfo=UTC))
            )
        # A pass whose cutoff falls between the aged messages and the others.
        await retention.run_pass(engine, settings, datetime(2020, 1, 2, tzinfo=UTC) + settings.receipt_retention)
        async with engine.connect() as connection:
            aged_tallies = (
                await connection.execute(
                    select(func.count())
                    .select_from(MessageTally)
                    .where(MessageTally.conversation_id == aged["conversation_id"])
                )
            ).scalar_one()
        assert aged_tallies == 0
        after = await world.get_json("/users/alice/unread")
        left = {c["conversation_id"]: c["unread_count"] for c in after["conversations"] if c["unread_count"] > 0}
        assert left == {c["conversation_id"]: c["unread_count"] for c in kept}
        assert after["total_unread"] == before["total_unread"] - aged["unread_count"]
        await retention.run_pass(engine, settings, datetime.now(UTC) + settings.receipt_retention + timedelta(days=1))
        async with engine.connect() as connection:
            tallies = (await connection.execute(select(func.count()).select_from(MessageTally))).scalar_one()
    finally:
        await engine.dispose()
    assert tallies == 0
    alice = await world.get_json("/users/alice/unread")
    assert alice == {"conversations": [], "total_unread": 0, "next_cursor": None}


async def test_a_rebuild_recounts_the_tallies_to_what_intake_kept(
    world: Api, database_url: str, settings: Settings
) -> None:
    """§7, §11: ``presence rebuild`` (its triggers suspended on PostgreSQL) leaves the same tallies and answers."""
    before = (await dump(database_url))["message_tally"], await world.get_json("/users/alice/unread")
    engine = create_async_engine(database_url)
    try:
        await rebuild(engine, settings=settings)
    finally:
        await engine.dispose()
    after = (await dump(database_url))["message_tally"], await world.get_json("/users/alice/unread")
    assert before[0]
    assert after == before


def test_one_to_one_parties_are_read_from_the_conversation_id() -> None:
    """A named party tells where the split is, even when a uid holds ``_user_``."""
    assert participants("a_user_b", ("b",)) == (("a", "party"), ("b", "party"))
    assert participants("x_user_y_user_z", ("x_user_y",)) == (("x_user_y", "party"), ("z", "party"))
    assert participants("group_g", ("u", None, "u")) == (("u", "activity"),)


@given(after=st.integers(-1, 2**44), message_id=st.integers(0, 2**44))
def test_the_unread_ranges_cover_each_id_above_the_watermark_exactly_once(after: int, message_id: int) -> None:
    """``unread_ranges``: every id above ``after`` in exactly one range (rows or a tally block), none at or below."""
    ranges = unread_ranges(after)
    hits = int(after < message_id <= ranges.last_row)
    for tally in ranges.tallies:
        block = message_id >> (TALLY_BITS * tally.level)
        hits += tally.low <= block and (tally.high is None or block <= tally.high)
    assert hits == (1 if message_id > after else 0)
    assert len(ranges.tallies) <= TALLY_LEVELS


async def test_two_writers_of_one_conversation_s_messages_queue_on_its_tallies_never_deadlock(
    postgres_databases: Databases,
) -> None:
    """PostgreSQL: each message's trigger locks its tally rows from the top level down (migration 0010).

    Bottom-up, the first writer holds the level-2 block of message 10 and wants the level-1 block of
    70, which the second took for 65 while it waits for that level-2 block: a deadlock. Top-down, the
    second waits at the shared top block, holding nothing, and the first finishes.
    """
    url = await postgres_databases.fresh()
    engine = create_async_engine(url)
    insert_message = text(
        "INSERT INTO message (id, claim, conversation_id, sender, received_at)"
        " VALUES (:id, :claim, 'group_team', :sender, now())"
    )
    try:
        async with engine.connect() as first, engine.connect() as second:
            await first.execute(insert_message, {"id": 10, "claim": b"\x01", "sender": "amy"})
            waiting = asyncio.create_task(second.execute(insert_message, {"id": 65, "claim": b"\x01", "sender": "bob"}))
            await asyncio.sleep(0.3)  # the second writer is in its trigger now, waiting on a lock
            await first.execute(insert_message, {"id": 70, "claim": b"\x01", "sender": "amy"})
            await first.commit()
            await asyncio.wait_for(waiting, 10)
            await second.commit()
        async with engine.connect() as connection:
            total = await connection.scalar(
                text("SELECT n FROM message_tally WHERE conversation_id = 'group_team' AND sender = '' AND level = 6")
            )
        assert total == 3
    finally:
        await engine.dispose()
        await postgres_databases.drop(url)
