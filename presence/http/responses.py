"""Every JSON answer of the service, declared once as a typed shape, and how each is made and written.

A shape is a frozen ``msgspec.Struct``: its fields, in order, are the keys of the
answer, in order. The same declarations give ``/openapi.json`` its
``components/schemas`` (``msgspec.json.schema_components``, JSON Schema 2020-12),
so a field cannot be added to an answer without appearing in the document.
Every field has no default, so every property is required (``null`` where the
type says so); ``forbid_unknown_fields`` makes each object schema closed
(``additionalProperties: false``).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Final, Literal

import msgspec
from aiohttp import web
from msgspec import Meta

from presence.core.facts import order_key_ms
from presence.core.times import format_instant, ms_to_datetime
from presence.db import conversations, reads

#: How every time in every answer is written: ISO 8601, UTC, milliseconds, ``Z`` (contract §3).
INSTANT_PATTERN: Final = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$"
#: Message ids are whole numbers, written as strings.
MESSAGE_ID_PATTERN: Final = r"^\d+$"
#: Cursors are URL-safe base64 without padding; opaque to callers.
CURSOR_PATTERN: Final = r"^[A-Za-z0-9_-]+$"

# Strings, not datetimes: ``format_instant`` writes them, exactly as the contract says.
Instant = Annotated[
    str,
    Meta(
        pattern=INSTANT_PATTERN,
        description="ISO 8601, UTC, millisecond precision, ending in `Z`.",
        examples=["2026-11-21T10:15:30.123Z"],
        extra_json_schema={"format": "date-time"},
    ),
]
MessageId = Annotated[str, Meta(pattern=MESSAGE_ID_PATTERN, examples=["57"])]
Count = Annotated[int, Meta(ge=0)]
NextCursor = Annotated[
    Annotated[str, Meta(pattern=CURSOR_PATTERN)] | None,
    Meta(description="Pass it as `cursor` for the next page; `null` on the last page."),
]


class Shape(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The base of every answer: immutable, keyword-built, closed."""


class Connection(Shape, frozen=True):
    """A live connection of a user."""

    session_id: str
    device_id: str | None
    platform: str | None
    connected_at: Instant | None


class Presence(Shape, frozen=True):
    """A user's presence, from the newest connection event for that user."""

    uid: str
    status: Annotated[
        str,
        Meta(
            description="`data.user.status` of the newest connection event, or what a reconciliation pass found"
            " (`online`, `offline`); `offline` when `PRESENCE_CONNECTION_TTL` expired it."
        ),
    ]
    status_updated_at: Instant | None
    last_seen_at: Instant
    connections: Annotated[
        list[Connection], Meta(description="Live connections, by `connected_at`, then `session_id`.")
    ]
    status_source: Annotated[
        Literal["webhook", "reconcile", "expired"],
        Meta(
            description="Which kind of event decided `status`: a CometChat webhook, a reconciliation pass against"
            " CometChat's REST API, or `expired`: with `PRESENCE_CONNECTION_TTL`, the user is left with no session"
            " signalled within it, or has no event within it (the status then reads `offline`)."
        ),
    ]


class PresenceList(Shape, frozen=True):
    """Known users in the order asked, and the uids never seen."""

    users: list[Presence]
    unknown: list[str]


class UserPage(Shape, frozen=True):
    """A page of users in uid order."""

    users: list[Presence]
    next_cursor: NextCursor


class Session(Shape, frozen=True):
    """One connection of a user's history."""

    session_id: str
    device_id: str | None
    platform: str | None
    connected_at: Instant | None
    disconnected_at: Instant | None


class SessionPage(Shape, frozen=True):
    """A page of a user's sessions, newest connection first."""

    sessions: list[Session]
    next_cursor: NextCursor


class Receipt(Shape, frozen=True):
    """One reader of a message."""

    uid: str
    delivered_at: Instant | None
    read_at: Instant | None


