"""The heart of the service: delivery order and repetition do not change the answer.

For generated histories, every shuffled and repeated delivery must give what
the contract's literal reading gives (``tests.oracle``: each event once, in time
order). First on the pure core alone, over many histories; then through HTTP
and SQL on each backend, with the deliveries posted concurrently so that group
commit mixes them into shared transactions.

The histories mix CometChat's two systems (contract §8, ``tests.support.histories``):
messages and receipts in either format or both, edits and deletions, group
aggregates, membership, and current-format connections with lost disconnects.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from presence.core.events import (
    ConnectionChanged,
    Event,
    GroupReceiptMarked,
    MembershipChanged,
    MessageChanged,
    MessageSent,
    ReceiptKind,
    ReceiptMarked,
    Session,
)
from presence.core.facts import (
    Changes,
    changes_of,
    group_receipt_at,
    is_live,
    is_member,
    join_flag,
    join_group,
    join_member,
    join_message,
    join_session,
    join_staircases,
    join_user,
    join_watermark,
    make_order_key,
    order_key,
    receipt_at,
)
from presence.core.parse import parse_event
from presence.core.times import datetime_to_ms, format_instant, ms_to_datetime
from presence.http.app import create_app
from presence.http.keys import COMMITTER
from presence.intake.accept import accept
from tests.support.api import Api, make_settings, serving
from tests.support.databases import Databases
from tests.support.histories import History, deliveries, histories
from tests.support.oracle import (
    expected_membership,
    expected_presence,
    expected_receipts,
    expected_watermarks,
    non_dominated_receipts,
)
from tests.support.state import dump

#: When the first delivery arrived (each later one a millisecond later).
RECEIVED_MS = 1_800_000_000_000


def _iso(ms: int | None) -> str | None:
    return None if ms is None else format_instant(ms_to_datetime(ms))


def _merge(into: Changes, batch: Changes) -> None:
    """Join one batch's facts into the state, as the database's upserts do."""
    for uid, user in batch.users.items():
        into.users[uid] = join_user(into.users[uid], user) if uid in into.users else user
    for session_key, session in batch.sessions.items():
        current_session = into.sessions.get(session_key)
        into.sessions[session_key] = session if current_session is None else join_session(current_session, session)
    for message_id, message in batch.messages.items():
        current = into.messages.get(message_id)
        into.messages[message_id] = message if current is None else join_message(current, message)
    for watermark_key, watermark in batch.watermarks.items():
        current_watermark = into.watermarks.get(watermark_key)
        into.watermarks[watermark_key] = (
            watermark if current_watermark is None else join_watermark(current_watermark, watermark)
        )
    for receipt_key, stairs in batch.receipts.items():
        into.receipts[receipt_key] = join_staircases(into.receipts.get(receipt_key, ()), stairs)
    for aggregate_key, aggregates in batch.group_receipts.items():
        into.group_receipts[aggregate_key] = join_staircases(into.group_receipts.get(aggregate_key, ()), aggregates)
    for flag_key, flag in batch.group_flags.items():
        current_flag = into.group_flags.get(flag_key)
        into.group_flags[flag_key] = flag if current_flag is None else join_flag(current_flag, flag)
    for guid, group in batch.groups.items():
        into.groups[guid] = join_group(into.groups[guid], group) if guid in into.groups else group
    for member_key, member in batch.members.items():
        current_member = into.members.get(member_key)
        into.members[member_key] = member if current_member is None else join_member(current_member, member)


def _stored_receipts(state: Changes) -> set[tuple[str, str, str, int, int]]:
    return {
        (step.conversation_id, step.reader, step.kind, step.message_id, step.at_ms)
        for stairs in state.receipts.values()
        for step in stairs
    }


def _presence_answers(state: Changes) -> dict[str, dict[str, Any]]:
    answers = {}
    for uid, user in state.users.items():
        live = [s for s in state.sessions.values() if s.uid == uid and is_live(s.live, s.signal_key, user.snapshot_key)]
        live.sort(key=lambda s: (s.connected_at_ms is None, s.connected_at_ms or 0, s.session_id))
        answers[uid] = {
            "uid": uid,
            "status": user.status,
            "status_updated_at": _iso(user.status_updated_at_ms),
            "last_seen_at": _iso(user.last_seen_at_ms),
            "status_source": user.status_source,
            "connections": [
                {
                    "session_id": s.session_id,
                    "device_id": s.device_id,
                    "platform": s.platform,
                    "connected_at": _iso(s.connected_at_ms),
                }
                for s in live
            ],
        }
    return answers


def _receipt_answers(state: Changes) -> dict[str, dict[str, Any]]:
    answers = {}
    for message_id, message in state.messages.items():
        # Only the first step of each staircase at or above the message is asked: a wrong pruning shows.
        by_reader: dict[str, dict[str, int | None]] = {}
        for (conversation_id, reader, kind), stairs in state.receipts.items():
            at = receipt_at(stairs, message_id)
            if conversation_id != message.conversation_id or reader == message.sender or at is None:
                continue
            times = by_reader.setdefault(reader, {"delivered": None, "read": None})
            for implied in ("delivered", "read") if kind == "read" else ("delivered",):
                current = times[implied]
                times[implied] = at if current is None else min(current, at)
        rows = [
            {"uid": uid, "delivered_at": _iso(t["delivered"]), "read_at": _iso(t["read"])}
            for uid, t in sorted(by_reader.items())
        ]
        delivered_to_all, delivered_to_all_at = _group_receipt(state, message.conversation_id, "delivered", message_id)
        read_by_all, read_by_all_at = _group_receipt(state, message.conversation_id, "read", message_id)
        answers[str(message_id)] = {
            "message_id": str(message_id),
            "conversation_id": message.conversation_id,
            "sender": message.sender,
            "receipts": rows,
            "delivered_count": len(rows),
            "read_count": sum(1 for row in rows if row["read_at"] is not None),
            "edited_at": _iso(message.edited_at_ms),
            "deleted_at": _iso(message.deleted_at_ms),
            "delivered_to_all": delivered_to_all,
            "delivered_to_all_at": _iso(delivered_to_all_at),
            "read_by_all": read_by_all,
            "read_by_all_at": _iso(read_by_all_at),
        }
    return answers


def _group_receipt(state: Changes, conversation_id: str, kind: ReceiptKind, message_id: int) -> tuple[bool, int | None]:
    """``facts.group_receipt_at`` over the kinds that imply ``kind``: a read-by-all is a delivered-to-all."""

    def sent_at(covered: int) -> int | None:
        message = state.messages.get(covered)
        return None if message is None else message.sent_at_ms

    implied: tuple[ReceiptKind, ...] = ("delivered", "read") if kind == "delivered" else ("read",)
    happened, times = False, []
    for each in implied:
        flags = [f for (c, k, _), f in state.group_flags.items() if (c, k) == (conversation_id, each)]
        stairs = state.group_receipts.get((conversation_id, each), ())
        covered, at = group_receipt_at(stairs, flags, sent_at, message_id)
        happened |= covered
        times += [] if at is None else [at]
    return happened, min(times, default=None)


def _membership_answers(state: Changes) -> dict[str, dict[str, Any]]:
    answers: dict[str, dict[str, Any]] = {
        guid: {"members": {}, "members_count": group.members_count} for guid, group in state.groups.items()
    }
    for (guid, uid), member in state.members.items():
        if is_member(member.member, member.key, state.groups[guid].deleted_key):
            answers[guid]["members"][uid] = member.joined_at_ms
    return answers


def _watermark_answers(state: Changes) -> dict[str, dict[str, Any]]:
    conversations = {m.conversation_id for m in state.messages.values()}
    conversations |= {w.conversation_id for w in state.watermarks.values()}
    answers = {}
    for conversation in conversations:
        readers: dict[str, dict[str, Any]] = {}
        for (conversation_id, reader, kind), mark in sorted(state.watermarks.items()):
            if conversation_id != conversation:
                continue
            row = readers.setdefault(
                reader,
                {"uid": reader, "delivered_up_to": None, "delivered_at": None, "read_up_to": None, "read_at": None},
            )
            row[f"{kind}_up_to"], row[f"{kind}_at"] = str(mark.message_id), _iso(mark.at_ms)
        answers[conversation] = {"conversation_id": conversation, "readers": [readers[r] for r in sorted(readers)]}
    return answers


@settings(max_examples=400, deadline=None)
@given(data=st.data(), history=histories(max_connection_events=24, max_reconcile_facts=4))
def test_core_any_order_any_repetition_any_batching_gives_the_in_order_answer(
    data: st.DataObject, history: History
) -> None:
    """The pure joins, over shuffled, repeated deliveries cut into arbitrary batches, equal the oracle.

    The histories include reconciliation facts at random times (contract §10): in any order, the
    answer is the in-order one in which each pass's correction is one more event.
    """
    delivered: list[Event] = [parse_event(b) for b in data.draw(deliveries(history.bodies))]
    cuts = sorted(data.draw(st.lists(st.integers(0, len(delivered)), max_size=4)))
    state = Changes()
    for start, end in zip([0, *cuts], [*cuts, len(delivered)], strict=True):
        # Each delivery is received at its own moment: when it arrived never changes what it means.
        _merge(
            state,
            changes_of((event, RECEIVED_MS + index) for index, event in enumerate(delivered) if start <= index < end),
        )

    assert _presence_answers(state) == expected_presence(history.bodies)
    assert _stored_receipts(state) == non_dominated_receipts(history.bodies)
    for stairs in state.receipts.values():
        steps = [(step.message_id, step.at_ms) for step in stairs]
        assert all(a < c and b < d for (a, b), (c, d) in itertools.pairwise(steps)), steps
    # The pure joins hold no §11 answer (members, unread_by): the SQL does, below.
    assert _receipt_answers(state) == expected_receipts(history.bodies, unread_by=False)
    assert _watermark_answers(state) == expected_watermarks(history.bodies)
    assert _membership_answers(state) == expected_membership(history.bodies)
    for aggregates in state.group_receipts.values():
        steps = [(step.message_id, step.at_ms) for step in aggregates]
        assert all(a < c and b < d for (a, b), (c, d) in itertools.pairwise(steps)), steps


async def _answers(databases: Databases, waves: list[list[dict[str, Any]]], history: History) -> Any:
    """Post each wave's bodies concurrently, one wave after another; then ask every question."""
    url = await databases.fresh()
    try:
        async with TestClient(TestServer(create_app(make_settings(url)))) as client:
            api = Api(client)
            for wave in waves:
                await asyncio.gather(*(api.hook(body) for body in wave))
            presence = {uid: await api.presence(uid) for uid in history.uids}
            receipts = {message_id: await api.receipts(message_id) for message_id in history.message_ids}
            watermarks = {}
            for conversation in history.conversation_ids:
                response = await api.get(f"/conversations/{conversation}/receipts")
                watermarks[conversation] = None if response.status == 404 else await response.json()
        kept = {(c, r, k, m, datetime_to_ms(at)) for c, r, k, m, at, _received in (await dump(url))["receipt"]}
        return presence, receipts, watermarks, kept
    finally:
        await databases.drop(url)


