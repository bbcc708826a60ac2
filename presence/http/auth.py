"""Who may call: Basic Auth for CometChat on ``/hook``, bearer tokens for the query API.

Every comparison is constant-time, and every configured token is compared, so
the time taken says nothing about which part of a credential was right.
"""

from __future__ import annotations

import base64
import binascii
import hmac

from aiohttp import web

from presence.http.errors import ApiError
from presence.settings import Settings

_BASIC_CHALLENGE = {"WWW-Authenticate": 'Basic realm="presence"'}
_BEARER_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="presence"'}


def require_hook_credentials(request: web.Request, settings: Settings) -> None:
    if not settings.hook_username or settings.hook_password is None:
        return  # serve --insecure without credentials: announced at start-up.
    supplied = _basic_credentials(request.headers.get("Authorization", ""))
    if supplied is None:
        raise ApiError(401, "unauthorized", "Basic credentials are required", _BASIC_CHALLENGE)
    username, password = supplied
    user_ok = hmac.compare_digest(username.encode(), settings.hook_username.encode())
    password_ok = hmac.compare_digest(password.encode(), settings.hook_password.reveal().encode())
    if not (user_ok & password_ok):
        raise ApiError(401, "unauthorized", "the Basic credentials are wrong", _BASIC_CHALLENGE)


def require_api_token(request: web.Request, settings: Settings) -> None:
    if not settings.api_tokens:
        return  # serve --insecure without tokens: announced at start-up.
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "unauthorized", "a bearer token is required", _BEARER_CHALLENGE)
    # A header's bytes that are not UTF-8 arrive as surrogate escapes: compare the bytes as sent.
    supplied = token.strip().encode("utf-8", "surrogateescape")
    matched = False
    for known in settings.api_tokens:
        matched |= hmac.compare_digest(supplied, known.reveal().encode())
    if not matched:
        raise ApiError(401, "unauthorized", "the bearer token is not valid", _BEARER_CHALLENGE)


def _basic_credentials(header: str) -> tuple[str, str] | None:
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded.strip():
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):  # ValueError: bytes that are not ASCII
        return None
    username, colon, password = decoded.partition(":")
    return (username, password) if colon else None
