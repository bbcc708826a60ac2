"""Who may call: Basic Auth for CometChat on ``/hook``, bearer tokens for everything else but a few routes.

The bearer token is required once, by :func:`api_token_middleware`, on every
route that :data:`PUBLIC_ROUTES` does not name: a route added later is closed
until it is named there. Every comparison is constant-time, and every
configured token is compared, so the time taken says nothing about which part
of a credential was right.
"""

from __future__ import annotations

import hmac
from typing import Final

from aiohttp import BasicAuth, web
from aiohttp.typedefs import Handler

from presence.http.errors import ApiError
from presence.http.keys import SETTINGS
from presence.settings import Settings

#: Routes (by path template) that take no bearer token: probes, the document, the dashboard's page and
#: files (its data comes from the API, with a token), and the hook, which checks CometChat's Basic
#: credentials itself (:func:`require_hook_credentials`).
PUBLIC_ROUTES: Final = frozenset({"/healthz", "/readyz", "/openapi.json", "/hook", "/dashboard", "/dashboard/{asset}"})

_BASIC_CHALLENGE = {"WWW-Authenticate": 'Basic realm="presence"'}
_BEARER_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="presence"'}


@web.middleware
async def api_token_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A bearer token on every routed request but the public ones; unrouted ones get their 404 or 405."""
    route = request.match_info.route
    if route.resource is not None and route.resource.canonical not in PUBLIC_ROUTES:
        require_api_token(request, request.app[SETTINGS])
    return await handler(request)


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
    # RFC 7235 allows several spaces after the scheme; BasicAuth.decode takes exactly one.
    scheme, _, encoded = header.partition(" ")
    try:
        credentials = BasicAuth.decode(f"{scheme} {encoded.strip()}", encoding="utf-8")
    except ValueError:  # also a header that is not ASCII, or credentials that are not UTF-8
        return None
    return credentials.login, credentials.password
