"""Each join of the pure core, alone: commutative, associative and idempotent on the facts of one row.

The end-to-end oracle (``test_properties.py``) checks that the joins together give
the contract's answers; these name the join that broke, and reach ties the
histories there make rarely. Facts are made from events, as ``Changes`` makes
them, with every field drawn from a pool of two or three values: most pairs
share a millisecond, a tie rank or a message id and differ in what they carry,
so a tie decided by argument order shows up as a failure.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import replace
from typing import TypeVar

from hypothesis import given
from hypothesis import strategies as st

from presence.core.events import (
    ConnectionChanged,
    Event,
    GroupReceiptMarked,
    MembershipChanged,
    MessageChanged,
    MessageSent,
    ReceiptMarked,
    Session,
)
from presence.core.facts import (
    GroupFact,
    GroupReceiptFact,
    GroupReceiptFlag,
    MemberFact,
    MessageFact,
    ReceiptFact,
    SessionFact,
    Staircase,
    UserFact,
    WatermarkFact,
    changes_of,
    fact_of_change,
    fact_of_message,
    facts_of_connection,
    facts_of_group_receipt,
    facts_of_membership,
    facts_of_receipt,
    join_flag,
    join_group,
    join_member,
    join_message,
    join_receipt,
    join_session,
    join_staircases,
    join_user,
    join_watermark,
)

Fact = TypeVar("Fact")

AT = 1_763_720_000_000
#: Two instants a millisecond apart: most pairs of events tie.
TIMES = (AT, AT + 1)
UID = "u1"
#: Two moments of reception: a redelivery of the same event arrives at another.
RECEIVED = (AT + 60_000, AT + 60_001)
received = st.sampled_from(RECEIVED)
#: The session whose facts are joined; the snapshots also list another.
SESSION = "s1"
MESSAGE_ID = 10


def _assert_semilattice(join: Callable[[Fact, Fact], Fact], a: Fact, b: Fact, c: Fact) -> None:
    assert join(a, a) == a
    assert join(a, b) == join(b, a)
    assert join(join(a, b), c) == join(a, join(b, c))


def _sessions(session_id: st.SearchStrategy[str]) -> st.SearchStrategy[Session]:
    return st.builds(
        Session,
        session_id=session_id,
        device_id=st.sampled_from((None, "d1", "d2")),
        platform=st.sampled_from((None, "web", "ios")),
        connected_at_ms=st.sampled_from((None, AT - 1, AT)),
    )


#: A snapshot as the parser makes one: one entry per session id, sorted by it.
_snapshots = st.lists(_sessions(st.sampled_from((SESSION, "s2"))), max_size=2, unique_by=lambda s: s.session_id).map(
    lambda members: tuple(sorted(members, key=lambda s: s.session_id))
)

legacy_connections = st.builds(
    ConnectionChanged,
    uid=st.just(UID),
    kind=st.sampled_from(("connected", "disconnected")),
    at_ms=st.sampled_from(TIMES),
    status=st.sampled_from(("online", "offline", "away")),
    status_updated_at_ms=st.sampled_from((None, *TIMES)),
    session=_sessions(st.just(SESSION)),
    snapshot=st.none() | _snapshots,
)


@st.composite
def _current_connection(draw: st.DrawFn) -> ConnectionChanged:
    """As ``presence.core.current`` reads one: dated only when the status flipped, offline an empty snapshot."""
    at_ms = draw(st.sampled_from(TIMES))
    status = draw(st.sampled_from(("online", "offline")))
    flipped = draw(st.booleans())
    return ConnectionChanged(
        uid=UID,
        kind=draw(st.sampled_from(("connected", "disconnected"))),
        at_ms=at_ms,
        status=status,
        status_updated_at_ms=at_ms if flipped else None,
        session=draw(_sessions(st.just(SESSION))),
        snapshot=() if status == "offline" else None,
        dates_status=flipped,
        format="current",
    )


#: Both systems' connection events, for one user: ties between the two are the point.
connections = legacy_connections | _current_connection()


def _session_fact(event: ConnectionChanged, received_at_ms: int) -> SessionFact:
    """The fact about ``SESSION``: from the snapshot, or else from the event's own session."""
    (fact,) = (f for f in facts_of_connection(event, received_at_ms)[1] if f.session_id == SESSION)
    return fact


user_facts = st.builds(lambda event, at: facts_of_connection(event, at)[0], connections, received)
session_facts = st.builds(_session_fact, connections, received)

receipts = st.builds(
    ReceiptMarked,
    kind=st.sampled_from(("delivered", "read")),
    message_id=st.sampled_from((MESSAGE_ID - 1, MESSAGE_ID)),
    conversation_id=st.sampled_from(("c1", "c2")),
    reader=st.just("u2"),
    message_sender=st.sampled_from((None, "u1", "u3")),
    at_ms=st.sampled_from(TIMES),
)


