"""Contract §8 in SQL: the state of CometChat's current webhooks, as the pure core joins it.

The rows the writer's upserts leave are the core's joined facts, whatever the order, the
repetition and the split into transactions; then what the query API makes of them.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from presence.core.facts import Changes, changes_of, is_member
from presence.core.parse import parse_event
from presence.core.times import datetime_to_ms
from presence.db.models import ChatGroup, GroupMember, GroupReceipt, GroupReceiptFlag, Message, UserPresence
from presence.db.writes import Writer
from presence.jobs import retention
from presence.jobs.rebuild import rebuild
from tests.support import payloads
from tests.support.api import Api, make_settings
from tests.support.databases import Databases
from tests.support.state import state_tables

RECEIVED_MS = 1_800_000_000_000
S = 1_795_256_130  # seconds
GUID = "team"
GROUP = f"group_{GUID}"

#: Bodies the property draws from: every new kind of fact, with collisions on every key.
POOL: list[dict[str, Any]] = [
    payloads.message_sent(10, GROUP, "zoe", receiver=GUID, receiver_type="group", sent_at=S),
    payloads.message_sent(20, GROUP, "amy", receiver=GUID, receiver_type="group", sent_at=S + 10),
    payloads.message_edited(10, GROUP, "zoe", edited_at=S + 20, sent_at=S),
    payloads.message_edited(10, GROUP, "zoe", edited_at=S + 30, sent_at=S, action_shape=False),
    payloads.message_deleted(20, GROUP, "amy", deleted_at=S + 40),
    payloads.message_deleted(20, GROUP, "amy", deleted_at=S + 50, action_shape=False),
    payloads.group_receipt("delivered", 10, guid=GUID, message_sender="zoe", at=S + 5),
    payloads.group_receipt("delivered", 20, guid=GUID, message_sender="amy", at=S + 4),
    payloads.group_receipt("delivered", 20, guid=GUID, message_sender="amy", at=S + 15),
    payloads.group_receipt("read", 10, guid=GUID, message_sender="zoe", at=S + 12),
    payloads.group_receipt("read", 30, guid=GUID, at=S + 60),
    payloads.group_receipt("read", 20, guid=GUID, message_sender="amy"),
    payloads.group_receipt("delivered", 30, guid=GUID),
    payloads.membership("group_member_joined", GUID, ["ann"], updated_at=S, members_count=3),
    payloads.membership("group_member_kicked", GUID, ["ann"], updated_at=S, members_count=2),
    payloads.membership("group_member_added", GUID, ["bob", "cid"], updated_at=S + 1, members_count=4),
    payloads.membership("group_member_left", GUID, ["bob"], updated_at=S + 2),
    payloads.membership("group_deleted", GUID, [], updated_at=S + 3),
    payloads.membership("group_member_joined", GUID, ["cid"], updated_at=S + 4, members_count=1),
    payloads.current_connection("ann", "connected", S * 1000, presence_changed=True),
    payloads.current_connection("ann", "connected", S * 1000 + 5, presence_changed=False),
    payloads.current_connection("ann", "disconnected", S * 1000 + 9, presence_changed=None),
]


def _ms(moment: datetime | None) -> int | None:
    return None if moment is None else datetime_to_ms(moment)


def _expected(changes: Changes) -> dict[str, set[tuple[Any, ...]]]:
    """The rows the joined facts stand for, in the form :func:`_stored` reads them."""
    return {
        "user": {
            (u.uid, u.status, u.status_key, u.status_updated_key, u.status_updated_at_ms, u.last_seen_at_ms)
            for u in changes.users.values()
        },
        "message": {
            (m.message_id, m.conversation_id, m.sender, m.sent_at_ms, m.edited_at_ms, m.deleted_at_ms, m.received_at_ms)
            for m in changes.messages.values()
        },
        "group_receipt": {
            (f.conversation_id, f.kind, f.message_id, f.at_ms, f.received_at_ms)
            for stairs in changes.group_receipts.values()
            for f in stairs
        },
        "group_receipt_flag": {
            (f.conversation_id, f.kind, f.message_id, f.received_at_ms) for f in changes.group_flags.values()
        },
        "chat_group": {(g.guid, g.key, g.members_count, g.deleted_key) for g in changes.groups.values()},
        "group_member": {(m.guid, m.uid, m.key, m.member, m.joined_at_ms) for m in changes.members.values()},
    }


async def _stored(engine: AsyncEngine) -> dict[str, set[tuple[Any, ...]]]:
    async with engine.connect() as connection:
        users = await connection.execute(
            select(
                UserPresence.uid,
                UserPresence.status,
                UserPresence.status_key,
                UserPresence.status_updated_key,
                UserPresence.status_updated_at,
                UserPresence.last_seen_at,
            )
        )
        messages = await connection.execute(
            select(
                Message.id,
                Message.conversation_id,
                Message.sender,
                Message.sent_at,
                Message.edited_at,
                Message.deleted_at,
                Message.received_at,
            )
        )
        steps = await connection.execute(
            select(
                GroupReceipt.conversation_id,
                GroupReceipt.kind,
                GroupReceipt.message_id,
                GroupReceipt.at,
                GroupReceipt.received_at,
            )
        )
        flags = await connection.execute(
            select(
                GroupReceiptFlag.conversation_id,
                GroupReceiptFlag.kind,
                GroupReceiptFlag.message_id,
                GroupReceiptFlag.received_at,
            )
        )
        groups = await connection.execute(
            select(ChatGroup.guid, ChatGroup.key, ChatGroup.members_count, ChatGroup.deleted_key)
        )
        members = await connection.execute(
            select(GroupMember.guid, GroupMember.uid, GroupMember.key, GroupMember.member, GroupMember.joined_at)
        )
        return {
            "user": {(u, s, k, dk, _ms(d), _ms(seen)) for u, s, k, dk, d, seen in users},
            "message": {(i, c, s, _ms(a), _ms(e), _ms(d), _ms(r)) for i, c, s, a, e, d, r in messages},
            "group_receipt": {(c, k, m, _ms(a), _ms(r)) for c, k, m, a, r in steps},
            "group_receipt_flag": {(c, k, m, _ms(r)) for c, k, m, r in flags},
            "chat_group": {tuple(row) for row in groups},
            "group_member": {(g, u, k, bool(m), _ms(j)) for g, u, k, m, j in members},
        }


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
async def test_any_order_any_repetition_any_transactions_store_the_core_s_join(
    databases: Databases, data: st.DataObject
) -> None:
    """The rows the SQL writes equal the pure core's joined ``Changes`` of every delivery, on each backend."""
    # Every body at least once, some again, in any order.
    repeats = data.draw(st.lists(st.integers(0, len(POOL) - 1), max_size=15), label="repeats")
    picks = data.draw(st.permutations([*range(len(POOL)), *repeats]), label="deliveries")
    # Each delivery received a millisecond after the previous: a redelivery has a later reception.
    deliveries = [(parse_event(POOL[i]), RECEIVED_MS + n) for n, i in enumerate(picks)]
    # A commit after each delivery or not: most histories meet the stored rows many times.
    ends = data.draw(st.lists(st.booleans(), min_size=len(deliveries), max_size=len(deliveries)), label="commits")
    cuts = [n + 1 for n, end in enumerate(ends) if end or n + 1 == len(deliveries)]
    url = await databases.fresh()
    engine = create_async_engine(url)
    try:
        writer = Writer(engine.dialect)
        start = 0
        for cut in cuts:
            async with engine.begin() as connection:
                await writer.apply(connection, changes_of(deliveries[start:cut]))
            start = cut
        assert await _stored(engine) == _expected(changes_of(deliveries))
    finally:
        await engine.dispose()
        await databases.drop(url)


