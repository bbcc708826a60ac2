"""CometChat's current webhooks as documented (shared/cometchat/webhooks-current.md).

Each sample keeps the field names, nesting and value types of the page; its ``"..."``
placeholders are replaced by real values, the same ones throughout, so that the samples
tell one story: ``cometchat-uid-1`` and ``cometchat-uid-2`` talk one to one, and in the
group ``cometchat-guid-1``. Where the page gives no example (the live shape of
``message_edited`` / ``message_deleted``, the group aggregates, the membership triggers
other than ``group_member_added``), the sample is built from the fields the page lists.
"""

from __future__ import annotations

import copy
from typing import Any

Body = dict[str, Any]

APP_ID = "24650b4aa2d5a0cd"
ENVELOPE: dict[str, Any] = {"appId": APP_ID, "region": "us", "webhook": "presence-current"}

UID_1 = "cometchat-uid-1"
UID_2 = "cometchat-uid-2"
UID_3 = "cometchat-uid-3"
UID_4 = "cometchat-uid-4"
DIRECT = "cometchat-uid-1_user_cometchat-uid-2"
GUID = "cometchat-guid-1"
GROUP = "group_cometchat-guid-1"

# --- Messages ------------------------------------------------------------------------------

#: ``message_sent`` exactly as documented: message 1 from uid-1 to uid-2, sent at 1696934912 (s).
MESSAGE_SENT: Body = {
    "trigger": "message_sent",
    "data": {
        "message": {
            "id": "1",
            "conversationId": DIRECT,
            "sender": UID_1,
            "receiverType": "user",
            "receiver": UID_2,
            "category": "message",
            "type": "text",
            "data": {
                "text": "Hello from the current webhooks",
                "entities": {
                    "sender": {
                        "entity": {"uid": UID_1, "status": "available", "lastActiveAt": 1696934440},
                        "entityType": "user",
                    },
                    "receiver": {"entity": {"uid": UID_2, "conversationId": DIRECT}, "entityType": "user"},
                },
                "metadata": {},
                "moderation": {"status": "approved"},
            },
            "sentAt": 1696934912,
            "updatedAt": 1696934912,
            "muid": "_of6zl8yky",
        }
    },
    **ENVELOPE,
}


def message_sent(message_id: str, sent_at: int, *, sender: str = UID_1, group: bool = False) -> Body:
    """The documented ``message_sent`` with another id, time and sender; in the group when ``group``."""
    body = copy.deepcopy(MESSAGE_SENT)
    message = body["data"]["message"]
    receiver = GUID if group else (UID_2 if sender == UID_1 else UID_1)
    message.update(
        id=message_id,
        conversationId=GROUP if group else DIRECT,
        sender=sender,
        receiverType="group" if group else "user",
        receiver=receiver,
        sentAt=sent_at,
        updatedAt=sent_at,
        muid=f"_muid{message_id}",
    )
    message["data"]["entities"]["sender"]["entity"]["uid"] = sender
    if group:
        # "the receiver entity is a group"
        message["data"]["entities"]["receiver"] = {
            "entity": {"guid": GUID, "name": "Team", "type": "public", "conversationId": GROUP},
            "entityType": "group",
        }
    else:
        message["data"]["entities"]["receiver"]["entity"]["uid"] = receiver
    return body


#: ``message_sent`` in the group: ``receiverType`` ``group``, the guid as receiver, ``group_<guid>``.
MESSAGE_SENT_GROUP: Body = message_sent("11", 1696934920, group=True)

#: ``message_edited`` exactly as documented: an action message (2) whose target (1) is ``on.entity``.
MESSAGE_EDITED: Body = {
    "trigger": "message_edited",
    "data": {
        "message": {
            "id": "2",
            "conversationId": DIRECT,
            "sender": UID_1,
            "receiverType": "user",
            "receiver": UID_2,
            "category": "action",
            "type": "message",
            "data": {
                "action": "edited",
                "entities": {
                    "by": {"entity": {"uid": UID_1}, "entityType": "user"},
                    "on": {
                        "entity": {
                            "id": "1",
                            "conversationId": DIRECT,
                            "sender": UID_1,
                            "category": "message",
                            "type": "text",
                            "data": {"text": "Hello, edited"},
                            "sentAt": 1696934912,
                            "editedAt": 1696934985,
                            "editedBy": UID_1,
                        },
                        "entityType": "message",
                    },
                },
            },
            "sentAt": 1696934985,
            "updatedAt": 1696934985,
        }
    },
}

