"""The change feed over generated histories (contract §9), through HTTP and SQL on each backend.

For shuffled deliveries with repeats, posted concurrently (group commit mixes them into shared
transactions) or one at a time:

- the last presence change of each user equals its in-order answer: its status and live connections
  (its times are as of that change: a later event that moves only them is no change);
- every receipt stored (no other dominates it) appears as exactly one receipt change, with its time;
- posting the whole history again records nothing: stale and repeated events are no change;
- every presence change's status and ``last_seen_at`` are those after some event of that user in
  time order (the oracle's prefix states). The whole object cannot be: a user's sessions after the
  events delivered so far need not be those after any prefix in time order (``s2`` connecting
  delivered before ``s1`` connecting, earlier, leaves ``[s2]`` live, which no prefix has);
- delivered one at a time, the presence changes of each user are exactly the oracle's answers after
  each delivery where its status or set of live connections differ from the one before, and the
  receipt changes exactly the receipts that became non-dominated, or earlier, at each delivery.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import orjson
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from presence.core.events import ConnectionChanged, ReceiptMarked
from presence.core.facts import order_key
from presence.core.parse import parse_event
from presence.core.times import datetime_to_ms
from presence.db.changes import render
from presence.http.app import create_app
from tests.support.api import Api, make_settings
from tests.support.databases import Databases
from tests.support.histories import History, deliveries, histories
from tests.support.oracle import expected_presence, non_dominated_receipts
from tests.support.state import dump

Receipt = tuple[str, str, str, int, int]

#: Small histories: each example costs a fresh database and many requests.
change_histories = histories(max_connection_events=8, max_messages=3, max_membership_events=1)


async def _walk(api: Api, limit: int) -> list[dict[str, Any]]:
    """Every change, page after page from 0: each once, in ``seq`` order."""
    seen: list[dict[str, Any]] = []
    after = 0
    while True:
        page = await api.get_json(f"/changes?after={after}&limit={limit}")
        seen += page["changes"]
        if page["next_after"] == after:
            return seen
        after = page["next_after"]


async def _stored(url: str) -> list[dict[str, Any]]:
    """The changes as SQL holds them, rendered as the API answers."""
    rows = sorted((await dump(url))["change"])
    return [orjson.loads(render(seq, body)) for seq, _type, _uid, _conversation, _at, body in rows]


def _receipt_of(change: dict[str, Any]) -> Receipt:
    at = datetime_to_ms(datetime.fromisoformat(change["at"].replace("Z", "+00:00")))
    return change["conversation_id"], change["uid"], change["kind"], int(change["message_id"]), at


def _view(presence: dict[str, Any] | None) -> Any:
    if presence is None:
        return None
    return presence["status"], sorted(orjson.dumps(c) for c in presence["connections"])


def _about(presence: dict[str, Any]) -> tuple[str, str, list[dict[str, Any]]]:
    return presence["uid"], presence["status"], presence["connections"]


def _prefix_states(bodies: tuple[dict[str, Any], ...]) -> dict[str, list[dict[str, Any]]]:
    """Each user's in-order answers: after its first event, its first two, …, in time order (the oracle's)."""
    events: dict[ConnectionChanged, dict[str, Any]] = {}
    for body in bodies:
        event = parse_event(body)
        if isinstance(event, ConnectionChanged):
            events[event] = body
    ordered = sorted(events, key=lambda e: (e.at_ms, e.kind == "disconnected", order_key(e)))
    states: dict[str, list[dict[str, Any]]] = {}
    for end, event in enumerate(ordered, start=1):
        states.setdefault(event.uid, []).append(expected_presence([events[e] for e in ordered[:end]])[event.uid])
    return states


def _check_final(history: History, changes: list[dict[str, Any]]) -> None:
    assert [c["seq"] for c in changes] == list(range(1, len(changes) + 1))
    # What a change is about: the status and the connections. Its times are as of that change; a later
    # event that moves only them (``last_seen_at``, ``status_updated_at``) is no change.
    expected = {uid: _about(presence) for uid, presence in expected_presence(history.bodies).items()}
    last = {c["uid"]: _about(c["presence"]) for c in changes if c["type"] == "presence"}
    assert last == expected
    prefixes = _prefix_states(history.bodies)
    for change in (c for c in changes if c["type"] == "presence"):
        presence = change["presence"]
        assert change["uid"] == presence["uid"]
        assert (presence["status"], presence["last_seen_at"]) in {
            (state["status"], state["last_seen_at"]) for state in prefixes[change["uid"]]
        }, change
    receipts = [_receipt_of(c) for c in changes if c["type"] == "receipt"]
    for kept in non_dominated_receipts(history.bodies):
        assert receipts.count(kept) == 1, kept
    assert all(r[:4] in {k[:4] for k in _all_receipts(history.bodies)} for r in receipts)


def _all_receipts(bodies: tuple[dict[str, Any], ...] | list[dict[str, Any]]) -> set[Receipt]:
    return non_dominated_receipts(bodies) | {
        (e.conversation_id, e.reader, e.kind, e.message_id, e.at_ms)
        for e in map(parse_event, bodies)
        if isinstance(e, ReceiptMarked)
    }


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), history=change_histories)
async def test_changes_of_any_order_any_repetition_concurrently(
    databases: Databases, data: st.DataObject, history: History
) -> None:
    delivered = data.draw(deliveries(history.bodies))
    limit = data.draw(st.sampled_from([1, 3, 1000]), label="page size")
    url = await databases.fresh()
    try:
        async with TestClient(TestServer(create_app(make_settings(url)))) as client:
            api = Api(client)
            start = 0
            while start < len(delivered):
                size = data.draw(st.integers(1, 8), label="wave size")
                await asyncio.gather(*(api.hook(body) for body in delivered[start : start + size]))
                start += size
            changes = await _walk(api, limit)
            assert changes == await _stored(url)
            _check_final(history, changes)
            # Everything again, concurrently: every event is stale or repeated now.
            await asyncio.gather(*(api.hook(body) for body in history.bodies))
            assert await _walk(api, 1000) == changes
    finally:
        await databases.drop(url)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), history=change_histories)
async def test_changes_of_deliveries_one_at_a_time_are_the_oracles_differences(
    databases: Databases, data: st.DataObject, history: History
) -> None:
    delivered = data.draw(deliveries(history.bodies))
    url = await databases.fresh()
    try:
        async with TestClient(TestServer(create_app(make_settings(url)))) as client:
            api = Api(client)
            for body in delivered:
                await api.hook(body)
            changes = await _walk(api, 1000)
    finally:
        await databases.drop(url)
    _check_final(history, changes)

    expected_presences: list[dict[str, Any]] = []
    expected_receipts: list[Receipt] = []
    before_presence: dict[str, dict[str, Any]] = {}
    before_receipts: set[Receipt] = set()
    for end in range(1, len(delivered) + 1):
        prefix = delivered[:end]
        after_presence = expected_presence(prefix)
        for uid in sorted(after_presence):
            if _view(after_presence[uid]) != _view(before_presence.get(uid)):
                expected_presences.append(after_presence[uid])
        after_receipts = non_dominated_receipts(prefix)
        earlier = {r[:4]: r[4] for r in before_receipts}
        expected_receipts += sorted(r for r in after_receipts if r[:4] not in earlier or r[4] < earlier[r[:4]])
        before_presence, before_receipts = after_presence, after_receipts
    assert [c["presence"] for c in changes if c["type"] == "presence"] == expected_presences
    assert [_receipt_of(c) for c in changes if c["type"] == "receipt"] == expected_receipts
