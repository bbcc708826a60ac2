"""Reading one field of a webhook body: present, of the right type, within the limits we store.

Every reader takes the field's full path (``data.body.messageId``) for the error it raises,
so a refusal names exactly what to fix, in either format.
"""

from __future__ import annotations

from collections.abc import Mapping

from presence.core.events import (
    MAX_CONVERSATION_LENGTH,
    MAX_ID_LENGTH,
    InvalidEvent,
    is_storable_id,
    parse_message_id,
)
from presence.core.times import InvalidInstant, parse_instant

Fields = Mapping[str, object]


def required_object(parent: Fields, key: str, where: str) -> Fields:
    value = parent.get(key)
    if not isinstance(value, Mapping):
        raise InvalidEvent(where, "required, expected an object")
    return value


def optional_object(parent: Fields, key: str, where: str) -> Fields | None:
    value = parent.get(key)
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise InvalidEvent(where, "expected an object")
    return value


def required_string(parent: Fields, key: str, where: str, max_length: int = MAX_ID_LENGTH) -> str:
    value = parent.get(key)
    if value is None:
        raise InvalidEvent(where, "required")
    return _checked_string(value, where, max_length)


def optional_string(parent: Fields, key: str, where: str) -> str | None:
    value = parent.get(key)
    return None if value is None else _checked_string(value, where, MAX_ID_LENGTH)


def _checked_string(value: object, where: str, max_length: int) -> str:
    if not isinstance(value, str):
        raise InvalidEvent(where, "expected a string")
    if not is_storable_id(value, max_length):
        problem = "must not be empty" if not value else f"longer than {max_length} characters"
        raise InvalidEvent(where, problem if "\x00" not in value else "must not contain NUL characters")
    return value


def required_instant(parent: Fields, key: str, where: str) -> int:
    value = parent.get(key)
    if value is None:
        raise InvalidEvent(where, "required")
    try:
        return parse_instant(value)
    except InvalidInstant as error:
        raise InvalidEvent(where, str(error)) from None


def optional_instant(parent: Fields, key: str, where: str) -> int | None:
    return None if parent.get(key) is None else required_instant(parent, key, where)


def optional_boolean(parent: Fields, key: str, where: str) -> bool | None:
    value = parent.get(key)
    if value is None:
        return None
    if not isinstance(value, bool):
        raise InvalidEvent(where, "expected true or false")
    return value


def optional_count(parent: Fields, key: str, where: str) -> int | None:
    value = parent.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 2**31 - 1:
        raise InvalidEvent(where, "expected a count (a non-negative integer)")
    return value


def message_id(parent: Fields, key: str, where: str) -> int:
    value = parent.get(key)
    if value is None:
        raise InvalidEvent(where, "required")
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise InvalidEvent(where, "expected a message id as a string of digits")
    parsed = parse_message_id(str(value))
    if parsed is None:
        raise InvalidEvent(where, "expected a message id as a string of digits (a 64-bit integer)")
    return parsed


def conversation_id(parent: Fields, key: str, where: str) -> str:
    return required_string(parent, key, where, MAX_CONVERSATION_LENGTH)


def checked_conversation(conversation: str, *, culprit: str) -> str:
    """A derived conversation id, refused (naming ``culprit``) if it could not be stored."""
    if len(conversation) > MAX_CONVERSATION_LENGTH:
        # Every derived id is held to the column it is stored in, here, the same for every backend.
        raise InvalidEvent(culprit, f"makes a conversation id longer than {MAX_CONVERSATION_LENGTH} characters")
    return conversation
