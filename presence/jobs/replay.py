"""Inbox rows back into facts: what ``presence rebuild`` replays and retention folds into the checkpoint.

Each row is read as intake read it when it arrived: parsed by the pure core, its times
judged against the arrival the inbox recorded (not the clock), and joined with that
arrival as its reception time. A row the core cannot read (a body from before a fix that
now refuses it) is counted, not applied.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Protocol

import orjson

from presence.core.events import InvalidEvent
from presence.core.facts import Changes
from presence.core.parse import check_not_ahead, parse_event
from presence.core.times import datetime_to_ms
from presence.settings import Settings


class InboxRecord(Protocol):
    """What replay needs of an ``inbox_event`` row."""

    @property
    def received_at(self) -> datetime: ...

    @property
    def body(self) -> str: ...


def facts_of_inbox(rows: Iterable[InboxRecord], settings: Settings) -> tuple[Changes, int]:
    """The joined facts of ``rows``, and how many of them could not be read."""
    changes = Changes()
    unreadable = 0
    skew = settings.max_clock_skew_ms
    for row in rows:
        received_at_ms = datetime_to_ms(row.received_at)
        try:
            event = parse_event(orjson.loads(row.body))
            check_not_ahead(event, received_at_ms=received_at_ms, max_skew_ms=skew)
        except (orjson.JSONDecodeError, InvalidEvent):
            unreadable += 1
            continue
        changes.add(event, received_at_ms)
    return changes, unreadable
