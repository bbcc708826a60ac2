"""The queries of contract §11: a conversation's members, a user's unread counts, a group message's unread_by.

None reads a conversation's messages one by one. An unread count is a key range of message ids
(above the member's read watermark, from the first message since the member joined), counted
as at most 63 message rows next to its low end plus whole blocks of ``message_tally``
(``presence.core.conversations.unread_ranges``): a bounded number of index rows, however long
the conversation. Members are read in uid order from the membership and participant keys, a
page at a time; ``unread_by`` stops at its 101st uid.

Membership is ``facts.is_member`` in SQL (:data:`_IS_MEMBER`). A user known from activity in a
group (a message, a receipt) is a member unless a membership event about them says otherwise:
the newest such event decides (so a user who left is not one).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import (
    ColumnElement,
    Integer,
    Select,
    and_,
    bindparam,
    delete,
    exists,
    func,
    insert,
    literal,
    literal_column,
    or_,
    select,
    text,
    true,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.orm import InstrumentedAttribute

from presence.core.conversations import (
    ALL_SENDERS,
    TALLY_BITS,
    TALLY_LEVELS,
    UNREAD_BY_LIMIT,
    KnownFrom,
    group_conversation,
    guid_of,
    is_group,
    unread_after,
    unread_ranges,
)
from presence.db.models import (
    ChatGroup,
    ConversationParticipant,
    GroupMember,
    Instant,
    Message,
    MessageTally,
    ReceiptWatermark,
    table_of,
)

#: A message that can be unread: known from an ``after_message`` / ``message_sent`` (its claim's
#: authority byte is 1, ``facts.message_claim``) and not deleted. The triggers of migration 0008
#: count the same rows.
COUNTED = and_(Message.claim >= b"\x01", Message.deleted_at.is_(None))
_IS_MEMBER = and_(GroupMember.member.is_(True), GroupMember.key > ChatGroup.deleted_key)
#: Conversations whose counts one statement asks for: SQLite allows 500 terms of a compound select.
_CHUNK: Final = 100


@dataclass(frozen=True, slots=True)
class Member:
    uid: str
    joined_at: datetime | None
    known_from: KnownFrom


@dataclass(frozen=True, slots=True)
class Members:
    #: In uid order, after the cursor; up to the limit asked.
    members: list[Member]
    #: CometChat's own count from the newest group event; ``None`` for a one-to-one conversation.
    members_count: int | None


@dataclass(frozen=True, slots=True)
class ConversationUnread:
    conversation_id: str
    unread_count: int
    last_message_id: int
    read_up_to: int | None


@dataclass(frozen=True, slots=True)
class UnreadPage:
    #: Newest conversation first (by ``last_message_id``, then conversation id), after the cursor.
    conversations: list[ConversationUnread]
    #: Over every conversation of the user, not only this page.
    total_unread: int


@dataclass(frozen=True, slots=True)
class UnreadBy:
    members_count: int | None
    #: The first :data:`UNREAD_BY_LIMIT` known members who have not read the message, by uid.
    uids: list[str]
    truncated: bool


async def members_of(
    connection: AsyncConnection, conversation_id: str, *, after: str | None, limit: int
) -> Members | None:
    """Up to ``limit`` members of a conversation in uid order after ``after``; ``None`` if nothing named it."""
    guid = guid_of(conversation_id)
    found: list[Member] = []
    members_count = None
    if guid is not None:
        members_count = (
            await connection.execute(select(ChatGroup.members_count).where(ChatGroup.guid == guid))
        ).scalar_one_or_none()
        query = (
            select(GroupMember.uid, GroupMember.joined_at)
            .join(ChatGroup, ChatGroup.guid == GroupMember.guid)
            .where(GroupMember.guid == guid, _IS_MEMBER)
            .order_by(GroupMember.uid)
            .limit(limit)
        )
        if after is not None:
            query = query.where(GroupMember.uid > after)
        found += [Member(row.uid, row.joined_at, "membership") for row in await connection.execute(query)]
    participants = (
        select(ConversationParticipant.uid, ConversationParticipant.known_from)
        .where(ConversationParticipant.conversation_id == conversation_id)
        .order_by(ConversationParticipant.uid)
        .limit(limit)
    )
    if guid is not None:
        participants = participants.where(~_has_membership_row(guid, ConversationParticipant.uid))
        if len(found) == limit:
            # The page ends at the last member found: activity beyond it is the next page's. So the
            # participants read are those of this page's uid range, not every one the group has.
            participants = participants.where(ConversationParticipant.uid <= found[-1].uid)
    if after is not None:
        participants = participants.where(ConversationParticipant.uid > after)
    found += [Member(row.uid, None, row.known_from) for row in await connection.execute(participants)]
    found.sort(key=lambda member: member.uid)
    if not found and after is None and not await _is_known(connection, conversation_id, guid):
        return None
    return Members(members=found[:limit], members_count=members_count)


def _has_membership_row(
    guid: str | ColumnElement[str], uid: ColumnElement[str] | InstrumentedAttribute[str]
) -> ColumnElement[bool]:
    """Whether a membership event has spoken about ``uid`` in the group: then it, not activity, decides."""
    return exists().where(GroupMember.guid == guid, GroupMember.uid == uid)


async def _is_known(connection: AsyncConnection, conversation_id: str, guid: str | None) -> bool:
    named = [
        exists().where(Message.conversation_id == conversation_id),
        exists().where(ConversationParticipant.conversation_id == conversation_id),
    ]
    if guid is not None:
        named.append(exists().where(ChatGroup.guid == guid))
    return bool((await connection.execute(select(or_(*named)))).scalar_one())


async def unread_of(connection: AsyncConnection, uid: str, *, before: tuple[int, str] | None, limit: int) -> UnreadPage:
    """The user's conversations with a known message, newest first, after the cursor ``before``.

    A user's conversations: the groups they are a member of, and the conversations they took
    part in (a one-to-one party; activity in a group no membership event says they left).
    """
    joined: dict[str, datetime | None] = {}
    memberships = (
        select(GroupMember.guid, GroupMember.joined_at)
        .join(ChatGroup, ChatGroup.guid == GroupMember.guid)
        .where(GroupMember.uid == uid, _IS_MEMBER)
    )
    for row in await connection.execute(memberships):
        joined[group_conversation(row.guid)] = row.joined_at
    spoken_of = set((await connection.execute(select(GroupMember.guid).where(GroupMember.uid == uid))).scalars())
    taken_part = select(ConversationParticipant.conversation_id).where(ConversationParticipant.uid == uid)
    for conversation_id in (await connection.execute(taken_part)).scalars():
        if not (is_group(conversation_id) and guid_of(conversation_id) in spoken_of):
            joined.setdefault(conversation_id, None)
    ordered = sorted(joined)
    found: list[ConversationUnread] = []
    for start in range(0, len(ordered), _CHUNK):
        chunk = [(c, joined[c]) for c in ordered[start : start + _CHUNK]]
        found += await _unread_in(connection, uid, chunk)
    found.sort(key=lambda c: (-c.last_message_id, c.conversation_id))
    total = sum(c.unread_count for c in found)
    if before is not None:
        last_id, conversation_id = before
        found = [
            c
            for c in found
            if c.last_message_id < last_id or (c.last_message_id == last_id and c.conversation_id > conversation_id)
        ]
    return UnreadPage(conversations=found[:limit], total_unread=total)


async def _unread_in(
    connection: AsyncConnection, uid: str, conversations: Sequence[tuple[str, datetime | None]]
) -> list[ConversationUnread]:
    """Each conversation's last message, the user's read watermark and first message since joining; then the counts."""
    parts = []
    for conversation_id, joined_at in conversations:
        last = select(func.max(Message.id)).where(Message.conversation_id == conversation_id).scalar_subquery()
        read = (
            select(ReceiptWatermark.message_id)
            .where(
                ReceiptWatermark.conversation_id == conversation_id,
                ReceiptWatermark.reader_uid == uid,
                ReceiptWatermark.kind == "read",
            )
            .scalar_subquery()
        )
        since: Any = literal(None)
        if joined_at is not None:
            since = (
                select(Message.id)
                .where(Message.conversation_id == conversation_id, Message.sent_at >= literal(joined_at, Instant()))
                .order_by(Message.sent_at, Message.id)
                .limit(1)
                .scalar_subquery()
            )
        parts.append(select(literal(conversation_id).label("conversation_id"), last, read, since))
    positions = [(row[0], row[1], row[2], row[3]) for row in await connection.execute(_union(parts))]
    joined = dict(conversations)
    counted: list[tuple[str, int, int | None, int | None]] = []
    for conversation_id, last_id, read_up_to, first_since_join in positions:
        if last_id is None:
            continue  # no message known: nothing to list
        after = unread_after(read_up_to, first_since_join, joined=joined[conversation_id] is not None)
        counted.append((conversation_id, last_id, read_up_to, after))
    counts = [
        select(literal(conversation_id).label("conversation_id"), _unread_count(conversation_id, uid, after))
        for conversation_id, _, _, after in counted
        if after is not None
    ]
    found = {row[0]: row[1] for row in await connection.execute(_union(counts))} if counts else {}
    return [
        ConversationUnread(conversation_id, int(found.get(conversation_id, 0)), last_id, read_up_to)
        for conversation_id, last_id, read_up_to, _ in counted
    ]


def _union(parts: Sequence[Select[Any]]) -> Select[Any] | Any:
    return parts[0] if len(parts) == 1 else union_all(*parts)


def _unread_count(conversation_id: str, uid: str, after: int) -> Any:
    """Messages of the conversation with an id above ``after`` that count, less the user's own.

    The message rows up to the end of ``after``'s level-0 block, then whole tally blocks:
    over all senders, less the user's own.
    """
    ranges = unread_ranges(after)
    near = (
        select(func.count())
        .select_from(Message)
        .where(
            Message.conversation_id == conversation_id,
            Message.id > after,
            Message.id <= ranges.last_row,
            COUNTED,
            or_(Message.sender.is_(None), Message.sender != uid),
        )
        .scalar_subquery()
    )
    total: Any = near
    for sender, sign in ((ALL_SENDERS, 1), (uid, -1)):
        for tally in ranges.tallies:
            high = true() if tally.high is None else MessageTally.block <= tally.high
            blocks = (
                select(func.coalesce(func.sum(MessageTally.n), 0))
                .where(
                    MessageTally.conversation_id == conversation_id,
                    MessageTally.sender == sender,
                    MessageTally.level == tally.level,
                    MessageTally.block >= tally.low,
                    high,
                )
                .scalar_subquery()
            )
            total = total + blocks if sign > 0 else total - blocks
    return total.label("unread_count")


#: What :func:`unread_by_steps` asks: a statement and its parameters; it is sent back the rows.
UnreadByStep = tuple[Select[*tuple[Any, ...]], dict[str, Any]]

_MEMBERS_COUNT = select(ChatGroup.members_count).where(ChatGroup.guid == bindparam("guid"))
_COUNTED_MESSAGE: Select[*tuple[Any, ...]] = select(COUNTED, Message.sent_at).where(
    Message.id == bindparam("message_id")
)


async def unread_by(connection: AsyncConnection, message_id: int, conversation_id: str, sender: str | None) -> UnreadBy:
    """A group message's known members who have not read it (contract §11), and CometChat's count.

    Nobody for a message that cannot be unread (not known from an ``after_message``, or deleted);
    never its sender, nor a member who joined after it was sent.
    """
    steps = unread_by_steps(message_id, conversation_id, sender)
    statement, parameters = next(steps)
    while True:
        rows: list[tuple[Any, ...]] = [tuple(row) for row in await connection.execute(statement, parameters)]
        try:
            statement, parameters = steps.send(rows)
        except StopIteration as done:
            answer: UnreadBy = done.value
            return answer


def unread_by_steps(
    message_id: int, conversation_id: str, sender: str | None
) -> Generator[UnreadByStep, list[tuple[Any, ...]], UnreadBy]:
    """:func:`unread_by` as the statements it runs, each sent back its rows; returns the answer.

    So ``presence.db.inline`` runs the very same statements on its own connection. Each is built
    once (:func:`_unread_members`, :func:`_unread_active`): they differ only by which of the
    message's sending time and sender are known, and by how they walk the members.
    """
    guid = guid_of(conversation_id)
    assert guid is not None, "only a group message has unread_by"
    counts = yield _MEMBERS_COUNT, {"guid": guid}
    members_count: int | None = counts[0][0] if counts else None
    found = yield _COUNTED_MESSAGE, {"message_id": message_id}
    if not found or not found[0][0]:
        return UnreadBy(members_count=members_count, uids=[], truncated=False)
    sent_at: datetime | None = found[0][1]

    wanted = UNREAD_BY_LIMIT + 1
    given: dict[str, Any] = {"guid": guid, "conversation_id": conversation_id, "message_id": message_id}
    if sent_at is not None:
        given["sent_at"] = sent_at
    if sender is not None:
        given["sender"] = sender
    known = (sent_at is not None, sender is not None)
    unread_members = yield from _first_by_uid(lambda walk: _unread_members(*known, walk=walk), given, wanted)
    bounded = len(unread_members) == wanted
    if bounded:
        given = {**given, "last_member": unread_members[-1]}  # as in members_of
    unread_active = yield from _first_by_uid(lambda walk: _unread_active(known[1], bounded, walk=walk), given, wanted)
    uids = sorted({*unread_members, *unread_active})
    return UnreadBy(members_count=members_count, uids=uids[:UNREAD_BY_LIMIT], truncated=len(uids) > UNREAD_BY_LIMIT)


@functools.cache
def _unread_members(sent_at: bool, sender: bool, *, walk: bool) -> Select[Any]:
    """The group's members who have not read ``:message_id`` (read_through, migration 0009: a range of an index)."""
    members = select(GroupMember.uid).join(ChatGroup, ChatGroup.guid == GroupMember.guid)
    members = members.where(
        GroupMember.guid == bindparam("guid"), _IS_MEMBER, GroupMember.read_through < bindparam("message_id")
    )
    if sent_at:
        members = members.where(
            or_(GroupMember.joined_at.is_(None), GroupMember.joined_at <= bindparam("sent_at", type_=Instant()))
        )
    if sender:
        members = members.where(GroupMember.uid != bindparam("sender"))
    return _walked(members, GroupMember.uid, walk)


