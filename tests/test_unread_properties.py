"""Contract §11 as a property: any order, any repetition, every member's unread counts as a direct count.

Generated conversations (one one-to-one, one group), messages in either format or both (some of
an untracked category, some deleted), read and delivery receipts, and the group's membership
events, delivered shuffled and repeated in concurrent waves through ``POST /hook``. Then every
user's ``GET /users/{uid}/unread``, walked a page of one at a time, must equal the oracle: the
definition counted directly over the history, message by message.

Message ids straddle the tally blocks of every level (63/64, 4095/4096, ... ``2**36``), so each
part of a count (message rows near the watermark, blocks of each level) is exercised. As
CometChat assigns them, ids grow with the time a message is sent.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from presence.core.conversations import participants
from presence.core.events import Event, MessageChanged, MessageSent, ReceiptMarked
from presence.core.parse import parse_event
from presence.core.times import format_instant, ms_to_datetime
from presence.http.app import create_app
from tests.support import payloads
from tests.support.api import Api, make_settings
from tests.support.databases import Databases
from tests.support.histories import deliveries
from tests.support.oracle import active_users, expected_membership, membership_named

UIDS = ("u1", "u2", "u3")
GUID = "g1"
GROUP = f"group_{GUID}"
PAIR = "u1_user_u2"
#: Around the block boundaries of each tally level (6 bits a level).
IDS = sorted({1, 2, 62, 63, 64, 65, 4095, 4096, 4097, 2**18 - 1, 2**18, 2**24 + 3, 2**30 - 1, 2**30, 2**36 + 7})
BASE_S = 1_763_720_000
Body = dict[str, Any]


@st.composite
def unread_histories(draw: st.DrawFn) -> list[Body]:
    bodies: list[Body] = []
    chosen = sorted(draw(st.lists(st.sampled_from(IDS), unique=True, min_size=1, max_size=8)))
    sent: list[tuple[int, str, str]] = []
    for rank, message_id in enumerate(chosen):
        conversation = draw(st.sampled_from((GROUP, PAIR)))
        members = UIDS if conversation == GROUP else ("u1", "u2")
        sender = draw(st.sampled_from(members))
        sent_s = BASE_S + 10 * rank  # ids grow with sending time
        group = conversation == GROUP
        receiver = GUID if group else next(m for m in members if m != sender)
        category = draw(st.sampled_from(("message", "message", "message", "action")))
        for build in draw(
            st.sampled_from(((payloads.message,), (payloads.message_sent,), (payloads.message, payloads.message_sent)))
        ):
            bodies.append(
                build(
                    message_id,
                    conversation,
                    sender,
                    receiver=receiver,
                    receiver_type="group" if group else "user",
                    category=category,
                    sent_at=sent_s,
                )
            )
        if draw(st.integers(0, 4)) == 0:
            deleted = payloads.message_deleted(
                message_id, conversation, sender, deleted_at=sent_s + 5, action_shape=False
            )
            deleted["data"]["message"]["sentAt"] = sent_s  # the message's own, as CometChat sends it
            bodies.append(deleted)
        sent.append((message_id, conversation, sender))
    for _ in range(draw(st.integers(0, 6))):
        message_id, conversation, sender = draw(st.sampled_from(sent))
        group = conversation == GROUP
        reader = draw(st.sampled_from(UIDS if group else tuple(u for u in ("u1", "u2") if u != sender)))
        receipt = draw(st.sampled_from((payloads.receipt, payloads.current_receipt)))
        bodies.append(
            receipt(
                draw(st.sampled_from(("read", "read", "delivered"))),
                message_id,
                reader=reader,
                message_sender=sender if not group or draw(st.booleans()) else None,
                at=BASE_S + draw(st.integers(0, 10 * len(chosen))),
                receiver=GUID if group else sender,
                receiver_type="group" if group else "user",
            )
        )
    for _ in range(draw(st.integers(0, 4))):
        trigger = draw(
            st.sampled_from(("group_member_joined", "group_member_added", "group_member_left", "group_member_kicked"))
        )
        bodies.append(
            payloads.membership(
                trigger,
                GUID,
                draw(st.lists(st.sampled_from(UIDS), unique=True, min_size=1, max_size=2)),
                updated_at=BASE_S + draw(st.integers(0, 10 * len(chosen))),
                members_count=draw(st.one_of(st.none(), st.integers(0, 3))),
            )
        )
    return bodies


def expected_members(bodies: list[Body]) -> dict[str, dict[str, Any] | None]:
    """§11 read literally: each conversation's members as ``/members`` lists them; ``None`` where unknown (404)."""
    events: list[Event] = [parse_event(body) for body in bodies]
    group = expected_membership(bodies).get(GUID)
    rows = [
        {"uid": uid, "joined_at": format_instant(ms_to_datetime(at_ms)), "known_from": "membership"}
        for uid, at_ms in (group or {"members": {}})["members"].items()
    ]
    rows += [
        {"uid": uid, "joined_at": None, "known_from": "activity"}
        for uid in active_users(events, GROUP) - membership_named(events, GUID)
    ]
    named_pair = any(
        isinstance(e, ReceiptMarked | MessageChanged) or (isinstance(e, MessageSent) and e.tracked)
        for e in events
        if isinstance(e, MessageSent | ReceiptMarked | MessageChanged) and e.conversation_id == PAIR
    )
    took_part = any(
        (isinstance(e, MessageSent) and e.tracked) or isinstance(e, ReceiptMarked)
        for e in events
        if isinstance(e, MessageSent | ReceiptMarked) and e.conversation_id == PAIR
    )
    pair = [{"uid": uid, "joined_at": None, "known_from": "party"} for uid in ("u1", "u2")] if took_part else []
    group_known = (
        group is not None
        or bool(rows)
        or any(
            isinstance(e, MessageChanged) or (isinstance(e, MessageSent) and e.tracked)
            for e in events
            if isinstance(e, MessageSent | MessageChanged) and e.conversation_id == GROUP
        )
    )
    return {
        GROUP: {
            "members": sorted(rows, key=lambda row: row["uid"]),
            "members_count": None if group is None else group["members_count"],
            "next_cursor": None,
        }
        if group_known
        else None,
        PAIR: {"members": pair, "members_count": None, "next_cursor": None} if named_pair or took_part else None,
    }


