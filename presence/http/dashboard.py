"""``GET /dashboard``: the operators' page and its files, shipped in the package (contract §12).

The page is static: it asks for an API token and reads the public query API with it, as any
caller does, so it never shows what the API would not. The page and its files need no token
(:data:`presence.http.auth.PUBLIC_ROUTES`); the data does. Every file is read once, when the app
is made, from the package ``presence.dashboard``; a missing one fails the start.

Each answer carries a Content-Security-Policy that allows scripts, styles, images and requests
from the service itself only (no inline script, no inline style, no form submission, no framing),
``X-Content-Type-Options: nosniff`` and ``Referrer-Policy: no-referrer``. The files are revalidated
at each load (``no-cache`` with a strong ``ETag``, answered ``304`` when it matches), so an upgraded
service never serves a new page with an old script.
"""

from __future__ import annotations

from typing import Final

from aiohttp import web

from presence.dashboard import Asset
from presence.http.errors import ApiError
from presence.http.keys import DASHBOARD

CONTENT_SECURITY_POLICY: Final = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",  # the forms are handled by the script; never submitted, so a token never lands in a URL
        "frame-ancestors 'none'",
    )
)
SECURITY_HEADERS: Final = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cache-Control": "no-cache",
}


async def get_dashboard(request: web.Request) -> web.Response:
    return _answer(request, request.app[DASHBOARD].page)


async def get_dashboard_asset(request: web.Request) -> web.Response:
    name = request.match_info["asset"]
    asset = request.app[DASHBOARD].assets.get(name)
    if asset is None:
        raise ApiError(404, "not_found", "the dashboard has no such file")
    return _answer(request, asset)


def _answer(request: web.Request, asset: Asset) -> web.Response:
    headers = {**SECURITY_HEADERS, "ETag": asset.etag}
    matches = _etags(request.headers.get("If-None-Match", ""))
    if asset.etag in matches or "*" in matches:
        return web.Response(status=304, headers=headers)
    charset = None if asset.content_type == "image/svg+xml" else "utf-8"
    return web.Response(body=asset.body, content_type=asset.content_type, charset=charset, headers=headers)


def _etags(header: str) -> set[str]:
    return {tag.strip().removeprefix("W/") for tag in header.split(",")}