@functools.cache
def _unread_active(sender: bool, bounded: bool, *, walk: bool) -> Select[Any]:
    """The conversation's participants known from activity only who have not read ``:message_id``."""
    active = select(ConversationParticipant.uid).where(
        ConversationParticipant.conversation_id == bindparam("conversation_id"),
        ~_has_membership_row(bindparam("guid"), ConversationParticipant.uid),
        ConversationParticipant.read_through < bindparam("message_id"),
    )
    if sender:
        active = active.where(ConversationParticipant.uid != bindparam("sender"))
    if bounded:
        active = active.where(ConversationParticipant.uid <= bindparam("last_member"))
    return _walked(active, ConversationParticipant.uid, walk)


#: Below this many rows, the members who have not read a message are read whole through the
#: ``read_through`` index and sorted here; above it, they are dense, and a walk in uid order
#: finds the first page after a few more rows than it keeps.
_FEW: Final = 1000


def _walked(query: Select[Any], uid: InstrumentedAttribute[str], walk: bool) -> Select[Any]:
    """``query`` as :func:`_first_by_uid` runs it: at most :data:`_FEW` + 1 rows, or the first ``:count`` by uid."""
    if walk:
        return query.order_by(uid).limit(bindparam("count", type_=Integer()))
    return query.limit(_FEW + 1)


