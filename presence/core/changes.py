"""What a batch changed that a caller can see (contract §9): the decisions of the change feed, pure.

The database reads what a batch's keys held before its writes and after them, in the same
transaction (``presence.db.recording``); these functions say which of them are changes. The
joins decide what is stored, so a fact that wins its join alters a row and one that loses does
not: comparing the two readings is the same as asking which facts won, and a stale or repeated
event, which wins nothing, records nothing.

- A user's presence changed when its status or its set of live connections differ; its times
  alone (``last_seen_at``, ``status_updated_at``) moving is not a change.
- A receipt (or a group's timed aggregate) changed when its row is new, or its time moved
  earlier. Rows the batch deleted were dominated by the new ones: no change of their own.
- An untimed group aggregate changed when its flag is new.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from typing import Protocol, Self, TypeVar


class _Ordered(Protocol):
    def __lt__(self, other: Self, /) -> bool: ...


K = TypeVar("K", bound=Hashable)
T = TypeVar("T", bound=_Ordered)


def presence_view(status: str, connections: Iterable[Hashable]) -> tuple[str, frozenset[Hashable]]:
    """What of a presence a change is about: the status and the set of live connections."""
    return status, frozenset(connections)


def changed_presences(
    before: Mapping[str, tuple[str, frozenset[Hashable]]], after: Mapping[str, tuple[str, frozenset[Hashable]]]
) -> list[str]:
    """The uids, in order, whose :func:`presence_view` after differs from before (or is new)."""
    return sorted(uid for uid, view in after.items() if before.get(uid) != view)


def earlier_or_new(before: Mapping[K, T], after: Mapping[K, T]) -> list[K]:
    """The keys of ``after`` absent from ``before`` or with an earlier time there, in ``after``'s order."""
    changed = []
    for key, at in after.items():
        was = before.get(key)
        if was is None or at < was:
            changed.append(key)
    return changed


def new_keys(before: Iterable[K], after: Iterable[K]) -> list[K]:
    """The keys of ``after`` not in ``before``, in ``after``'s order."""
    known = set(before)
    return [key for key in after if key not in known]
