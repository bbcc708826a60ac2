"""The typed fast path (``presence.core.typed``) reads exactly what the general readers read, or nothing."""

from __future__ import annotations

import copy
from typing import Any

import msgspec
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench import workload
from presence.core import inbox, typed
from presence.core.events import Event, InvalidEvent
from presence.core.inbox import TooDeep, cannot_hold_content, without_content
from presence.core.parse import parse_event
from tests.support.payloads import Body, connection, device, message, receipt

SESSION = device("s-1", connected_at="1700000000000")
BODIES: list[Body] = [
    connection("u-1", "connected", 1_700_000_000_000, SESSION, connections=[SESSION, device("s-2")]),
    connection("u-1", "disconnected", 1_700_000_000, SESSION, trigger="user_connection_status_change"),
    message(57, "u-1_user_u-2", "u-1"),
    message("58", "group_g-1", "u-1", category="action"),
    receipt("delivered", 57, reader="u-2", message_sender="u-1", at=1_700_000_000, receiver="u-1"),
    receipt("read", 57, reader="u-2", message_sender=None, at="1700000000", receiver="g-1", receiver_type="group"),
]


def general(body: Body) -> tuple[Event, dict[str, object]] | None:
    """What ``accept`` makes of ``body`` without the fast path; ``None`` if it refuses it."""
    try:
        event = parse_event(body)
        return event, body if cannot_hold_content(orjson.dumps(body)) else without_content(body)
    except (InvalidEvent, TooDeep):
        return None


def assert_same(body: Body) -> bool:
    """Whether the fast path took ``body``; when it did, it read what the general readers read."""
    fast = typed.read(body, orjson.dumps(body))
    if fast is None:
        return False
    expected = general(body)
    assert expected is not None, "the fast path took a body the general readers refuse"
    (event, kept), (general_event, general_kept) = fast, expected
    assert type(event) is type(general_event)
    assert event == general_event
    # The order key's digest is made of the repr; the format is only for error messages.
    assert repr(event) == repr(general_event)
    assert getattr(event, "format", None) == getattr(general_event, "format", None)
    assert orjson.dumps(kept) == orjson.dumps(general_kept)
    return True


def test_the_common_bodies_take_the_fast_path() -> None:
    for body in BODIES:
        assert assert_same(body), body["trigger"]


def test_the_benchmark_bodies_take_the_fast_path() -> None:
    for raw in workload.generate(events=2_000).bodies:
        assert assert_same(orjson.loads(raw))


def test_no_struct_names_a_key_the_scrub_acts_on() -> None:
    acted_on = inbox._ACTED_ON | inbox.KEYED_BY_UID
    structs = [value for value in vars(typed).values() if isinstance(value, type) and issubclass(value, msgspec.Struct)]
    assert len(structs) > 8
    for struct in structs:
        assert not acted_on & set(struct.__struct_fields__), struct


def _paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [path]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*path, index))
    return found


INTERESTING_STRINGS = [
    "",
    "\x00",
    "a\x00b",
    "x" * 255,
    "x" * 256,
    "y" * 513,
    "connected",
    "disconnected",
    "online",
    "user",
    "group",
    "action",
    "call",
    "message",
    "42",
    "-1",
    "1700000000000",
    "1700000000.5",
    " 1700000000 ",
    "99999999999999999999",
    "9223372036854775808",
    "text",
    "data",
]
INTERESTING_NUMBERS: list[int | float] = [0, -1, 1, 10**11, 10**11 + 1, 253_402_300_799, 253_402_300_799_999]
INTERESTING_NUMBERS += [253_402_300_800_000]
INTERESTING_NUMBERS += [2**63 - 1, 2**63, 2**64 - 1, 1.5, 1_700_000_000.25, -0.0]
INTERESTING: list[object] = [None, True, False, [], {}, {"text": "x"}, *INTERESTING_STRINGS, *INTERESTING_NUMBERS]
STRINGS = st.sampled_from(INTERESTING_STRINGS) | st.text(max_size=8)
NUMBERS: st.SearchStrategy[int | float] = st.sampled_from(INTERESTING_NUMBERS)
NUMBERS |= st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False, allow_infinity=False)
SCALARS = st.none() | st.booleans() | STRINGS | NUMBERS
KEYS = st.sampled_from(
    [
        "uid",
        "name",
        "text",
        "data",
        "members",
        "message",
        "session_id",
        "connected_at",
        "platform",
        "status",
        "event_for",
        "connections",
        "receiptReceiver",
        "messageSender",
        "deliveredAt",
        "readAt",
        "category",
        "sentAt",
        "id",
        "currentConnection",
        "body",
        "extra",
    ]
)
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=3))


def test_every_field_changed_or_left_out_is_read_as_the_general_readers_read_it() -> None:
    """Each value of each field, one at a time: the limits (lengths, NUL, instants' ranges) are met exactly."""
    for base in BODIES:
        for path in _paths(base)[1:]:
            for value in [*INTERESTING, ...]:
                body = copy.deepcopy(base)
                parent: Any = body
                for step in path[:-1]:
                    parent = parent[step]
                if value is ...:
                    del parent[path[-1]]
                else:
                    parent[path[-1]] = copy.deepcopy(value)
                assert_same(body)


@settings(max_examples=1500, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_a_changed_body_is_read_as_the_general_readers_read_it_or_left_to_them(data: st.DataObject) -> None:
    body = copy.deepcopy(data.draw(st.sampled_from(BODIES)))
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(_paths(body)))
        parent: Any = body
        for step in path[:-1]:
            parent = parent[step]
        action = data.draw(st.sampled_from(["replace", "delete", "add"]))
        if not path or action == "add":
            target = parent[path[-1]] if path else body
            if isinstance(target, dict):
                target[data.draw(KEYS)] = data.draw(VALUES)
            elif isinstance(target, list):
                target.append(data.draw(VALUES))
        elif action == "delete":
            del parent[path[-1]]
        else:
            parent[path[-1]] = data.draw(VALUES)
    assert_same(orjson.loads(orjson.dumps(body)))
