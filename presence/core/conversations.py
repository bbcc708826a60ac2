"""Conversations' members and unread counts (contract §11): the pure part.

Who takes part in a conversation, read from the events that name them, and how an unread
count over a key range of message ids is cut into a bounded number of stored tallies.

The tallies (``message_tally``, kept by triggers on ``message``, docs/design.md "Unread
counts") count, per conversation and sender (and, with sender ``""``, over all senders), the
messages that count as unread candidates: known from an ``after_message`` / ``message_sent``
and not deleted. Level ``l`` (1 to :data:`TALLY_LEVELS`) holds one row per block of
``2 ** (TALLY_BITS * l)`` consecutive message ids, ``block = id >> (TALLY_BITS * l)``. The
messages above a watermark are then at most ``2 ** TALLY_BITS - 1`` message rows next to it,
at most as many blocks on each level above, and the top level's blocks: a count reads a
bounded number of rows whatever the conversation's length.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

#: Bits of message id per tally level: 64 blocks of a level make one block of the next.
TALLY_BITS: Final = 6
#: Levels of tallies; the top level's blocks are ``id >> 36``: ids below 2^42 have at most 64.
TALLY_LEVELS: Final = 6
#: The sender of the tallies over all senders (no uid is empty).
ALL_SENDERS: Final = ""
#: How many members ``unread_by`` lists before it says it was cut.
UNREAD_BY_LIMIT: Final = 100
GROUP_PREFIX: Final = "group_"
ONE_TO_ONE_SEPARATOR: Final = "_user_"

KnownFrom = Literal["membership", "party", "activity"]


def is_group(conversation_id: str) -> bool:
    return conversation_id.startswith(GROUP_PREFIX)


def group_conversation(guid: str) -> str:
    """A group's conversation id, as CometChat forms it (contract §4)."""
    return GROUP_PREFIX + guid


def guid_of(conversation_id: str) -> str | None:
    """The group of a group conversation; ``None`` for a one-to-one conversation."""
    return conversation_id[len(GROUP_PREFIX) :] if is_group(conversation_id) else None


def participants(conversation_id: str, named: tuple[str | None, ...]) -> tuple[tuple[str, KnownFrom], ...]:
    """The users an event shows taking part in a conversation, and how they are known.

    In a group, the users the event names (``activity``: a sender, a reader). In a one-to-one
    conversation both parties (``party``): its id is the two uids sorted and joined by
    ``_user_``; a named party tells where the split is when a uid itself holds ``_user_``.
    """
    uids = [uid for uid in named if uid]
    if is_group(conversation_id):
        return tuple((uid, "activity") for uid in sorted(set(uids)))
    parties = set(_parties(conversation_id, uids))
    return tuple((uid, "party") for uid in sorted(parties))


def _parties(conversation_id: str, named: list[str]) -> list[str]:
    separator = ONE_TO_ONE_SEPARATOR
    for uid in named:
        if conversation_id.startswith(uid + separator):
            return [uid, conversation_id[len(uid) + len(separator) :]]
        if conversation_id.endswith(separator + uid):
            return [conversation_id[: -len(uid) - len(separator)], uid]
    first, found, second = conversation_id.partition(separator)
    return [first, second] if found and first and second else []


@dataclass(frozen=True, slots=True)
class TallyRange:
    """The blocks ``low`` to ``high`` (inclusive; ``None``: no bound) of one tally level."""

    level: int
    low: int
    high: int | None


@dataclass(frozen=True, slots=True)
class UnreadRanges:
    """Every message id above ``after``: the message rows ``after < id <= last_row`` and the tallies."""

    after: int
    last_row: int
    tallies: tuple[TallyRange, ...]


def unread_ranges(after: int) -> UnreadRanges:
    """Cut the message ids above ``after`` into message rows near it and whole tally blocks.

    At level 0 (message ids) and each level below the top, the ids of the same parent block
    above ``after``'s own; at the top level, every block above. Each id above ``after`` lies in
    exactly one of them (``tests/test_conversations.py`` checks it).
    """
    fan = (1 << TALLY_BITS) - 1
    position = after
    last_row = position | fan
    tallies = []
    for level in range(1, TALLY_LEVELS):
        position >>= TALLY_BITS
        if (position | fan) > position:
            tallies.append(TallyRange(level, position + 1, position | fan))
    position >>= TALLY_BITS
    tallies.append(TallyRange(TALLY_LEVELS, position + 1, None))
    return UnreadRanges(after=after, last_row=last_row, tallies=tuple(tallies))


def unread_after(read_up_to: int | None, first_since_join: int | None, *, joined: bool) -> int | None:
    """The id above which messages are unread; ``None`` when none can be.

    Above the member's read watermark, and for a member who joined a group, from the first
    message sent at or after the join (``first_since_join``; none such: nothing is unread).
    """
    after = -1 if read_up_to is None else read_up_to
    if joined:
        if first_since_join is None:
            return None
        after = max(after, first_since_join - 1)
    return after
