"""From raw bytes to an accepted event: the one path ``/hook`` and ``presence import`` share.

Decoding, validation (the pure core's :func:`parse_event`) and removal of message
content happen here, with no I/O. What comes out is ready for the committer;
what does not is a :class:`Rejected` that says why, in the words of the API.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec
import orjson

from presence.core import reconcile, typed
from presence.core.events import DEFAULT_MAX_SKEW_MS, Event, InvalidEvent, MessageSent, UnknownTrigger
from presence.core.inbox import InboxRow, TooDeep, cannot_hold_content, without_content
from presence.core.parse import check_not_ahead, parse_event
from presence.core.times import datetime_to_ms


class Accepted(msgspec.Struct, frozen=True):
    """A parsed event and the inbox row that records it (a msgspec struct: made in C, once per webhook)."""

    event: Event
    inbox: InboxRow
    #: ``inbox.received_at`` in milliseconds, as the pure core takes it.
    received_at_ms: int


class Rejected(Exception):
    """Input that is refused with ``400`` and changes nothing."""

    def __init__(self, code: str, message: str, trigger: str | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        #: The body's trigger, when it had a readable one.
        self.trigger = trigger


def accept(raw: bytes, *, received_at: datetime, max_skew_ms: int = DEFAULT_MAX_SKEW_MS, own: bool = False) -> Accepted:
    """The event ``raw`` describes, with the inbox row that records it; or :class:`Rejected`.

    ``max_skew_ms``: how far ahead of ``received_at`` an event's own times may be. ``own``: the
    body is the service's own (a reconciliation pass's correction); from anyone else its trigger
    is refused, so that no sender can pass itself off as a pass.
    """
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise not_json(raw, error) from None
    if not isinstance(body, dict):
        raise Rejected("invalid_body", "the body must be a JSON object")
    trigger = body.get("trigger") if isinstance(body.get("trigger"), str) else None
    if trigger == reconcile.TRIGGER and not own:
        raise Rejected(
            "invalid_event",
            f"trigger: {reconcile.TRIGGER} is recorded by the service's own reconciliation passes; CometChat never"
            " sends it",
            trigger,
        )
    try:
        # The common legacy bodies in one typed step; every other body, and every refusal, the general way.
        common = typed.read(body, raw)
        if common is None:
            event = parse_event(body)
        else:
            event, kept = common
        received_at_ms = datetime_to_ms(received_at)
        check_not_ahead(event, received_at_ms=received_at_ms, max_skew_ms=max_skew_ms)
        if common is None:
            kept = body if cannot_hold_content(raw) else without_content(body)
    except InvalidEvent as error:
        raise Rejected("invalid_event", str(error), trigger) from None
    except TooDeep as error:
        raise Rejected("invalid_body", str(error), trigger) from None
    inbox = InboxRow(received_at=received_at, trigger=body["trigger"], body=orjson.dumps(kept).decode())
    return Accepted(event, inbox, received_at_ms)


def not_json(raw: bytes, error: orjson.JSONDecodeError) -> Rejected:
    """``invalid_json`` saying where the body breaks, so that the sender can find the place.

    orjson counts in characters; the byte offset is added for those who look at the raw bytes.
    Its position for bytes that are not UTF-8 is always the start, so that case is located here.
    """
    if not raw.strip(b" \t\r\n"):
        return Rejected("invalid_json", "the body is empty")
    try:
        text = raw.decode()
    except UnicodeDecodeError as bad:
        before = raw[: bad.start]
        line, line_start = before.count(b"\n") + 1, before.rfind(b"\n") + 1
        column = len(before[line_start:].decode()) + 1
        where = f"line {line}, column {column} (byte {bad.start})"
        return Rejected("invalid_json", f"the body is not valid UTF-8 at {where}")
    byte = len(text[: error.pos].encode(errors="surrogatepass"))
    where = f"line {error.lineno}, column {error.colno} (byte {byte})"
    return Rejected("invalid_json", f"the body is not valid JSON: {error.msg} at {where}")


def outcome(accepted: Accepted) -> Literal["accepted", "ignored"]:
    """``ignored`` for what the service keeps but does not act on, else ``accepted``."""
    event = accepted.event
    ignored = isinstance(event, UnknownTrigger) or (isinstance(event, MessageSent) and not event.tracked)
    return "ignored" if ignored else "accepted"
