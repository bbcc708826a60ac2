"""Reconciliation with CometChat's REST API (contract §10), pure: what a pass corrects, and how it says so.

A pass started at ``started_ms`` knows two things: the users CometChat lists online, and
what the service holds of each user it asks about (its stored status and the time of its
newest event). :func:`to_confirm` and :func:`to_mark_online` decide from them, with the grace
window: a user with an event newer than ``started_ms - grace_ms`` may have one more in flight,
and is never corrected.

A correction is an event like a webhook's: a body with the trigger ``presence_reconcile``
(:func:`body`), kept in the inbox and read back by :func:`read` through ``parse.parse_event``,
so that ``presence rebuild`` derives it again. CometChat never sends this trigger: ``/hook``
and ``presence import`` refuse it (``presence.intake.accept``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Set
from dataclasses import dataclass
from typing import Final

from presence.core.events import InvalidEvent, PresenceReconciled, ReconciledStatus
from presence.core.fields import Fields, optional_instant, required_instant, required_string

TRIGGER: Final = "presence_reconcile"
_STATUSES: Final[dict[str, ReconciledStatus]] = {"online": "online", "offline": "offline"}
#: The statuses CometChat's REST API gives an online user (``rest-api-users.md``).
ONLINE_STATUSES: Final = frozenset({"available", "online"})


@dataclass(frozen=True, slots=True)
class Known:
    """What the service holds of a user: its stored status and the time of its newest event."""

    status: str
    newest_ms: int


def body(uid: str, status: ReconciledStatus, at_ms: int, last_active_at_ms: int | None = None) -> dict[str, object]:
    """The inbox body of one correction."""
    data: dict[str, object] = {"uid": uid, "status": status, "at": at_ms}
    if last_active_at_ms is not None:
        data["lastActiveAt"] = last_active_at_ms
    return {"trigger": TRIGGER, "data": data}


def read(data: Fields) -> PresenceReconciled:
    """A ``presence_reconcile`` body's ``data``; times in milliseconds (or seconds, as everywhere)."""
    status = _STATUSES.get(required_string(data, "status", "data.status"))
    if status is None:
        raise InvalidEvent("data.status", "expected 'online' or 'offline'")
    at_ms = required_instant(data, "at", "data.at")
    last_active = optional_instant(data, "lastActiveAt", "data.lastActiveAt")
    return PresenceReconciled(
        uid=required_string(data, "uid", "data.uid"),
        status=status,
        at_ms=at_ms,
        # Never later than the pass: what is known at T cannot date anything after T.
        last_active_at_ms=None if last_active is None or status == "online" else min(last_active, at_ms),
    )


def settled(known: Known, *, started_ms: int, grace_ms: int) -> bool:
    """Whether the user's newest event is older than the grace window: nothing of it may be in flight."""
    return known.newest_ms < started_ms - grace_ms


def to_confirm(online: Iterable[tuple[str, Known]], listed: Set[str], *, started_ms: int, grace_ms: int) -> list[str]:
    """The users the service has online, settled, whom CometChat did not list: ask each alone.

    Paging by page number can skip a user when the list shifts, so absence from the listing is
    a reason to ask, never a reason to correct.
    """
    return [
        uid
        for uid, known in online
        if known.status == "online" and uid not in listed and settled(known, started_ms=started_ms, grace_ms=grace_ms)
    ]


def to_mark_online(listed: Iterable[str], known: Mapping[str, Known], *, started_ms: int, grace_ms: int) -> list[str]:
    """The users CometChat lists online whom the service has offline (or never saw), settled."""
    marked = []
    for uid in listed:
        found = known.get(uid)
        if found is None or (found.status != "online" and settled(found, started_ms=started_ms, grace_ms=grace_ms)):
            marked.append(uid)
    return marked