def _in_time_order(bodies: tuple[dict[str, Any], ...]) -> list[dict[str, Any]]:
    def when(body: dict[str, Any]) -> tuple[int, bytes]:
        event = parse_event(body)
        if isinstance(event, ConnectionChanged):
            return event.at_ms, order_key(event)
        if isinstance(event, ReceiptMarked):
            return event.at_ms, b""
        if isinstance(event, MessageSent):
            return event.sent_at_ms or 0, b""
        if isinstance(event, MembershipChanged):
            return event.at_ms, order_key(event)
        if isinstance(event, MessageChanged | GroupReceiptMarked):
            return event.at_ms or 0, b""
        return 0, b""

    return sorted(bodies, key=when)


#: Smaller histories through HTTP and SQL, where each costs two fresh databases and many requests.
http_histories = histories(max_connection_events=8, max_messages=4, max_membership_events=2)


def _waves(data: st.DataObject, shuffled: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Waves of 1 to 8 concurrent requests: group commit shares transactions within a wave, and
    successive waves meet the stored rows through the SQL upserts."""
    waves: list[list[dict[str, Any]]] = []
    start = 0
    while start < len(shuffled):
        size = data.draw(st.integers(1, 8), label="wave size")
        waves.append(shuffled[start : start + size])
        start += size
    return waves


def _expected(history: History) -> Any:
    presence = expected_presence(history.bodies)
    receipts = expected_receipts(history.bodies)
    watermarks = expected_watermarks(history.bodies)
    return (
        {uid: presence.get(uid) for uid in history.uids},
        {message_id: receipts.get(message_id) for message_id in history.message_ids},
        {conversation: watermarks.get(conversation) for conversation in history.conversation_ids},
        # The rows kept are exactly the receipts no other dominates: a wrong pruning shows here too.
        non_dominated_receipts(history.bodies),
    )


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), history=http_histories)
async def test_http_any_order_any_repetition_gives_the_in_order_answer(
    databases: Databases, data: st.DataObject, history: History
) -> None:
    """Through HTTP and SQL: shuffled, repeated, partly concurrent delivery of histories mixing both
    formats answers as in order, and as the oracle: the whole answers, with the fields of contract §8
    (``edited_at``, ``deleted_at``, the group aggregates, the ``status_updated_at`` of a current event
    whose status did not flip)."""
    waves = _waves(data, data.draw(deliveries(history.bodies)))

    in_order = await _answers(databases, [[body] for body in _in_time_order(history.bodies)], history)
    disordered = await _answers(databases, waves, history)

    expected = _expected(history)
    assert in_order == expected
    assert disordered == expected


async def _presence_through_the_committer(
    databases: Databases, waves: list[list[dict[str, Any]]], uids: tuple[str, ...]
) -> dict[str, Any]:
    """Commit each wave's bodies concurrently through the app's committer, the path a pass's corrections
    take (``/hook`` refuses them), one wave after another; then ask each user's presence."""
    url = await databases.fresh()
    try:
        async with serving(make_settings(url)) as client:
            committer = client.app[COMMITTER]
            for wave in waves:
                received = datetime.now(UTC)
                await asyncio.gather(
                    *(committer.submit(accept(orjson.dumps(body), received_at=received, own=True)) for body in wave)
                )
            api = Api(client)
            return {uid: await api.presence(uid) for uid in uids}
    finally:
        await databases.drop(url)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    data=st.data(),
    history=histories(max_connection_events=8, max_messages=1, max_membership_events=1, max_reconcile_facts=3),
)
async def test_sql_reconcile_facts_in_any_order_give_the_in_order_answer(
    databases: Databases, data: st.DataObject, history: History
) -> None:
    """Contract §10 through the SQL upserts: connections and reconciliation facts, shuffled, repeated and
    committed in concurrent waves, answer as the oracle does with each fact one more event in time order."""
    waves = _waves(data, data.draw(deliveries(history.bodies)))

    answers = await _presence_through_the_committer(databases, waves, history.uids)

    expected = expected_presence(history.bodies)
    assert answers == {uid: expected.get(uid) for uid in history.uids}


