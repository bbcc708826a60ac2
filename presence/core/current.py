"""CometChat's current webhooks (``cometchat/webhooks-current.md``) read into typed events.

A current body says the same things as a legacy one in other places, and a few
things the legacy system cannot say (edits, deletions, group aggregates, membership).
Each reader here returns the same typed event a legacy body would, or one of the
new ones; field paths in errors are the current format's own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Final

from presence.core import legacy
from presence.core.events import (
    MAX_ID_LENGTH,
    ConnectionChanged,
    ConnectionKind,
    GroupReceiptMarked,
    InvalidEvent,
    MembershipChanged,
    MembershipKind,
    MessageChanged,
    MessageChangeKind,
    MessageSent,
    ReceiptKind,
    ReceiptMarked,
    Session,
    group_conversation_id,
    is_storable_id,
    user_conversation_id,
)
from presence.core.fields import (
    Fields,
    checked_conversation,
    conversation_id,
    message_id,
    optional_boolean,
    optional_count,
    optional_instant,
    optional_object,
    optional_string,
    required_instant,
    required_object,
    required_string,
)

CONNECTION_TRIGGER: Final = "user_connection_status_changed"
MESSAGE_TRIGGER: Final = "message_sent"
CHANGE_TRIGGERS: Final[dict[str, MessageChangeKind]] = {"message_edited": "edited", "message_deleted": "deleted"}
GROUP_RECEIPT_TRIGGERS: Final[dict[str, ReceiptKind]] = {
    "message_delivered_to_all": "delivered",
    "message_read_by_all": "read",
}
MEMBERSHIP_TRIGGERS: Final[dict[str, MembershipKind]] = {
    "group_member_joined": "added",
    "group_member_added": "added",
    "group_created": "added",
    "group_member_left": "removed",
    "group_member_kicked": "removed",
    "group_member_banned": "removed",
    # In CometChat's Webhooks Overview table, not in its Management API's list: the same removal.
    "group_member_removed": "removed",
    "group_deleted": "deleted",
}

#: Fields only a current body of the kind has: how its shape is told from the legacy one.
CONNECTION_SHAPE: Final = frozenset({"currentConnection", "timestamp", "userPresenceChanged", "status"})
MESSAGE_SHAPE: Final = frozenset({"message"})
RECEIPT_SHAPE: Final = frozenset({"body", "sender", "receiver"})

_CONNECTION_KINDS: Final[dict[str, ConnectionKind]] = {"connected": "connected", "disconnected": "disconnected"}
_RECEIPT_ACTIONS: Final[dict[str, ReceiptKind]] = {"delivered": "delivered", "read": "read"}
#: ``<platform>:<connectedAt>`` must fit the session id column; the time takes at most 20 characters.
_MAX_PLATFORM_LENGTH: Final = MAX_ID_LENGTH - 21


def connection(data: Fields) -> ConnectionChanged:
    """``user_connection_status_changed``.

    The connection has no id of CometChat's; ``<platform>:<connectedAt>`` names it, the same
    in its ``connected`` and its ``disconnected``. An ``offline`` status says the user has no
    live connection left: an empty snapshot, which ends every older session.
    """
    user = required_object(data, "user", "data.user")
    current = required_object(data, "currentConnection", "data.currentConnection")
    kind = _CONNECTION_KINDS.get(required_string(current, "action", "data.currentConnection.action"))
    if kind is None:
        raise InvalidEvent("data.currentConnection.action", "expected 'connected' or 'disconnected'")
    platform = required_string(current, "platform", "data.currentConnection.platform", _MAX_PLATFORM_LENGTH)
    connected_at_ms = required_instant(current, "connectedAt", "data.currentConnection.connectedAt")
    at_ms = required_instant(data, "timestamp", "data.timestamp")
    status = required_string(data, "status", "data.status")
    status = "online" if status == "available" else status
    flipped = optional_boolean(data, "userPresenceChanged", "data.userPresenceChanged") is True
    return ConnectionChanged(
        uid=required_string(user, "uid", "data.user.uid"),
        kind=kind,
        at_ms=at_ms,
        status=status,
        status_updated_at_ms=at_ms if flipped else None,
        session=Session(
            session_id=f"{platform}:{connected_at_ms}",
            device_id=None,
            platform=platform,
            connected_at_ms=connected_at_ms,
        ),
        snapshot=() if status == "offline" else None,
        dates_status=flipped,
        format="current",
    )


def message(data: Fields) -> MessageSent:
    """``message_sent``: the legacy ``after_message`` object, one level deeper."""
    sent = legacy.message(required_object(data, "message", "data.message"), "data.message")
    return replace(sent, format="current")


def receipt(data: Fields) -> ReceiptMarked:
    """``message_delivery_receipt`` / ``message_read_receipt`` with a ``data.body``: kind from its action."""
    reader = required_string(data, "sender", "data.sender")
    receiver_type = required_string(data, "receiverType", "data.receiverType")
    body = required_object(data, "body", "data.body")
    message_sender: str | None
    if receiver_type == "user":
        message_sender = required_string(data, "messageSender", "data.messageSender")
        conversation = user_conversation_id(reader, message_sender)
    elif receiver_type == "group":
        message_sender = optional_string(data, "messageSender", "data.messageSender")
        conversation = group_conversation_id(required_string(data, "receiver", "data.receiver"))
    else:
        raise InvalidEvent("data.receiverType", "expected 'user' or 'group'")
    kind = _RECEIPT_ACTIONS.get(required_string(body, "action", "data.body.action"))
    if kind is None:
        raise InvalidEvent("data.body.action", "expected 'delivered' or 'read'")
    return ReceiptMarked(
        kind=kind,
        message_id=message_id(body, "messageId", "data.body.messageId"),
        conversation_id=checked_conversation(conversation, culprit="data.sender"),
        reader=reader,
        message_sender=message_sender,
        at_ms=required_instant(body, "timestamp", "data.body.timestamp"),
        format="current",
    )


def group_receipt(data: Fields, kind: ReceiptKind) -> GroupReceiptMarked:
    """``message_delivered_to_all`` / ``message_read_by_all``; the time is optional (undocumented)."""
    receiver_type = optional_string(data, "receiverType", "data.receiverType")
    if receiver_type not in (None, "group"):
        raise InvalidEvent("data.receiverType", "expected 'group'")
    guid = required_string(data, "receiver", "data.receiver")
    body = required_object(data, "body", "data.body")
    return GroupReceiptMarked(
        kind=kind,
        message_id=message_id(body, "messageId", "data.body.messageId"),
        conversation_id=checked_conversation(group_conversation_id(guid), culprit="data.receiver"),
        message_sender=optional_string(data, "messageSender", "data.messageSender"),
        at_ms=optional_instant(body, "timestamp", "data.body.timestamp"),
    )


def message_change(data: Fields, kind: MessageChangeKind) -> MessageChanged:
    """``message_edited`` / ``message_deleted``, in both shapes CometChat is known to send.

    Documented: an action message (``category`` ``action``, ``data.action`` ``edited`` or
    ``deleted``) whose target is ``data.entities.on.entity``. Seen live: the target itself at
    ``data.message``. The time is the target's ``editedAt`` / ``deletedAt``; failing that, the
    action message's ``sentAt``, or the target's own ``updatedAt``.
    """
    outer = required_object(data, "message", "data.message")
    where = "data.message"
    target = outer
    fallback_field = "updatedAt"
    content = optional_object(outer, "data", "data.message.data") if outer.get("category") == "action" else None
    if content is not None and content.get("action") in ("edited", "deleted"):
        entities = required_object(content, "entities", "data.message.data.entities")
        on = required_object(entities, "on", "data.message.data.entities.on")
        where = "data.message.data.entities.on.entity"
        target = required_object(on, "entity", where)
        fallback_field = "sentAt"
    time_field = "editedAt" if kind == "edited" else "deletedAt"
    at_field = f"{where}.{time_field}"
    at_ms = optional_instant(target, time_field, at_field)
    if at_ms is None:
        fallback = outer if target is not outer else target
        at_field = f"data.message.{fallback_field}"
        at_ms = optional_instant(fallback, fallback_field, at_field)
    if at_ms is None:
        raise InvalidEvent(f"{where}.{time_field}", "required")
    if target.get("conversationId") is None and target is not outer:
        conversation = conversation_id(outer, "conversationId", "data.message.conversationId")
    else:
        conversation = conversation_id(target, "conversationId", f"{where}.conversationId")
    return MessageChanged(
        kind=kind,
        message_id=message_id(target, "id", f"{where}.id"),
        conversation_id=conversation,
        sender=optional_string(target, "sender", f"{where}.sender"),
        sent_at_ms=optional_instant(target, "sentAt", f"{where}.sentAt"),
        at_ms=at_ms,
        at_field=at_field,
        sent_at_field=f"{where}.sentAt",
    )


def membership(data: Fields, kind: MembershipKind, *, lists_members: bool) -> MembershipChanged:
    """A group trigger, timed by ``data.group.updatedAt`` (seconds): the group's last change.

    Without it, the latest ``joinedAt`` of the members listed, else the group's ``createdAt``
    (CometChat's own ``group_member_added`` example has no ``updatedAt``). ``lists_members``:
    the trigger is about members, so ``data.members`` is required (``group_created`` may list
    its owner; ``group_deleted`` lists no one).
    """
    group = required_object(data, "group", "data.group")
    guid = required_string(group, "guid", "data.group.guid")
    members: tuple[str, ...] = ()
    joined: list[tuple[int, str]] = []
    if kind != "deleted":
        listed = required_object(data, "members", "data.members") if lists_members else None
        listed = listed if listed is not None else optional_object(data, "members", "data.members") or {}
        for uid, entry in listed.items():
            if not is_storable_id(uid):
                raise InvalidEvent("data.members", f"a member's uid must be 1 to {MAX_ID_LENGTH} characters, no NUL")
            if isinstance(entry, Mapping):
                where = f"data.members.{uid}.joinedAt"
                joined_at = optional_instant(entry, "joinedAt", where)
                joined += [] if joined_at is None else [(joined_at, where)]
        members = tuple(sorted(listed))
        if lists_members and not members:
            raise InvalidEvent("data.members", "required, expected at least one member")
    at_field = "data.group.updatedAt"
    at_ms = optional_instant(group, "updatedAt", at_field)
    if at_ms is None and joined:
        at_ms, at_field = max(joined)
    if at_ms is None:
        at_field = "data.group.createdAt"
        at_ms = optional_instant(group, "createdAt", at_field)
    if at_ms is None:
        raise InvalidEvent("data.group.updatedAt", "required")
    return MembershipChanged(
        guid=guid,
        kind=kind,
        at_ms=at_ms,
        members=members,
        members_count=optional_count(group, "membersCount", "data.group.membersCount"),
        at_field=at_field,
    )
