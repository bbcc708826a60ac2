"""Contract §8: bad input in CometChat's current format is refused as in §2, naming the field.

The cases follow the readers of ``presence/core/current.py``: every field a reader requires,
left out, and every field it reads, of the wrong type. Each is posted against a database that
already holds state from every current trigger, and the whole database (inbox included) is
compared before and after.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support import samples_current as cc
from tests.support.api import Api
from tests.support.state import dump
from tests.test_hook_rejects import assert_error, replaced, without

Case = Any  # a pytest.param of (body, the field the error must name)

FAR_FUTURE_S = 99_999_999_999  # s, the year 5138: far ahead of any clock
FAR_FUTURE_MS = FAR_FUTURE_S * 1000


def path_of(*path: str | int) -> str:
    return ".".join(str(step) for step in path)


def missing(base: dict[str, Any], name: str, *path: str) -> Case:
    """``path`` left out: the error names it."""
    return pytest.param(without(base, *path), path_of(*path), id=f"{name}: {path_of(*path)} missing")


def mistyped(base: dict[str, Any], name: str, value: object, *path: str, label: str = "") -> Case:
    """``path`` set to ``value``: the error names it."""
    label = label or repr(value)
    return pytest.param(replaced(base, value, *path), path_of(*path), id=f"{name}: {path_of(*path)} {label}")


def spoiled(body: dict[str, Any], field: str, name: str, label: str) -> Case:
    return pytest.param(body, field, id=f"{name}: {label}")


def _instant_cases(base: dict[str, Any], name: str, *path: str) -> list[Case]:
    return [
        mistyped(base, name, "soon", *path),
        mistyped(base, name, True, *path),
        mistyped(base, name, -1, *path),
        mistyped(base, name, [1696934912], *path, label="a list"),
        mistyped(base, name, 1e300, *path, label="beyond year 9999"),
    ]


def _message_id_cases(base: dict[str, Any], name: str, *path: str) -> list[Case]:
    return [
        missing(base, name, *path),
        mistyped(base, name, "abc", *path),
        mistyped(base, name, 1.5, *path),
        mistyped(base, name, True, *path),
        mistyped(base, name, "-57", *path),
        mistyped(base, name, str(2**63), *path, label="beyond 64 bits"),
    ]


def _id_cases(base: dict[str, Any], name: str, *path: str) -> list[Case]:
    return [
        mistyped(base, name, 42, *path),
        mistyped(base, name, "", *path, label="empty"),
        mistyped(base, name, "u\x00-1", *path, label="with NUL"),
        mistyped(base, name, "u" * 256, *path, label="too long"),
    ]


def connection_cases() -> list[Case]:
    base, name = cc.CONNECTION_STATUS_CHANGED, "user_connection_status_changed"
    current = ("data", "currentConnection")
    return [
        missing(base, name, "data"),
        mistyped(base, name, [], "data"),
        missing(base, name, "data", "user"),
        mistyped(base, name, "cometchat-uid-1", "data", "user"),
        missing(base, name, "data", "user", "uid"),
        *_id_cases(base, name, "data", "user", "uid"),
        missing(base, name, *current),
        mistyped(base, name, [], *current),
        missing(base, name, *current, "action"),
        mistyped(base, name, 1, *current, "action"),
        mistyped(base, name, "paused", *current, "action"),
        missing(base, name, *current, "platform"),
        mistyped(base, name, 5, *current, "platform"),
        mistyped(base, name, "p" * 235, *current, "platform", label="too long for a session id"),
        missing(base, name, *current, "connectedAt"),
        *_instant_cases(base, name, *current, "connectedAt"),
        missing(base, name, "data", "timestamp"),
        *_instant_cases(base, name, "data", "timestamp"),
        missing(base, name, "data", "status"),
        mistyped(base, name, 5, "data", "status"),
        mistyped(base, name, "", "data", "status", label="empty"),
        mistyped(base, name, "yes", "data", "userPresenceChanged"),
        mistyped(base, name, 1, "data", "userPresenceChanged"),
    ]


def message_sent_cases() -> list[Case]:
    base, name = cc.MESSAGE_SENT, "message_sent"
    message = ("data", "message")
    return [
        missing(base, name, "data"),
        missing(base, name, *message),
        mistyped(base, name, "hello", *message),
        *_message_id_cases(base, name, *message, "id"),
        missing(base, name, *message, "conversationId"),
        mistyped(base, name, 5, *message, "conversationId"),
        mistyped(base, name, "c" * 513, *message, "conversationId", label="too long"),
        *_id_cases(base, name, *message, "sender"),
        *_instant_cases(base, name, *message, "sentAt"),
        mistyped(base, name, 5, *message, "category"),
    ]


def receipt_cases(base: dict[str, Any], name: str) -> list[Case]:
    body = ("data", "body")
    two_longest_uids = replaced(replaced(base, "r" * 255, "data", "sender"), "s" * 255, "data", "messageSender")
    return [
        missing(base, name, "data"),
        missing(base, name, "data", "sender"),
        *_id_cases(base, name, "data", "sender"),
        missing(base, name, "data", "receiverType"),
        mistyped(base, name, "channel", "data", "receiverType"),
        mistyped(base, name, 1, "data", "receiverType"),
        missing(base, name, "data", "messageSender"),
        mistyped(base, name, 5, "data", "messageSender"),
        spoiled(
            without(replaced(base, "group", "data", "receiverType"), "data", "receiver"),
            "data.receiver",
            name,
            "a group receipt without data.receiver",
        ),
        spoiled(
            replaced(replaced(base, "group", "data", "receiverType"), 7, "data", "receiver"),
            "data.receiver",
            name,
            "a group receipt with data.receiver a number",
        ),
        missing(base, name, *body),
        mistyped(base, name, "read", *body),
        missing(base, name, *body, "action"),
        mistyped(base, name, "seen", *body, "action"),
        mistyped(base, name, 5, *body, "action"),
        *_message_id_cases(base, name, *body, "messageId"),
        missing(base, name, *body, "timestamp"),
        mistyped(base, name, None, *body, "timestamp"),
        *_instant_cases(base, name, *body, "timestamp"),
        # The same limit as for legacy receipts: a derived conversation id must fit its column.
        spoiled(two_longest_uids, "data.sender", name, "a conversation id of two longest uids"),
    ]


ON = ("data", "message", "data", "entities", "on", "entity")


def action_change_cases(base: dict[str, Any], name: str, time_field: str) -> list[Case]:
    """The documented shape: an action message naming its target in ``data.entities.on.entity``."""
    outer = ("data", "message")
    no_time = without(base, *ON, time_field)
    no_time = without(no_time, *outer, "sentAt")
    no_conversation = without(without(base, *ON, "conversationId"), *outer, "conversationId")
    return [
        missing(base, name, "data"),
        missing(base, name, *outer),
        mistyped(base, name, "edited", *outer),
        mistyped(base, name, "edited", *outer, "data"),
        missing(base, name, *outer, "data", "entities"),
        mistyped(base, name, [], *outer, "data", "entities"),
        missing(base, name, *outer, "data", "entities", "on"),
        missing(base, name, *ON),
        mistyped(base, name, "1", *ON),
        *_message_id_cases(base, name, *ON, "id"),
        *_instant_cases(base, name, *ON, time_field),
        spoiled(no_time, path_of(*ON, time_field), name, f"no {time_field} and no sentAt"),
        spoiled(
            replaced(without(base, *ON, time_field), "soon", *outer, "sentAt"),
            "data.message.sentAt",
            name,
            f"no {time_field}, the action's sentAt soon",
        ),
        mistyped(base, name, 5, *ON, "conversationId"),
        spoiled(no_conversation, "data.message.conversationId", name, "no conversationId anywhere"),
        spoiled(
            replaced(without(base, *ON, "conversationId"), 5, *outer, "conversationId"),
            "data.message.conversationId",
            name,
            "the target's conversationId from an action's conversationId a number",
        ),
        *_id_cases(base, name, *ON, "sender"),
        *_instant_cases(base, name, *ON, "sentAt"),
    ]


def live_change_cases(base: dict[str, Any], name: str, time_field: str) -> list[Case]:
    """The live shape: the target itself at ``data.message``."""
    message = ("data", "message")
    return [
        missing(base, name, *message),
        mistyped(base, name, [], *message),
        *_message_id_cases(base, name, *message, "id"),
        missing(base, name, *message, "conversationId"),
        mistyped(base, name, 5, *message, "conversationId"),
        *_instant_cases(base, name, *message, time_field),
        spoiled(
            without(without(base, *message, time_field), *message, "updatedAt"),
            path_of(*message, time_field),
            name,
            f"no {time_field} and no updatedAt",
        ),
        spoiled(
            replaced(without(base, *message, time_field), "soon", *message, "updatedAt"),
            "data.message.updatedAt",
            name,
            f"no {time_field}, updatedAt soon",
        ),
        *_id_cases(base, name, *message, "sender"),
        *_instant_cases(base, name, *message, "sentAt"),
    ]


def group_receipt_cases(base: dict[str, Any], name: str) -> list[Case]:
    body = ("data", "body")
    return [
        missing(base, name, "data"),
        missing(base, name, "data", "receiver"),
        *_id_cases(base, name, "data", "receiver"),
        mistyped(base, name, "user", "data", "receiverType"),
        mistyped(base, name, 1, "data", "receiverType"),
        mistyped(base, name, 5, "data", "messageSender"),
        missing(base, name, *body),
        mistyped(base, name, "readByAll", *body),
        *_message_id_cases(base, name, *body, "messageId"),
        *_instant_cases(base, name, *body, "timestamp"),
    ]


def membership_cases(base: dict[str, Any]) -> list[Case]:
    name = base["trigger"]
    group = ("data", "group")
    times = ("updatedAt",) if "updatedAt" in base["data"]["group"] else ("createdAt",)
    no_time = without(base, *group, times[0])
    if times[0] == "updatedAt":
        no_time = without(no_time, *group, "createdAt")
    cases = [
        missing(base, name, "data"),
        missing(base, name, *group),
        mistyped(base, name, "cometchat-guid-1", *group),
        missing(base, name, *group, "guid"),
        *_id_cases(base, name, *group, "guid"),
        *_instant_cases(base, name, *group, times[0]),
        spoiled(no_time, "data.group.updatedAt", name, "no updatedAt and no createdAt"),
        mistyped(base, name, "2", *group, "membersCount"),
        mistyped(base, name, -1, *group, "membersCount"),
        mistyped(base, name, 1.5, *group, "membersCount"),
        mistyped(base, name, True, *group, "membersCount"),
        mistyped(base, name, 2**31, *group, "membersCount", label="beyond 32 bits"),
    ]
    if times[0] == "updatedAt":
        cases.append(
            spoiled(
                replaced(without(base, *group, "updatedAt"), "soon", *group, "createdAt"),
                "data.group.createdAt",
                name,
                "no updatedAt, createdAt soon",
            )
        )
    if name.startswith("group_member_"):
        member = base["data"]["members"]
        cases += [
            missing(base, name, "data", "members"),
            mistyped(base, name, list(member.values()), "data", "members", label="a list"),
            mistyped(base, name, {}, "data", "members", label="empty"),
            mistyped(base, name, {"u" * 256: {"uid": "u" * 256}}, "data", "members", label="a uid too long"),
            mistyped(base, name, {"u\x00": {"uid": "u\x00"}}, "data", "members", label="a uid with NUL"),
        ]
    elif name == "group_created":
        cases.append(mistyped(base, name, ["cometchat-uid-1"], "data", "members", label="a list"))
    return cases


def far_ahead_cases() -> list[Case]:
    """Times far ahead of the clock are refused naming the field, in the shape the body came in."""
    live_edit, action_edit = cc.MESSAGE_EDITED_LIVE, cc.MESSAGE_EDITED
    connection = cc.CONNECTION_STATUS_CHANGED
    cases = [
        (connection, FAR_FUTURE_MS, ("data", "timestamp")),
        (connection, FAR_FUTURE_MS, ("data", "currentConnection", "connectedAt")),
        (cc.MESSAGE_SENT, FAR_FUTURE_S, ("data", "message", "sentAt")),
        (cc.READ_RECEIPT, FAR_FUTURE_S, ("data", "body", "timestamp")),
        (cc.DELIVERED_TO_ALL, FAR_FUTURE_S, ("data", "body", "timestamp")),
        (live_edit, FAR_FUTURE_S, ("data", "message", "editedAt")),
        (live_edit, FAR_FUTURE_S, ("data", "message", "sentAt")),
        (cc.MESSAGE_DELETED_LIVE, FAR_FUTURE_S, ("data", "message", "deletedAt")),
        (action_edit, FAR_FUTURE_S, (*ON, "editedAt")),
        (action_edit, FAR_FUTURE_S, (*ON, "sentAt")),
        (cc.MESSAGE_DELETED, FAR_FUTURE_S, (*ON, "deletedAt")),
        (cc.GROUP_MEMBER_ADDED, FAR_FUTURE_S, ("data", "group", "updatedAt")),
        (cc.GROUP_CREATED, FAR_FUTURE_S, ("data", "group", "createdAt")),
    ]
    params = [
        mistyped(base, base["trigger"], value, *path, label="far ahead of the clock") for base, value, path in cases
    ]
    # Timed by a fallback: the field the time was read from is named.
    no_edit_time = without(action_edit, *ON, "editedAt")
    params.append(
        spoiled(
            replaced(no_edit_time, FAR_FUTURE_S, "data", "message", "sentAt"),
            "data.message.sentAt",
            "message_edited",
            "no editedAt, the action's sentAt far ahead",
        )
    )
    no_live_time = without(live_edit, "data", "message", "editedAt")
    params.append(
        spoiled(
            replaced(no_live_time, FAR_FUTURE_S, "data", "message", "updatedAt"),
            "data.message.updatedAt",
            "message_edited",
            "live, no editedAt, updatedAt far ahead",
        )
    )
    return params


INVALID_CURRENT_EVENTS = [
    *connection_cases(),
    *message_sent_cases(),
    *receipt_cases(cc.DELIVERY_RECEIPT, "message_delivery_receipt"),
    *receipt_cases(cc.READ_RECEIPT, "message_read_receipt"),
    *action_change_cases(cc.MESSAGE_EDITED, "message_edited", "editedAt"),
    *action_change_cases(cc.MESSAGE_DELETED, "message_deleted", "deletedAt"),
    *live_change_cases(cc.MESSAGE_EDITED_LIVE, "message_edited live", "editedAt"),
    *live_change_cases(cc.MESSAGE_DELETED_LIVE, "message_deleted live", "deletedAt"),
    *group_receipt_cases(cc.DELIVERED_TO_ALL, "message_delivered_to_all"),
    *group_receipt_cases(cc.READ_BY_ALL_TIMED, "message_read_by_all"),
    *(case for body in cc.MEMBERSHIP for case in membership_cases(body)),
    *far_ahead_cases(),
]

#: Every body the cases above are spoiled from.
BASES = [
    cc.CONNECTION_STATUS_CHANGED,
    cc.MESSAGE_SENT,
    cc.DELIVERY_RECEIPT,
    cc.READ_RECEIPT,
    cc.MESSAGE_EDITED,
    cc.MESSAGE_DELETED,
    cc.MESSAGE_EDITED_LIVE,
    cc.MESSAGE_DELETED_LIVE,
    cc.DELIVERED_TO_ALL,
    cc.READ_BY_ALL_TIMED,
    *cc.MEMBERSHIP,
]


async def seed(api: Api) -> Api:
    """The API over a database holding state from every current trigger the service acts on."""
    for body in (cc.CONNECTION_CONNECTED, cc.MESSAGE_SENT_GROUP, cc.GROUP_READ_RECEIPT, *BASES):
        await api.hook(body)
    return api


@pytest.fixture
async def seeded(api: Api) -> Api:
    return await seed(api)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared_seeded(module_api: Api) -> Api:
    """:func:`seeded`, once per backend for the module's many cases of one refusal."""
    return await seed(module_api)