#: ``message_deleted`` as documented: ``"action": "deleted"``; ``on.entity`` has id, conversationId,
#: deletedAt and deletedBy.
MESSAGE_DELETED: Body = {
    "trigger": "message_deleted",
    "data": {
        "message": {
            "id": "3",
            "conversationId": DIRECT,
            "sender": UID_1,
            "receiverType": "user",
            "receiver": UID_2,
            "category": "action",
            "type": "message",
            "data": {
                "action": "deleted",
                "entities": {
                    "by": {"entity": {"uid": UID_1}, "entityType": "user"},
                    "on": {
                        "entity": {"id": "1", "conversationId": DIRECT, "deletedAt": 1696935000, "deletedBy": UID_1},
                        "entityType": "message",
                    },
                },
            },
            "sentAt": 1696935000,
            "updatedAt": 1696935000,
        }
    },
}

#: ``message_edited`` as seen live: the edited message itself at ``data.message``, with ``editedAt``.
MESSAGE_EDITED_LIVE: Body = {
    "trigger": "message_edited",
    "data": {
        "message": {
            "id": "1",
            "conversationId": DIRECT,
            "sender": UID_1,
            "receiverType": "user",
            "receiver": UID_2,
            "category": "message",
            "type": "text",
            "data": {"text": "Hello, edited live", "entities": {}, "metadata": {}},
            "sentAt": 1696934912,
            "updatedAt": 1696934990,
            "editedAt": 1696934990,
            "editedBy": UID_1,
        }
    },
    **ENVELOPE,
}

#: ``message_deleted`` as seen live: the deleted message itself at ``data.message``, with ``deletedAt``.
MESSAGE_DELETED_LIVE: Body = {
    "trigger": "message_deleted",
    "data": {
        "message": {
            "id": "1",
            "conversationId": DIRECT,
            "sender": UID_1,
            "receiverType": "user",
            "receiver": UID_2,
            "category": "message",
            "type": "text",
            "data": {"text": "Hello", "entities": {}},
            "sentAt": 1696934912,
            "updatedAt": 1696935010,
            "deletedAt": 1696935010,
            "deletedBy": UID_1,
        }
    },
    **ENVELOPE,
}

# --- Receipts ------------------------------------------------------------------------------

#: ``message_read_receipt`` exactly as documented: uid-2 read message 57 of uid-1 at 1696934950 (s).
READ_RECEIPT: Body = {
    "trigger": "message_read_receipt",
    "data": {
        "receiver": UID_1,
        "receiverType": "user",
        "type": "receipts",
        "sender": UID_2,
        "messageSender": UID_1,
        "body": {
            "action": "read",
            "messageId": "57",
            "user": {"uid": UID_2, "name": "Cometchat Two", "status": "online"},
            "timestamp": 1696934950,
        },
    },
    **ENVELOPE,
}


def receipt(kind: str, message_id: str, at: int, *, reader: str = UID_2, group: bool = False) -> Body:
    """The documented receipt, of ``kind`` (``delivered`` / ``read``) for another message, time or reader."""
    body = copy.deepcopy(READ_RECEIPT)
    body["trigger"] = "message_delivery_receipt" if kind == "delivered" else "message_read_receipt"
    data = body["data"]
    data["sender"] = reader
    data["body"].update(action=kind, messageId=message_id, timestamp=at)
    data["body"]["user"]["uid"] = reader
    if group:
        data.update(receiver=GUID, receiverType="group")
    return body


