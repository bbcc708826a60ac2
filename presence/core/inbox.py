"""What of a webhook body the inbox keeps: all of it but message content.

The service never stores message text, attachments, entities or custom data
(contract §2). A message's content travels in its ``data`` object (``data.data``
in CometChat's payloads), so every ``data`` object nested inside the event's
``data`` is dropped, and so is every key that names content, at any depth, in
any trigger, known or not. What is left is enough to rebuild all state.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Final

#: Keys that carry message content wherever they appear.
CONTENT_KEYS: Final = frozenset(
    {"text", "attachments", "attachment", "entities", "customData", "custom_data", "metadata"}
)
#: Deeper than any CometChat body; deeper ones are refused rather than walked.
MAX_DEPTH: Final = 32


#: A ``\u`` escape (which could spell a key) or a content key, as JSON text.
_ESCAPE_OR_CONTENT_KEY: Final = re.compile(
    rb"\\u|" + b"|".join(re.escape(f'"{key}"'.encode()) for key in sorted(CONTENT_KEYS))
)


@dataclass(frozen=True, slots=True)
class InboxRow:
    """What the inbox keeps of one accepted webhook: when it arrived, its trigger, its body less content."""

    received_at: datetime
    trigger: str
    body: str


class TooDeep(ValueError):
    """A body nested deeper than :data:`MAX_DEPTH`."""


def without_content(body: dict[str, object]) -> dict[str, object]:
    """A copy of ``body`` with message content removed."""
    scrubbed = _scrub(body, depth=1, inside_data=False)
    assert isinstance(scrubbed, dict)
    return scrubbed


def cannot_hold_content(raw: bytes) -> bool:
    """Whether the JSON text ``raw`` is certainly left unchanged by :func:`without_content`, unwalked.

    True only when no ``\\u`` escape could spell a key, no content key appears as a
    string, ``"data"`` appears at most once (so no ``data`` sits inside another), and
    there are too few brackets to nest past :data:`MAX_DEPTH`. Most connection events
    pass; anything else is walked. ``tests/test_content.py`` checks the promise.
    """
    return (
        raw.count(b"{") + raw.count(b"[") < MAX_DEPTH
        and raw.count(b'"data"') <= 1
        and _ESCAPE_OR_CONTENT_KEY.search(raw) is None
    )


def _scrub(value: object, *, depth: int, inside_data: bool) -> object:
    if depth > MAX_DEPTH:
        raise TooDeep(f"nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, dict):
        kept: dict[str, object] = {}
        for key, item in value.items():
            if key in CONTENT_KEYS or (inside_data and key == "data"):
                continue
            kept[key] = _scrub(item, depth=depth + 1, inside_data=inside_data or key == "data")
        return kept
    if isinstance(value, list):
        return [_scrub(item, depth=depth + 1, inside_data=inside_data) for item in value]
    return value