def _sent(*, sent_at_ms: st.SearchStrategy[int | None]) -> st.SearchStrategy[MessageSent]:
    return st.builds(
        MessageSent,
        message_id=st.just(MESSAGE_ID),
        conversation_id=st.sampled_from(("c1", "c2")),
        sender=st.sampled_from((None, "u1", "u3")),
        sent_at_ms=sent_at_ms,
        tracked=st.just(True),
    )


def _sent_at_of(message_id: int) -> int:
    """One ``sentAt`` per message id, as CometChat sends one ``after_message`` per message."""
    return AT - message_id


messages_sent = _sent(sent_at_ms=st.just(_sent_at_of(MESSAGE_ID)))


def _message_fact(event: MessageSent, received_at_ms: int = RECEIVED[0]) -> MessageFact:
    fact = fact_of_message(event, received_at_ms)
    assert fact is not None  # tracked
    return fact


#: Edits and deletions of the message; the deletion of the documented shape carries no ``sentAt``.
message_changes = st.builds(
    MessageChanged,
    kind=st.sampled_from(("edited", "deleted")),
    message_id=st.just(MESSAGE_ID),
    conversation_id=st.sampled_from(("c1", "c2")),
    sender=st.sampled_from((None, "u1", "u3")),
    sent_at_ms=st.sampled_from((None, _sent_at_of(MESSAGE_ID))),
    at_ms=st.sampled_from(TIMES),
)
group_receipts = st.builds(
    GroupReceiptMarked,
    kind=st.sampled_from(("delivered", "read")),
    message_id=st.sampled_from((MESSAGE_ID - 1, MESSAGE_ID)),
    conversation_id=st.sampled_from(("group_g1", "group_g2")),
    message_sender=st.sampled_from((None, "u1", "u3")),
    at_ms=st.sampled_from((None, *TIMES)),
)

message_facts = st.one_of(
    st.builds(_message_fact, messages_sent, received),
    st.builds(
        lambda r, at: facts_of_receipt(r, at)[0], receipts.filter(lambda r: r.message_id == MESSAGE_ID), received
    ),
    st.builds(fact_of_change, message_changes, received),
    st.builds(
        lambda g, at: facts_of_group_receipt(g, at)[0],
        group_receipts.filter(lambda g: g.message_id == MESSAGE_ID),
        received,
    ),
)
#: The receipts of one (conversation, reader, kind, message): only their times differ.
receipt_facts = st.builds(lambda r, at: facts_of_receipt(r, at)[1], receipts, received).map(
    lambda fact: ReceiptFact("c1", fact.reader, "delivered", MESSAGE_ID, fact.at_ms, fact.received_at_ms)
)
#: The watermarks of one (conversation, reader, kind): message ids and times tie.
watermark_facts = st.builds(lambda r, at: facts_of_receipt(r, at)[2][0], receipts, received).map(
    lambda fact: WatermarkFact("c1", fact.reader, "delivered", fact.message_id, fact.at_ms, fact.received_at_ms)
)


@given(user_facts, user_facts, user_facts)
def test_join_user_is_a_semilattice(a: UserFact, b: UserFact, c: UserFact) -> None:
    _assert_semilattice(join_user, a, b, c)


@given(session_facts, session_facts, session_facts)
def test_join_session_is_a_semilattice(a: SessionFact, b: SessionFact, c: SessionFact) -> None:
    _assert_semilattice(join_session, a, b, c)


@given(message_facts, message_facts, message_facts)
def test_join_message_is_a_semilattice(a: MessageFact, b: MessageFact, c: MessageFact) -> None:
    _assert_semilattice(join_message, a, b, c)


#: The receipts of one (conversation, reader, kind): message ids, times and receptions tie.
reader_receipts = st.builds(lambda r, at: facts_of_receipt(r, at)[1], receipts, received).map(
    lambda fact: ReceiptFact("c1", fact.reader, "delivered", fact.message_id, fact.at_ms, fact.received_at_ms)
)
staircases = st.lists(reader_receipts, max_size=4).map(lambda facts: join_staircases((), tuple(facts)))


@given(staircases, staircases, staircases)
def test_join_staircases_is_a_semilattice(a: Staircase, b: Staircase, c: Staircase) -> None:
    """The receipts no other dominates, of any union of receipts: whatever the order they came in."""
    _assert_semilattice(join_staircases, a, b, c)


@given(receipt_facts, receipt_facts)
def test_of_one_message_the_earlier_receipt_is_kept(a: ReceiptFact, b: ReceiptFact) -> None:
    (kept,) = join_receipt((a,), b)
    assert (kept.at_ms, kept.received_at_ms) == min((a.at_ms, a.received_at_ms), (b.at_ms, b.received_at_ms))


@given(watermark_facts, watermark_facts, watermark_facts)
def test_join_watermark_is_a_semilattice(a: WatermarkFact, b: WatermarkFact, c: WatermarkFact) -> None:
    _assert_semilattice(join_watermark, a, b, c)