@pytest.mark.parametrize("body", [pytest.param(body, id=f"{i}: {body['trigger']}") for i, body in enumerate(BASES)])
async def test_the_unspoiled_bodies_are_accepted(api: Api, body: dict[str, Any]) -> None:
    """The bodies the cases are spoiled from are themselves accepted (so the spoiling is what fails)."""
    assert await api.hook(body) == {"status": "accepted"}


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize(("body", "field"), INVALID_CURRENT_EVENTS)
async def test_a_current_trigger_with_a_missing_or_mistyped_field_is_400_naming_it(
    shared_seeded: Api, module_engine: AsyncEngine, body: dict[str, Any], field: str
) -> None:
    """§8, §2: 400 ``invalid_event``, the message starting with the field's full path; nothing changed."""
    before = await dump(module_engine)

    payload = await assert_error(await shared_seeded.post_hook(body), 400, "invalid_event")

    assert payload["error"]["message"].startswith(f"{field}: "), payload
    assert await dump(module_engine) == before


def _mixed_receipts() -> list[Case]:
    current = cc.READ_RECEIPT
    legacy_like = {
        "trigger": "message_read_receipt",
        "data": {
            "messageId": "57",
            "receiptType": "read",
            "readAt": 1696934950,
            "receiptReceiver": cc.UID_1,
            "messageSender": cc.UID_1,
            "receiverType": "user",
            "sender": cc.UID_2,  # a current field, the only one
        },
    }
    return [
        spoiled(
            replaced(without(current, "data", "body", "messageId"), "read", "data", "receiptType"),
            "data.body.messageId",
            "message_read_receipt",
            "mostly current, one legacy field, no data.body.messageId: refused as current",
        ),
        spoiled(
            replaced(without(current, "data", "body", "timestamp"), 1696934950, "data", "readAt"),
            "data.body.timestamp",
            "message_read_receipt",
            "current with a legacy readAt instead of data.body.timestamp: refused as current",
        ),
        spoiled(
            legacy_like,
            "data.receiptSender",
            "message_read_receipt",
            "mostly legacy, the reader as data.sender: refused as legacy",
        ),
        spoiled(
            {"trigger": "message_delivery_receipt", "data": {"body": {"action": "delivered"}, "messageId": "57"}},
            "data.receiptSender",
            "message_delivery_receipt",
            "as much of each: refused as legacy, the trigger's own system",
        ),
        spoiled(
            {"trigger": "message_read_receipt", "data": {}},
            "data.receiptSender",
            "message_read_receipt",
            "empty data: refused as legacy",
        ),
    ]


@pytest.mark.parametrize(("body", "field"), _mixed_receipts())
async def test_a_receipt_valid_in_neither_format_is_refused_in_the_words_of_the_closer_one(
    seeded: Api, database_url: str, body: dict[str, Any], field: str
) -> None:
    """§8: a receipt neither legacy nor current is refused naming a field of the format it has more of."""
    before = await dump(database_url)

    payload = await assert_error(await seeded.post_hook(copy.deepcopy(body)), 400, "invalid_event")

    assert payload["error"]["message"].startswith(f"{field}: "), payload
    assert await dump(database_url) == before