class MessageReceipts(Shape, frozen=True):
    """A message's readers, sorted by uid; its sender is never listed."""

    message_id: MessageId
    conversation_id: str
    sender: str | None
    receipts: list[Receipt]
    delivered_count: Count
    read_count: Count
    #: The latest edit known, the deletion; ``null`` when not known.
    edited_at: Instant | None
    deleted_at: Instant | None
    #: A group's aggregates (contract §8), for this message and every earlier one of the group;
    #: the time is the earliest known, ``null`` when none is. Always false for a one-to-one message.
    delivered_to_all: bool
    delivered_to_all_at: Instant | None
    read_by_all: bool
    read_by_all_at: Instant | None


class GroupMessageReceipts(MessageReceipts, frozen=True):
    """A group message's readers, and who among the group's known members has not read it (contract §11)."""

    members_count: Annotated[
        Count | None, Meta(description="CometChat's own count, from the newest group event; `null` when none gave it.")
    ]
    unread_by: Annotated[
        list[str],
        Meta(
            description="Known members (membership events, activity) who have not read the message, by uid, at most"
            " 100: never its sender, nor one who joined after it was sent; nobody when the message is deleted or"
            " not known from an `after_message` / `message_sent`."
        ),
    ]
    unread_by_truncated: Annotated[
        bool, Meta(description="More than 100 have not read it; `unread_by` is the first 100.")
    ]


class ReaderWatermark(Shape, frozen=True):
    """The highest message id a reader has delivered and read in a conversation, and when."""

    uid: str
    delivered_up_to: MessageId | None
    delivered_at: Instant | None
    read_up_to: MessageId | None
    read_at: Instant | None


class ConversationReceipts(Shape, frozen=True):
    """Each reader's watermarks in a conversation, sorted by uid."""

    conversation_id: str
    readers: list[ReaderWatermark]


class Member(Shape, frozen=True):
    """A member of a conversation, and how the service knows it."""

    uid: str
    joined_at: Annotated[
        Instant | None, Meta(description="When the membership event that made the user a member happened; else `null`.")
    ]
    known_from: Annotated[
        Literal["membership", "party", "activity"],
        Meta(
            description="`membership`: a group membership event; `party`: one of a one-to-one conversation's two"
            " users; `activity`: sent a message or a receipt in the group, no membership event seen."
        ),
    ]


class MemberPage(Shape, frozen=True):
    """A page of a conversation's members in uid order."""

    members: list[Member]
    members_count: Annotated[
        Count | None,
        Meta(description="CometChat's own count, from the newest group event; `null` for a one-to-one conversation."),
    ]
    next_cursor: NextCursor


class ConversationUnread(Shape, frozen=True):
    """How many messages of a conversation the user has not read."""

    conversation_id: str
    unread_count: Count
    last_message_id: Annotated[MessageId, Meta(description="The newest message the service knows in it.")]
    read_up_to: Annotated[MessageId | None, Meta(description="The user's read watermark there; `null`: none.")]


class UnreadPage(Shape, frozen=True):
    """A page of a user's conversations, newest first, and the unread total over all of them."""

    conversations: list[ConversationUnread]
    total_unread: Annotated[Count, Meta(description="Over every conversation of the user, not only this page.")]
    next_cursor: NextCursor


class Stats(Shape, frozen=True):
    """Counts over every user."""

    users_online: Count
    connections: Count
    connections_by_platform: Annotated[
        dict[str, Count],
        Meta(description="Live connections by platform; `unknown` for sessions whose platform was never sent."),
    ]


# --- the change feed (contract §9) -----------------------------------------------------------------

Seq = Annotated[int, Meta(ge=1, description="The change's number: in commit order, without gaps.")]


class PresenceChange(Shape, frozen=True, tag_field="type", tag="presence"):
    """A user's status or set of live connections changed."""

    seq: Seq
    uid: str
    at: Annotated[Instant, Meta(description="The time of the user's newest event in the transaction.")]
    presence: Annotated[Presence, Meta(description="The presence as `GET /users/{uid}/presence` now answers it.")]


class ReceiptChange(Shape, frozen=True, tag_field="type", tag="receipt"):
    """A receipt is new or its time moved earlier: the reader had delivered (read) every message of
    the conversation up to `message_id` by `at`."""

    seq: Seq
    conversation_id: str
    uid: Annotated[str, Meta(description="The reader.")]
    kind: Literal["delivered", "read"]
    message_id: MessageId
    at: Instant


