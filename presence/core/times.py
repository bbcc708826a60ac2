"""Instants: parsing CometChat's timestamps and formatting ours.

CometChat sends connection times in milliseconds and receipt times in seconds,
as numbers or numeric strings. Inside the service an instant is an ``int`` of
milliseconds since the epoch; the database stores it as a timestamp and the API
prints it as ISO 8601 UTC with milliseconds.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from typing import overload

#: A value above this is milliseconds, at or below it seconds (contract §2).
MILLISECONDS_ABOVE = 10**11
#: 9999-12-31T23:59:59.999Z: the last instant a timestamp column can hold.
MAX_MS = 253_402_300_799_999

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NUMERIC = re.compile(r"\d{1,20}(\.\d{1,9})?", re.ASCII)


class InvalidInstant(ValueError):
    """A value that is not a timestamp CometChat could have sent."""


def parse_instant(value: object) -> int:
    """Milliseconds since the epoch from a number or a numeric string, either unit."""
    number: float
    if isinstance(value, bool):
        raise InvalidInstant("expected a timestamp, got a boolean")
    if isinstance(value, int):
        number = value
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidInstant("expected a finite timestamp")
        number = value
    elif isinstance(value, str):
        text = value.strip()
        if not _NUMERIC.fullmatch(text):
            raise InvalidInstant("expected a numeric timestamp")
        number = float(text) if "." in text else int(text)
    else:
        raise InvalidInstant("expected a timestamp as a number or a numeric string")
    if number < 0:
        raise InvalidInstant("a timestamp cannot be negative")
    ms = round(number) if number > MILLISECONDS_ABOVE else round(number * 1000)
    if ms > MAX_MS:
        raise InvalidInstant("timestamp is beyond the year 9999")
    return int(ms)


def ms_to_datetime(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)


def datetime_to_ms(moment: datetime) -> int:
    delta = moment.astimezone(UTC) - _EPOCH
    return delta.days * 86_400_000 + delta.seconds * 1000 + delta.microseconds // 1000


@overload
def format_instant(moment: datetime) -> str: ...
@overload
def format_instant(moment: datetime | None) -> str | None: ...
def format_instant(moment: datetime | None) -> str | None:
    """``2026-11-21T10:15:30.123Z``; ``None`` stays ``None``."""
    if moment is None:
        return None
    # "2026-11-21T10:15:30.123+00:00" without its offset; about twice as fast as strftime.
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")[:-6] + "Z"
