"""Opaque pagination cursors: signed, and bound to the query that made them.

A cursor is the position after the last item of a page, with the query's
filters, as JSON, plus an HMAC. A cursor that was altered, made up, or taken
from another query is a ``400``, never a wrong page. The key is derived from
the API tokens, so every replica accepts every other replica's cursors;
rotating the tokens invalidates outstanding cursors, which callers restart.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

import orjson

from presence.settings import Settings

_TAG_BYTES = 16


class InvalidCursor(ValueError):
    """Not a cursor this service made for this query."""


def cursor_key(settings: Settings) -> bytes:
    material = b"\x00".join(sorted(token.reveal().encode() for token in settings.api_tokens))
    return hashlib.sha256(b"presence-cursor\x00" + material).digest()


def encode_cursor(key: bytes, scope: Mapping[str, Any], position: list[Any]) -> str:
    payload = orjson.dumps({"scope": dict(scope), "after": position}, option=orjson.OPT_SORT_KEYS)
    tag = hmac.new(key, payload, hashlib.sha256).digest()[:_TAG_BYTES]
    return base64.urlsafe_b64encode(tag + payload).decode().rstrip("=")


def decode_cursor(key: bytes, scope: Mapping[str, Any], token: str) -> list[Any]:
    """The position a cursor holds, if it was made by this service for this very query."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        raise InvalidCursor("not a cursor") from None
    tag, payload = raw[:_TAG_BYTES], raw[_TAG_BYTES:]
    if not hmac.compare_digest(tag, hmac.new(key, payload, hashlib.sha256).digest()[:_TAG_BYTES]):
        raise InvalidCursor("not a cursor this service made")
    content = orjson.loads(payload)
    if content.get("scope") != dict(scope):
        raise InvalidCursor("this cursor belongs to another query")
    position = content.get("after")
    if not isinstance(position, list):
        raise InvalidCursor("not a cursor")
    return position