class GroupReceiptChange(Shape, frozen=True, tag_field="type", tag="group_receipt"):
    """A group's delivered-to-all (read-by-all) became known up to `message_id`, or moved earlier."""

    seq: Seq
    conversation_id: str
    kind: Literal["delivered", "read"]
    message_id: MessageId
    at: Annotated[
        Instant | None,
        Meta(description="`null` for an aggregate without a time whose message's `sentAt` is not known."),
    ]


AnyChange = PresenceChange | ReceiptChange | GroupReceiptChange


class ChangePage(Shape, frozen=True):
    """Changes after a cursor, in `seq` order."""

    changes: list[AnyChange]
    next_after: Annotated[int, Meta(ge=0, description="Pass it as `after` for the next page.")]


def presence_change_body(uid: str, at_ms: int, presence: reads.Presence) -> str:
    """A presence change as stored: the JSON of :class:`PresenceChange` without ``seq``."""
    body = {"type": "presence", "uid": uid, "at": _instant_of(at_ms), "presence": presence_answer(presence)}
    return _encoder.encode(body).decode()


def receipt_change_body(conversation_id: str, reader: str, kind: str, message_id: int, at: datetime) -> str:
    """A receipt change as stored: the JSON of :class:`ReceiptChange` without ``seq``."""
    body = {
        "type": "receipt",
        "conversation_id": conversation_id,
        "uid": reader,
        "kind": kind,
        "message_id": str(message_id),
        "at": format_instant(at),
    }
    return _encoder.encode(body).decode()


def group_receipt_change_body(conversation_id: str, kind: str, message_id: int, at: datetime | None) -> str:
    """A group receipt change as stored: the JSON of :class:`GroupReceiptChange` without ``seq``."""
    body = {
        "type": "group_receipt",
        "conversation_id": conversation_id,
        "kind": kind,
        "message_id": str(message_id),
        "at": format_instant(at),
    }
    return _encoder.encode(body).decode()


def change_page_answer(changes: list[str], next_after: int) -> web.Response:
    """A :class:`ChangePage` from changes already rendered as JSON (``presence.db.changes.render``)."""
    body = f'{{"changes":[{",".join(changes)}],"next_after":{next_after}}}'
    return web.Response(text=body, content_type="application/json")


def _instant_of(ms: int) -> str:
    return format_instant(ms_to_datetime(ms))


class HookAck(Shape, frozen=True):
    """The event was committed, or kept without being acted on."""

    status: Literal["accepted", "ignored"]


class Healthy(Shape, frozen=True):
    """The process serves."""

    status: Literal["ok"]


class Ready(Shape, frozen=True):
    """The database answers and its schema is at the newest revision."""

    status: Literal["ready"]
    revision: Annotated[str, Meta(description="The schema's Alembic revision (the newest).")]


class ErrorDetail(Shape, frozen=True):
    """What went wrong."""

    code: Annotated[str, Meta(pattern=r"^[a-z][a-z0-9_]*$", description="Stable, snake_case.")]
    message: str


class Error(Shape, frozen=True):
    """Every error answer."""

    error: ErrorDetail


_encoder: Final = msgspec.json.Encoder()