def _first_by_uid(
    query: Callable[[bool], Select[Any]], given: dict[str, Any], count: int
) -> Generator[UnreadByStep, list[tuple[Any, ...]], list[str]]:
    """The first ``count`` uids ``query`` finds, in uid order, in time that grows with the page, not the group.

    ``query`` filters on ``read_through``: when few rows match, the range of its index holds them all
    (however many members have read, their rows are not visited); when many do, walking the
    primary key in uid order meets a match every few rows.
    """
    few = [uid for (uid,) in (yield query(False), given)]
    if len(few) <= _FEW:
        return sorted(few)[:count]
    return [uid for (uid,) in (yield query(True), {**given, "count": count})]


async def suspend_tallies(connection: AsyncConnection) -> None:
    """Stop the triggers keeping ``message_tally`` for the rest of this transaction (PostgreSQL).

    For a bulk writer, which then calls :func:`recount_tallies`. On PostgreSQL each update of a
    row leaves a version the next update in the same transaction steps over, so a transaction
    writing 10^5 messages of one conversation would update its top tally rows 10^5 times each
    (quadratic). SQLite updates in place: its triggers keep running, and the recount agrees.
    """
    if connection.dialect.name == "postgresql":
        await connection.execute(text("SET LOCAL presence.tallies_suspended = 'on'"))


async def recount_tallies(connection: AsyncConnection) -> None:
    """Make ``message_tally`` again from the ``message`` rows: set-based, one pass per level."""
    tally = table_of(MessageTally)
    await connection.execute(delete(MessageTally))
    columns = ["conversation_id", "sender", "level", "block", "n"]
    for level in range(1, TALLY_LEVELS + 1):
        # Inline: PostgreSQL has ``bigint >> integer`` only, and the same expression must be grouped by.
        block = Message.id.op(">>")(literal_column(str(TALLY_BITS * level), Integer()))
        everyone = (
            select(Message.conversation_id, literal(ALL_SENDERS), literal(level), block, func.count())
            .where(COUNTED)
            .group_by(Message.conversation_id, block)
        )
        by_sender = (
            select(Message.conversation_id, Message.sender, literal(level), block, func.count())
            .where(COUNTED, Message.sender.is_not(None))
            .group_by(Message.conversation_id, Message.sender, block)
        )
        await connection.execute(insert(tally).from_select(columns, everyone))
        await connection.execute(insert(tally).from_select(columns, by_sender))
