"""What of a webhook body the inbox keeps: all of it but message content and the profiles of people.

The service never stores message text, attachments, entities or custom data (contract §2),
from any trigger, known or not, in either of CometChat's systems; yet the inbox must keep
what ``presence rebuild`` needs to derive every event again. The rule, applied at any depth:

- A message's content travels in its ``data`` object (``data.data`` in the legacy payloads,
  ``data.message.data`` in the current ones), so every ``data`` object nested inside the
  event's ``data`` is dropped. One exception, the only content the parser reads: the action
  message of a ``message_edited`` / ``message_deleted`` (``category`` ``action``) keeps
  ``data.message.data.action`` and ``data.message.data.entities.on.entity``, the target, itself
  scrubbed by the same rule (its own ``data``, ``text``, ... dropped); nothing else of it.
- Every key in :data:`CONTENT_KEYS` is dropped: message content, and what the current
  triggers add (mentioned users, reactions, a call's recording, a client's IP and user agent).
- The keys of :data:`TEXT_KEYS` are dropped when they hold a string: a moderation condition's
  ``message`` describing what it matched, a moderation ``reason`` or a report's ``remark``, a
  reaction's ``reaction`` (the emoji or text). Holding an object (``data.message``,
  ``data.reaction``) they are walked like any other.
- A user entity (an object with a ``uid``: a reaction's ``reactedBy``, the ``users`` and
  ``by`` of a block, a group's ``members``, a receipt's ``body.user``, ...) keeps no profile:
  the keys of :data:`PROFILE_KEYS` (``name``, ``avatar``, ...) go; the uid stays.
- Under a key of :data:`SUBTREE_KEYS`, more keys go: the profile of a call's or meeting's
  ``occupant`` / ``all_occupants`` (named, with no uid), and a moderation result's ``value``
  (the rule's patterns or words, which can be the very words of the message) under
  ``moderation``.
- An object keyed by uid (:data:`KEYED_BY_UID`: a membership event's ``data.members``) keeps
  every key, whatever the uid spells (``"text"``, ``"data"``); its values are scrubbed as above.

The envelope (``trigger``, ``appId``, ``region``, ``webhook``) and every id stay.
``tests/test_content.py`` states the promises: the parser reads the same event from what is
kept, and no marked content of any documented trigger reaches the database files.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Final

import msgspec

from presence.core.current import CHANGE_TRIGGERS

#: Keys that carry message content (or, in the current triggers, personal data) wherever they appear.
CONTENT_KEYS: Final = frozenset(
    {
        "text",
        "attachments",
        "attachment",
        "entities",
        "customData",
        "custom_data",
        "metadata",
        "mentions",
        "mentionedUsers",
        "reactions",
        "recording_url",
        # Not in any payload found: transcription_generated's is undocumented; kept out all the same.
        "recordingUrl",
        "transcript",
        "transcription",
        "transcription_url",
        "transcriptionUrl",
        "clientIp",
        "userAgent",
    }
)
#: Keys that hold text when their value is a string (and are walked when it is an object).
TEXT_KEYS: Final = frozenset({"message", "reason", "remark", "reaction"})
#: A person's profile: dropped from every user entity (an object with a ``uid``) and call occupant.
PROFILE_KEYS: Final = frozenset({"name", "avatar", "link", "email", "statusMessage"})
#: Keys under which, at any depth, more keys are dropped.
SUBTREE_KEYS: Final[dict[str, frozenset[str]]] = {
    "occupant": PROFILE_KEYS,
    "all_occupants": PROFILE_KEYS,
    "moderation": frozenset({"value"}),
}
#: Keys whose object is keyed by uid (a membership event's ``data.members``): its keys are never
#: taken for field names, only its values are scrubbed.
KEYED_BY_UID: Final = frozenset({"members"})
#: The actions whose target the parser reads from an action message's content.
_CHANGE_ACTIONS: Final = frozenset({"edited", "deleted"})
#: Deeper than any CometChat body; deeper ones are refused rather than walked.
MAX_DEPTH: Final = 32


_ACTED_ON: Final = CONTENT_KEYS | TEXT_KEYS | PROFILE_KEYS | SUBTREE_KEYS.keys()


def _alternation(words: list[bytes]) -> bytes:
    """A regular expression matching exactly ``words``, as a trie: ``a(?:vatar|ttachment(?:s)?)``.

    Tried at each position of a body, a flat alternation of thirty words tries each of them;
    the trie tries one branch per letter (eight times faster on a connection event).
    """
    by_first: dict[bytes, list[bytes]] = {}
    ends = False
    for word in words:
        if word:
            by_first.setdefault(word[:1], []).append(word[1:])
        else:
            ends = True
    branches = [re.escape(first) + _alternation(rest) for first, rest in sorted(by_first.items())]
    if not branches:
        return b""
    body = branches[0] if len(branches) == 1 and not ends else b"(?:" + b"|".join(branches) + b")"
    return body + (b"?" if ends else b"")


#: A key the scrub acts on, as JSON text (a ``\\u`` escape, which could spell one, is looked for apart).
_CONTENT_KEY: Final = re.compile(b'"' + _alternation([key.encode() for key in sorted(_ACTED_ON)]) + b'"')


class InboxRow(msgspec.Struct, frozen=True):
    """What the inbox keeps of one accepted webhook: when it arrived, its trigger, its body less content.

    A msgspec struct: made in C, once per webhook.
    """

    received_at: datetime
    trigger: str
    body: str


class TooDeep(ValueError):
    """A body nested deeper than :data:`MAX_DEPTH`."""


def without_content(body: dict[str, object]) -> dict[str, object]:
    """A copy of ``body`` with message content removed (the module's docstring gives the rule)."""
    scrubbed = _scrub(body, depth=1, inside_data=False, dropped=frozenset())
    assert isinstance(scrubbed, dict)
    target = _change_target(body)
    if target is not None:
        action, entity = target
        kept: dict[str, object] = {"action": action}
        if entity is not None:
            kept["entities"] = {"on": {"entity": _scrub(entity, depth=7, inside_data=True, dropped=frozenset())}}
        message = scrubbed["data"]
        assert isinstance(message, dict)
        message = message["message"]
        assert isinstance(message, dict)
        message["data"] = kept
    return scrubbed


def _change_target(body: dict[str, object]) -> tuple[str, dict[str, object] | None] | None:
    """For an edit or deletion in the action shape: its action and its target, as the parser reads them."""
    trigger, data = body.get("trigger"), body.get("data")
    if not isinstance(trigger, str) or trigger not in CHANGE_TRIGGERS or not isinstance(data, dict):
        return None
    message = data.get("message")
    if not isinstance(message, dict) or message.get("category") != "action":
        return None
    content = message.get("data")
    action = content.get("action") if isinstance(content, dict) else None
    if not isinstance(content, dict) or not isinstance(action, str) or action not in _CHANGE_ACTIONS:
        return None
    entities = content.get("entities")
    on = entities.get("on") if isinstance(entities, dict) else None
    entity = on.get("entity") if isinstance(on, dict) else None
    return action, entity if isinstance(entity, dict) else None


def cannot_hold_content(raw: bytes) -> bool:
    """Whether the JSON text ``raw`` is certainly left unchanged by :func:`without_content`, unwalked.

    True only when no ``\\u`` escape could spell a key, no key the scrub acts on appears as a
    string, ``"data"`` appears at most once (so no ``data`` sits inside another), and
    there are too few brackets to nest past :data:`MAX_DEPTH`. Most connection events
    pass; anything else is walked. ``tests/test_content.py`` checks the promise.
    """
    return (
        raw.count(b"{") + raw.count(b"[") < MAX_DEPTH
        and raw.count(b'"data"') <= 1
        and b"\\u" not in raw
        and _CONTENT_KEY.search(raw) is None
    )


def _scrub(value: object, *, depth: int, inside_data: bool, dropped: frozenset[str]) -> object:
    if depth > MAX_DEPTH:
        raise TooDeep(f"nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, dict):
        kept: dict[str, object] = {}
        person = "uid" in value
        for key, item in value.items():
            if key in KEYED_BY_UID and isinstance(item, dict):
                # Its keys are uids, not field names: a member named "text" or "data" stays.
                kept[key] = {
                    uid: _scrub(member, depth=depth + 2, inside_data=inside_data, dropped=dropped)
                    for uid, member in item.items()
                }
                continue
            if (
                key in CONTENT_KEYS
                or key in dropped
                or (person and key in PROFILE_KEYS)
                or (inside_data and key == "data")
                or (key in TEXT_KEYS and isinstance(item, str))
            ):
                continue
            kept[key] = _scrub(
                item,
                depth=depth + 1,
                inside_data=inside_data or key == "data",
                dropped=dropped | SUBTREE_KEYS.get(key, frozenset()),
            )
        return kept
    if isinstance(value, list):
        return [_scrub(item, depth=depth + 1, inside_data=inside_data, dropped=dropped) for item in value]
    return value