# --- order keys: the digest is the event's repr, as in every database already written -------------

_SESSIONS = st.builds(
    Session,
    session_id=st.text(max_size=6),
    device_id=st.none() | st.text(max_size=6),
    platform=st.none() | st.text(max_size=6),
    connected_at_ms=st.none() | st.integers(0, 2**48),
)


@given(
    st.builds(
        ConnectionChanged,
        uid=st.text(max_size=6),
        kind=st.sampled_from(["connected", "disconnected"]),
        at_ms=st.integers(0, 2**48),
        status=st.text(max_size=6),
        status_updated_at_ms=st.none() | st.integers(0, 2**48),
        session=_SESSIONS,
        snapshot=st.none() | st.lists(_SESSIONS, max_size=3).map(tuple),
        dates_status=st.booleans(),
        format=st.sampled_from(["legacy", "current"]),
    )
)
def test_a_connection_events_order_key_digests_its_repr(event: ConnectionChanged) -> None:
    """The key a redelivered event gets is the one its first delivery stored, whatever version made it."""
    digest = hashlib.blake2b(repr(event).encode(), digest_size=16).digest()
    assert order_key(event) == make_order_key(event.at_ms, event.kind, digest)


def test_order_keys_are_those_already_stored() -> None:
    """Keys written by earlier versions, byte for byte: a change of the digest would count old events anew."""
    first = Session("s-1", "d-1", "web", 1_700_000_000_000)
    other = Session("it's", None, None, None)
    keys = {
        ConnectionChanged("u-1", "connected", 1_700_000_000_001, "online", None, first, (first,)): (
            "0000018bcfe56801005d7000c775877c6d4b7d1a5b03d1b916"
        ),
        ConnectionChanged('u"2', "disconnected", 5, "offline", 7, other, (first, other)): (
            "0000000000000005015b01e437cdfbbdb9f8ffe1716d2b9872"
        ),
        ConnectionChanged("u-3", "connected", 5, "online", None, other, None): (
            "000000000000000500d9695145b8c7315429447628e2ea54d6"
        ),
        ConnectionChanged("u-3", "connected", 5, "online", None, other, ()): (
            "000000000000000500f7b284b8e0b0a21703a4c1965c8cce70"
        ),
    }
    for event, key in keys.items():
        assert order_key(event).hex() == key