async def test_membership_a_removal_beats_an_addition_and_a_deletion_ends_older_memberships(
    api: Api, database_url: str
) -> None:
    """``facts.is_member`` on the stored rows: kicked at the joining second, out; deleted, out; rejoined, in."""
    for index in (19, 13, 14, 15, 16, 17, 18):  # a connection first, then the group's events out of order
        await api.hook(POOL[index])
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as connection:
            [(deleted_key, members_count)] = (
                await connection.execute(select(ChatGroup.deleted_key, ChatGroup.members_count))
            ).all()
            rows = (await connection.execute(select(GroupMember.uid, GroupMember.member, GroupMember.key))).all()
    finally:
        await engine.dispose()
    members = {uid: is_member(bool(member), key, deleted_key) for uid, member, key in rows}
    assert members == {"ann": False, "bob": False, "cid": True}
    assert members_count == 1  # the newest group event's


async def test_receipts_answer_group_aggregates_edits_and_deletions(api: Api) -> None:
    """§8 through HTTP: timed aggregates cover earlier messages (earliest wins), untimed ones take ``sentAt``."""
    group = {"receiver": GUID, "receiver_type": "group"}
    await api.hook(payloads.message_sent(10, GROUP, "zoe", sent_at=S, **group))
    await api.hook(payloads.message_sent(20, GROUP, "amy", sent_at=S + 10, **group))
    await api.hook(payloads.message_sent(40, GROUP, "amy", sent_at=S + 100, **group))
    await api.hook(payloads.group_receipt("read", 30, guid=GUID, at=S + 60))
    await api.hook(payloads.group_receipt("read", 20, guid=GUID, at=S + 30))
    await api.hook(payloads.group_receipt("delivered", 10, guid=GUID, at=S + 5))
    await api.hook(payloads.group_receipt("delivered", 40, guid=GUID))  # no time: message 40's sentAt
    await api.hook(payloads.group_receipt("read", 50, guid=GUID))  # no time, message 50 unknown
    await api.hook(payloads.message_edited(10, GROUP, "zoe", edited_at=S + 90, sent_at=S))
    await api.hook(payloads.message_edited(10, GROUP, "zoe", edited_at=S + 70, sent_at=S, action_shape=False))
    await api.hook(payloads.message_deleted(20, GROUP, "amy", deleted_at=S + 80))
    await api.hook(
        payloads.receipt(
            "read", 20, reader="bob", message_sender="amy", at=S + 20, receiver=GUID, receiver_type="group"
        )
    )

    def fields(answer: dict[str, Any] | None) -> tuple[Any, ...]:
        assert answer is not None
        names = ("edited_at", "deleted_at", "delivered_to_all", "delivered_to_all_at", "read_by_all", "read_by_all_at")
        return tuple(answer[name] for name in names)

    iso = "2026-11-21T10:{}.000Z".format
    # Delivered by its own aggregate (S+5), read by 20's (S+30, earlier than 30's S+60); edited last at S+90.
    assert fields(await api.receipts("10")) == (iso("17:00"), None, True, iso("15:35"), True, iso("16:00"))
    # Deleted, its receipts still answer; delivered to all by the read aggregate (reading implies delivery).
    answer = await api.receipts("20")
    assert fields(answer) == (None, iso("16:50"), True, iso("16:00"), True, iso("16:00"))
    assert answer is not None
    assert [r["uid"] for r in answer["receipts"]] == ["bob"]
    # Read: the untimed aggregate of message 50 covers it, whose sentAt is unknown; delivered: its own, at sentAt.
    assert fields(await api.receipts("40")) == (None, None, True, iso("17:10"), True, None)
    assert fields(await api.receipts("50")) == (None, None, True, None, True, None)