#: ``message_delivery_receipt``: the same, ``action`` ``delivered``, a little earlier.
DELIVERY_RECEIPT: Body = receipt("delivered", "57", 1696934940)
#: Receipts in the group: ``data.receiver`` is the guid.
GROUP_DELIVERY_RECEIPT: Body = receipt("delivered", "11", 1696934925, reader=UID_2, group=True)
GROUP_READ_RECEIPT: Body = receipt("read", "11", 1696934935, reader=UID_2, group=True)

#: ``message_delivered_to_all`` with the fields the live deliveries carry, and a time.
DELIVERED_TO_ALL: Body = {
    "trigger": "message_delivered_to_all",
    "data": {
        "receiver": GUID,
        "receiverType": "group",
        "messageSender": UID_1,
        "sender": "app_system",
        "body": {"action": "deliveredToAll", "messageId": "11", "timestamp": 1696934930},
    },
    **ENVELOPE,
}

#: ``message_read_by_all`` without ``data.body.timestamp`` (its presence is unknown): timed by ``sentAt``.
READ_BY_ALL: Body = {
    "trigger": "message_read_by_all",
    "data": {
        "receiver": GUID,
        "receiverType": "group",
        "messageSender": UID_1,
        "sender": "app_system",
        "body": {"action": "readByAll", "messageId": "11"},
    },
    **ENVELOPE,
}

#: ``message_read_by_all`` with a time, for a later message of the group.
READ_BY_ALL_TIMED: Body = copy.deepcopy(READ_BY_ALL)
READ_BY_ALL_TIMED["data"]["body"].update(messageId="12", timestamp=1696934960)

# --- Users ---------------------------------------------------------------------------------

#: ``user_connection_status_changed`` exactly as documented: uid-1's javascript connection ended.
CONNECTION_STATUS_CHANGED: Body = {
    "trigger": "user_connection_status_changed",
    "data": {
        "timestamp": 1696935103114,
        "user": {"uid": UID_1, "name": "Cometchat One", "status": "offline", "role": "default"},
        "status": "offline",
        "currentConnection": {"action": "disconnected", "platform": "javascript", "connectedAt": 1696934440982},
        "userPresenceChanged": True,
    },
    **ENVELOPE,
}


def connection(
    action: str,
    timestamp: int,
    *,
    connected_at: int = 1696934440982,
    platform: str = "javascript",
    status: str | None = None,
    presence_changed: bool = True,
    uid: str = UID_1,
) -> Body:
    """The documented connection event for another action, time, connection or status."""
    body = copy.deepcopy(CONNECTION_STATUS_CHANGED)
    status = status or ("online" if action == "connected" else "offline")
    data = body["data"]
    data.update(timestamp=timestamp, status=status, userPresenceChanged=presence_changed)
    data["user"].update(uid=uid, status=status)
    data["currentConnection"].update(action=action, platform=platform, connectedAt=connected_at)
    return body


#: The ``connected`` of the connection the documented sample ends, 8 ms after it started.
CONNECTION_CONNECTED: Body = connection("connected", 1696934440990)

# --- Groups (membership) -------------------------------------------------------------------


def _member(uid: str, last_active_at: int) -> dict[str, Any]:
    return {
        "uid": uid,
        "name": f"Cometchat {uid[-1]}",
        "status": "offline",
        "role": "default",
        "lastActiveAt": last_active_at,
    }


def _group(members_count: int, updated_at: int | None, online: int = 1) -> dict[str, Any]:
    group: dict[str, Any] = {
        "guid": GUID,
        "name": "Team",
        "type": "public",
        "membersCount": members_count,
        "conversationId": GROUP,
        "createdAt": 1696932915,
        "updatedAt": updated_at,
        "owner": UID_1,
        "onlineMembersCount": online,
    }
    if updated_at is None:
        del group["updatedAt"]
    return group


#: ``group_created``: ``createdAt`` and ``joinedAt``, the owner listed in ``members``, no ``updatedAt``.
GROUP_CREATED: Body = {
    "trigger": "group_created",
    "data": {
        "group": {**_group(1, None), "joinedAt": 1696932915},
        "members": {UID_1: _member(UID_1, 1696932900)},
        "by": {"uid": UID_1, "name": "Cometchat 1"},
    },
    **ENVELOPE,
}