def json_answer(shape: Shape, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    """``shape`` as the JSON body of an answer (a ``200`` unless told otherwise)."""
    return web.Response(body=_encoder.encode(shape), status=status, content_type="application/json", headers=headers)


# --- from what presence.db.reads returns ------------------------------------------------------------


def presence_answer(presence: reads.Presence) -> Presence:
    return Presence(
        uid=presence.uid,
        status=presence.status,
        status_updated_at=format_instant(presence.status_updated_at),
        last_seen_at=format_instant(presence.last_seen_at),
        connections=[
            Connection(
                session_id=c.session_id,
                device_id=c.device_id,
                platform=c.platform,
                connected_at=format_instant(c.connected_at),
            )
            for c in presence.connections
        ],
        status_source=status_source(presence.status_source),
    )


StatusSource = Literal["webhook", "reconcile", "expired"]
_SOURCES: Final[dict[str, StatusSource]] = {"webhook": "webhook", "reconcile": "reconcile", "expired": "expired"}


def status_source(value: str) -> StatusSource:
    """A stored (or derived) ``status_source`` as answered: ``webhook`` for anything unknown."""
    return _SOURCES.get(value, "webhook")


def receipts_answer(message: reads.MessageReceipts) -> MessageReceipts:
    return MessageReceipts(
        message_id=str(message.message_id),
        conversation_id=message.conversation_id,
        sender=message.sender,
        receipts=[
            Receipt(uid=r.uid, delivered_at=format_instant(r.delivered_at), read_at=format_instant(r.read_at))
            for r in message.receipts
        ],
        delivered_count=sum(1 for r in message.receipts if r.delivered_at is not None),
        read_count=sum(1 for r in message.receipts if r.read_at is not None),
        edited_at=format_instant(message.edited_at),
        deleted_at=format_instant(message.deleted_at),
        delivered_to_all=message.delivered_to_all,
        delivered_to_all_at=format_instant(message.delivered_to_all_at),
        read_by_all=message.read_by_all,
        read_by_all_at=format_instant(message.read_by_all_at),
    )


def group_receipts_answer(message: reads.MessageReceipts, unread: conversations.UnreadBy) -> GroupMessageReceipts:
    return with_unread_by(receipts_answer(message), unread)


def with_unread_by(plain: MessageReceipts, unread: conversations.UnreadBy) -> GroupMessageReceipts:
    """A group message's answer: its plain one and who has not read it."""
    return GroupMessageReceipts(
        **{name: getattr(plain, name) for name in plain.__struct_fields__},
        members_count=unread.members_count,
        unread_by=unread.uids,
        unread_by_truncated=unread.truncated,
    )


def members_answer(found: conversations.Members, next_cursor: str | None) -> MemberPage:
    return MemberPage(
        members=[
            Member(uid=m.uid, joined_at=format_instant(m.joined_at), known_from=m.known_from) for m in found.members
        ],
        members_count=found.members_count,
        next_cursor=next_cursor,
    )


def unread_answer(page: conversations.UnreadPage, next_cursor: str | None) -> UnreadPage:
    return UnreadPage(
        conversations=[
            ConversationUnread(
                conversation_id=c.conversation_id,
                unread_count=c.unread_count,
                last_message_id=str(c.last_message_id),
                read_up_to=None if c.read_up_to is None else str(c.read_up_to),
            )
            for c in page.conversations
        ],
        total_unread=page.total_unread,
        next_cursor=next_cursor,
    )


def sessions_answer(history: reads.SessionHistory) -> list[Session]:
    # A session that the newest snapshot dropped without an event of its own ended, at the
    # latest, when that snapshot was taken.
    snapshot_at = ms_to_datetime(order_key_ms(history.snapshot_key)) if history.snapshot_key else None
    return [
        Session(
            session_id=s.session_id,
            device_id=s.device_id,
            platform=s.platform,
            connected_at=format_instant(s.connected_at),
            disconnected_at=format_instant(snapshot_at if s.ended_by_snapshot else s.disconnected_at),
        )
        for s in history.sessions
    ]


def watermarks_answer(conversation_id: str, readers: list[reads.ReaderWatermark]) -> ConversationReceipts:
    return ConversationReceipts(
        conversation_id=conversation_id,
        readers=[
            ReaderWatermark(
                uid=r.uid,
                delivered_up_to=None if r.delivered_up_to is None else str(r.delivered_up_to),
                delivered_at=format_instant(r.delivered_at),
                read_up_to=None if r.read_up_to is None else str(r.read_up_to),
                read_at=format_instant(r.read_at),
            )
            for r in readers
        ],
    )


def stats_answer(stats: reads.Stats) -> Stats:
    by_platform: dict[str, int] = {}
    for platform, count in stats.connections_by_platform.items():
        name = platform if platform is not None else "unknown"  # a session whose platform was never sent
        by_platform[name] = by_platform.get(name, 0) + count
    return Stats(
        users_online=stats.users_online,
        connections=stats.connections,
        connections_by_platform=dict(sorted(by_platform.items())),
    )