#: Membership events of one group: members, kinds and times drawn from small pools, so keys tie but for the digest.
memberships = st.builds(
    MembershipChanged,
    guid=st.just("g1"),
    kind=st.sampled_from(("added", "removed", "deleted")),
    at_ms=st.sampled_from(TIMES),
    members=st.lists(st.sampled_from((UID, "u2")), unique=True, max_size=2).map(lambda m: tuple(sorted(m))),
    members_count=st.sampled_from((None, 1, 2)),
).map(lambda e: e if e.kind != "deleted" else replace(e, members=()))


def _member_fact(event: MembershipChanged) -> MemberFact:
    """The fact about ``UID`` in the group (every event here names ``UID``)."""
    (fact,) = (f for f in facts_of_membership(event)[1] if f.uid == UID)
    return fact


group_facts = memberships.map(lambda e: facts_of_membership(e)[0])
member_facts = memberships.filter(lambda e: UID in e.members).map(_member_fact)


def _flag(event: GroupReceiptMarked, received_at_ms: int) -> GroupReceiptFlag:
    """The untimed aggregate of one (group, kind, message): only its reception differs."""
    fact = facts_of_group_receipt(replace(event, at_ms=None), received_at_ms)[1]
    assert isinstance(fact, GroupReceiptFlag)
    return GroupReceiptFlag("group_g1", "delivered", MESSAGE_ID, fact.received_at_ms)


def _group_step(event: GroupReceiptMarked, received_at_ms: int) -> GroupReceiptFact:
    """A timed aggregate of one (group, kind): message ids, times and receptions tie."""
    fact = facts_of_group_receipt(replace(event, at_ms=event.at_ms or TIMES[0]), received_at_ms)[1]
    assert isinstance(fact, GroupReceiptFact)
    return GroupReceiptFact("group_g1", "delivered", fact.message_id, fact.at_ms, fact.received_at_ms)


flag_facts = st.builds(_flag, group_receipts, received)
group_steps = st.builds(_group_step, group_receipts, received)
group_staircases = st.lists(group_steps, max_size=4).map(lambda facts: join_staircases((), tuple(facts)))


@given(group_facts, group_facts, group_facts)
def test_join_group_is_a_semilattice(a: GroupFact, b: GroupFact, c: GroupFact) -> None:
    _assert_semilattice(join_group, a, b, c)


@given(member_facts, member_facts, member_facts)
def test_join_member_is_a_semilattice(a: MemberFact, b: MemberFact, c: MemberFact) -> None:
    _assert_semilattice(join_member, a, b, c)


@given(flag_facts, flag_facts, flag_facts)
def test_join_flag_is_a_semilattice(a: GroupReceiptFlag, b: GroupReceiptFlag, c: GroupReceiptFlag) -> None:
    _assert_semilattice(join_flag, a, b, c)


@given(group_staircases, group_staircases, group_staircases)
def test_join_of_group_aggregates_is_a_semilattice(
    a: tuple[GroupReceiptFact, ...], b: tuple[GroupReceiptFact, ...], c: tuple[GroupReceiptFact, ...]
) -> None:
    """The timed aggregates no other dominates, whatever the order they came in (``join_receipt``)."""
    _assert_semilattice(join_staircases, a, b, c)


@given(group_steps, group_steps)
def test_of_one_message_the_earlier_group_aggregate_is_kept(a: GroupReceiptFact, b: GroupReceiptFact) -> None:
    if a.message_id != b.message_id:
        b = GroupReceiptFact(b.conversation_id, b.kind, a.message_id, b.at_ms, b.received_at_ms)
    (kept,) = join_receipt((a,), b)
    assert (kept.at_ms, kept.received_at_ms) == min((a.at_ms, a.received_at_ms), (b.at_ms, b.received_at_ms))


events: st.SearchStrategy[tuple[Event, int]] = st.tuples(
    st.one_of(connections, messages_sent, receipts, message_changes, group_receipts, memberships), received
)


@given(st.lists(events, max_size=8), st.data())
def test_changes_do_not_depend_on_order_or_repetition(batch: list[tuple[Event, int]], data: st.DataObject) -> None:
    """``Changes.add`` in any order, each event any number of times, gives the same rows."""
    repeated = [event for event in batch for _ in range(data.draw(st.integers(1, 3)))]
    shuffled = data.draw(st.permutations(repeated))
    assert changes_of(shuffled) == changes_of(batch)
    assert changes_of(itertools.chain(batch, reversed(batch))) == changes_of(batch)


def test_two_after_messages_that_differ_only_in_sent_at_join_alike_in_either_order() -> None:
    """Outside the pool above, which gives each message one ``sentAt``: a redelivery that carries another."""
    first, second = (_message_fact(MessageSent(MESSAGE_ID, "c1", "u1", sent_at, tracked=True)) for sent_at in TIMES)
    assert join_message(first, second) == join_message(second, first)