async def test_a_one_to_one_message_has_no_group_aggregates(api: Api) -> None:
    await api.hook(payloads.message_sent(7, "a_user_b", "a", receiver="b", sent_at=S))
    await api.hook(payloads.group_receipt("read", 9, guid="a_user_b", at=S + 5))  # another conversation: group_…
    answer = await api.receipts("7")
    assert answer is not None
    assert (answer["delivered_to_all"], answer["delivered_to_all_at"], answer["read_by_all"]) == (False, None, False)


async def test_group_aggregates_expire_with_receipts(api: Api, database_url: str) -> None:
    """§7: timed and untimed aggregates go ``PRESENCE_RECEIPT_RETENTION`` after their reception; groups stay."""
    for index in (6, 11, 13):
        await api.hook(POOL[index])
    settings = make_settings(database_url).replace(
        inbox_retention=timedelta(days=7), receipt_retention=timedelta(days=90)
    )
    engine = create_async_engine(database_url)
    received = datetime.now(UTC)
    try:
        deleted = await retention.run_pass(engine, settings, received + timedelta(days=8))
        assert deleted["checkpoint_group_receipt"] == deleted["checkpoint_group_receipt_flag"] == 0
        tables = await state_tables(database_url)
        assert (len(tables["checkpoint_group_receipt"]), len(tables["checkpoint_group_receipt_flag"])) == (1, 1)
        assert await retention.run_pass(engine, settings, received + timedelta(days=89)) == dict.fromkeys(deleted, 0)
        deleted = await retention.run_pass(engine, settings, received + timedelta(days=91))
    finally:
        await engine.dispose()
    assert {name: deleted[name] for name in deleted if "group" in name} == {
        "group_receipt": 1,
        "checkpoint_group_receipt": 1,
        "group_receipt_flag": 1,
        "checkpoint_group_receipt_flag": 1,
    }
    tables = await state_tables(database_url)
    assert (len(tables["chat_group"]), len(tables["group_member"])) == (1, 1)
    assert (len(tables["group_receipt"]), len(tables["group_receipt_flag"])) == (0, 0)


async def test_rebuild_derives_the_new_tables_again(api: Api, database_url: str) -> None:
    """Rebuild empties the new tables and refills them from the checkpoint and the inbox, as intake left them."""
    pool = list(POOL)  # the action-shaped edit and deletion too: the inbox keeps what names their target
    for body in pool:
        await api.hook(body)
    built = await state_tables(database_url)
    assert all(built[name] for name in ("group_receipt", "group_receipt_flag", "chat_group", "group_member"))
    settings = make_settings(database_url).replace(inbox_retention=timedelta(days=7))
    engine = create_async_engine(database_url)
    try:
        # Half of the history into the checkpoint: the rebuild must join it with the rest of the inbox.
        await retention.run_pass(engine, settings, datetime.now(UTC) + timedelta(days=8))
        for body in pool[::2]:
            await api.hook(body)
        before = await state_tables(database_url, without_checkpoint=True)
        summary = await rebuild(engine, settings=settings)
    finally:
        await engine.dispose()
    assert summary.from_checkpoint > 0
    after = await state_tables(database_url, without_checkpoint=True)
    for name in before:
        assert after[name] == before[name], name