#: ``group_member_added`` exactly as documented (no envelope in the page's example).
GROUP_MEMBER_ADDED: Body = {
    "trigger": "group_member_added",
    "data": {
        "group": _group(2, 1696933533),
        "members": {UID_2: _member(UID_2, 1695751453)},
        "by": {"uid": UID_1, "name": "Cometchat 1"},
    },
}

#: ``group_member_joined``: no ``by``.
GROUP_MEMBER_JOINED: Body = {
    "trigger": "group_member_joined",
    "data": {"group": _group(3, 1696933600), "members": {UID_3: _member(UID_3, 1696933590)}},
    **ENVELOPE,
}

#: ``group_member_left``: no ``by``.
GROUP_MEMBER_LEFT: Body = {
    "trigger": "group_member_left",
    "data": {"group": _group(2, 1696933700), "members": {UID_3: _member(UID_3, 1696933690)}},
    **ENVELOPE,
}

GROUP_MEMBER_KICKED: Body = {
    "trigger": "group_member_kicked",
    "data": {
        "group": _group(1, 1696933800),
        "members": {UID_2: _member(UID_2, 1696933750)},
        "by": {"uid": UID_1, "name": "Cometchat 1"},
    },
    **ENVELOPE,
}

#: ``group_member_banned`` of a user who was never a member.
GROUP_MEMBER_BANNED: Body = {
    "trigger": "group_member_banned",
    "data": {
        "group": _group(1, 1696933900),
        "members": {UID_4: _member(UID_4, 1696933850)},
        "by": {"uid": UID_1, "name": "Cometchat 1"},
    },
    **ENVELOPE,
}

#: ``group_deleted``: only ``data.group``.
GROUP_DELETED: Body = {"trigger": "group_deleted", "data": {"group": _group(1, 1696934000, online=0)}, **ENVELOPE}

#: Every membership trigger the service acts on, in the order of the group's story.
MEMBERSHIP: list[Body] = [
    GROUP_CREATED,
    GROUP_MEMBER_ADDED,
    GROUP_MEMBER_JOINED,
    GROUP_MEMBER_LEFT,
    GROUP_MEMBER_KICKED,
    GROUP_MEMBER_BANNED,
    GROUP_DELETED,
]

# --- Triggers the service does not act on --------------------------------------------------

#: Current triggers acknowledged as ``ignored`` and kept (less content); some carry message text.
IGNORED: list[Body] = [
    {
        "trigger": "message_reaction_added",
        "data": {
            "reaction": {
                "id": "1",
                "messageId": "1",
                "reaction": "👍",
                "uid": UID_2,
                "reactedAt": 1696934960,
                "reactedBy": {"uid": UID_2, "name": "Cometchat Two"},
            }
        },
        **ENVELOPE,
    },
    {
        "trigger": "user_mentioned",
        "data": {
            "message": {**MESSAGE_SENT["data"]["message"], "mentionedUsers": [{"uid": UID_2}]},
            "mentionedUsers": [UID_2],
        },
        **ENVELOPE,
    },
    {"trigger": "user_blocked", "data": {"by": {"uid": UID_1}, "user": {"uid": UID_2}}, **ENVELOPE},
    {
        "trigger": "group_member_scope_changed",
        "data": {"group": _group(2, 1696933550), "members": {UID_2: _member(UID_2, 1695751453)}, "scope": "admin"},
        **ENVELOPE,
    },
    {
        "trigger": "group_member_unbanned",
        "data": {"group": _group(1, 1696933950), "members": {UID_4: _member(UID_4, 1696933850)}},
        **ENVELOPE,
    },
    {"trigger": "group_updated", "data": {"group": _group(1, 1696933960)}, **ENVELOPE},
    {
        "trigger": "group_owner_transferred",
        "data": {"group": _group(1, 1696933970), "members": {UID_1: _member(UID_1, 1696932900)}},
        **ENVELOPE,
    },
    {
        "trigger": "moderation_engine_blocked",
        "data": {"message": {**MESSAGE_SENT["data"]["message"], "id": "5"}, "rule": "profanity"},
        **ENVELOPE,
    },
]