def expected_unread(bodies: list[Body]) -> dict[str, dict[str, Any]]:
    """§11 read literally: per user, each conversation with a known message, newest first, and the total."""
    events: list[Event] = [parse_event(body) for body in bodies]
    members = expected_membership(bodies).get(GUID, {"members": {}})["members"]
    named_in_membership = membership_named(events, GUID)
    tracked = {e.message_id: e for e in events if isinstance(e, MessageSent) and e.tracked}
    deleted = {e.message_id for e in events if isinstance(e, MessageChanged) and e.kind == "deleted"}
    named: dict[str, set[int]] = {}
    for e in events:
        if isinstance(e, MessageSent) and not e.tracked:
            continue
        if isinstance(e, MessageSent | ReceiptMarked | MessageChanged):
            named.setdefault(e.conversation_id, set()).add(e.message_id)
    answers = {}
    for uid in UIDS:
        joined: dict[str, int | None] = {}
        if uid in members:
            joined[GROUP] = members[uid]
        elif uid in active_users(events, GROUP) and uid not in named_in_membership:
            joined[GROUP] = None
        parties = {
            party
            for e in events
            if (isinstance(e, MessageSent) and e.tracked) or isinstance(e, ReceiptMarked)
            if e.conversation_id == PAIR
            for party, _ in participants(PAIR, ("u1",))
        }
        if uid in parties:
            joined[PAIR] = None
        rows: list[dict[str, Any]] = []
        for conversation, joined_at in joined.items():
            if conversation not in named:
                continue
            reads = [
                e.message_id
                for e in events
                if isinstance(e, ReceiptMarked)
                and e.conversation_id == conversation
                and e.reader == uid
                and e.kind == "read"
            ]
            read_up_to = max(reads, default=None)
            unread = [
                m
                for m in tracked.values()
                if m.conversation_id == conversation
                and m.message_id not in deleted
                and m.sender != uid
                and (read_up_to is None or m.message_id > read_up_to)
                and (joined_at is None or (m.sent_at_ms or 0) >= joined_at)
            ]
            rows.append(
                {
                    "conversation_id": conversation,
                    "unread_count": len(unread),
                    "last_message_id": str(max(named[conversation])),
                    "read_up_to": None if read_up_to is None else str(read_up_to),
                }
            )
        rows.sort(key=lambda row: (-int(row["last_message_id"]), row["conversation_id"]))
        answers[uid] = {"conversations": rows, "total_unread": sum(row["unread_count"] for row in rows)}
    return answers


async def _unread_answers(databases: Databases, waves: list[list[Body]]) -> dict[str, dict[str, Any] | None]:
    url = await databases.fresh()
    try:
        async with TestClient(TestServer(create_app(make_settings(url)))) as client:
            api = Api(client)
            for wave in waves:
                await asyncio.gather(*(api.hook(body) for body in wave))
            answers: dict[str, dict[str, Any] | None] = {}
            for uid in UIDS:
                rows: list[dict[str, Any]] = []
                totals = set()
                page = await api.get_json(f"/users/{uid}/unread?limit=1")
                while True:
                    rows += page["conversations"]
                    totals.add(page["total_unread"])
                    if page["next_cursor"] is None:
                        break
                    page = await api.get_json(f"/users/{uid}/unread?limit=1&cursor={page['next_cursor']}")
                assert len(totals) == 1, "every page gives the same total"
                answers[uid] = {"conversations": rows, "total_unread": totals.pop()}
            for conversation in (GROUP, PAIR):
                response = await api.get(f"/conversations/{conversation}/members")
                answers[conversation] = None if response.status == 404 else await response.json()
            return answers
    finally:
        await databases.drop(url)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), history=unread_histories())
async def test_any_order_any_repetition_every_unread_count_is_the_direct_count(
    databases: Databases, data: st.DataObject, history: list[Body]
) -> None:
    """§11: unread counts and members are a function of the stored state: shuffled, repeated, concurrent
    delivery answers as the direct count over the history does."""
    shuffled = data.draw(deliveries(tuple(history)))
    waves: list[list[Body]] = []
    start = 0
    while start < len(shuffled):
        size = data.draw(st.integers(1, 6), label="wave size")
        waves.append(shuffled[start : start + size])
        start += size
    assert await _unread_answers(databases, waves) == {**expected_unread(history), **expected_members(history)}
