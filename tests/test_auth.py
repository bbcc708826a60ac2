"""§2, §5: who may call. Credentials are asked for by the router's whole table, not route by route.

The walk below takes its routes from ``create_app``'s router, so a route added
later is checked without anyone listing it; the only routes open to anyone are
the ones named here.
"""

from __future__ import annotations

import asyncio
import base64
import re

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from presence.http.app import create_app
from presence.http.auth import PUBLIC_ROUTES
from presence.settings import Settings
from tests.support.api import API_AUTH, HOOK_PASSWORD, HOOK_USERNAME

#: Open to anyone: the probes and the document. ``/hook`` asks for CometChat's Basic credentials.
#: The dashboard's page and files hold no data: what they show is read from the API, with a token.
OPEN_ROUTES = {"/healthz", "/readyz", "/openapi.json", "/dashboard", "/dashboard/{asset}"}


def _concrete(template: str) -> str:
    return re.sub(r"\{[^}]+\}", "x", template)


def _routes(app: web.Application) -> list[tuple[str, str]]:
    return sorted(
        {(route.method, route.resource.canonical) for route in app.router.routes() if route.resource is not None}
    )


async def test_every_route_but_the_open_ones_answers_401_without_credentials(settings: Settings) -> None:
    app = create_app(settings)
    routes = _routes(app)
    assert {path for _, path in routes} >= OPEN_ROUTES | {"/users", "/stats", "/metrics", "/hook"}
    # The app stops (its engine disposed) before the test's database is dropped.
    async with TestClient(TestServer(app)) as client:
        for method, template in routes:
            response = await client.request(method, _concrete(template))
            if template in OPEN_ROUTES:
                assert response.status != 401, f"{method} {template} is open to anyone"
            else:
                assert response.status == 401, f"{method} {template} answered {response.status} without credentials"
                assert "WWW-Authenticate" in response.headers


def test_only_the_open_routes_and_the_hook_skip_the_bearer_token() -> None:
    """A route leaves the bearer token behind only by being named here, on purpose."""
    assert OPEN_ROUTES | {"/hook"} == PUBLIC_ROUTES


async def test_a_route_added_later_needs_the_bearer_token(settings: Settings) -> None:
    async def added_later(_request: web.Request) -> web.Response:
        return web.Response(text="secret")

    app = create_app(settings)
    app.router.add_get("/added-later", added_later)
    async with TestClient(TestServer(app)) as client:
        denied = await client.get("/added-later")
        assert denied.status == 401
        assert denied.headers["WWW-Authenticate"] == 'Bearer realm="presence"'
        allowed = await client.get("/added-later", headers={"Authorization": API_AUTH})
        assert allowed.status == 200
        assert await allowed.text() == "secret"


async def _raw_authorization(client: TestClient, authorization: bytes) -> bytes:  # type: ignore[type-arg]
    """POST /hook with an ``Authorization`` header of any bytes; the status line that comes back."""
    server = client.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        writer.write(
            b"POST /hook HTTP/1.1\r\nHost: presence\r\nConnection: close\r\nContent-Length: 2\r\n"
            b"Authorization: " + authorization + b"\r\n\r\n{}"
        )
        await writer.drain()
        return (await reader.readline()).rstrip()
    finally:
        writer.close()
        await writer.wait_closed()


@pytest.mark.parametrize(
    "authorization",
    [
        pytest.param("Basic é".encode(), id="not base64, not ASCII"),
        pytest.param(b"Basic \xff\xfe", id="bytes that are not UTF-8"),
        pytest.param(b"Basic " + base64.b64encode(f"{HOOK_USERNAME}:{HOOK_PASSWORD}".encode("utf-16")), id="UTF-16"),
        pytest.param(b"Basic " + base64.b64encode(b"\xff:\xff"), id="credentials not UTF-8"),
    ],
)
async def test_basic_credentials_that_cannot_be_read_are_401_never_500(
    client: TestClient,  # type: ignore[type-arg]
    authorization: bytes,
) -> None:
    assert await _raw_authorization(client, authorization) == b"HTTP/1.1 401 Unauthorized"


async def test_several_spaces_after_basic_are_allowed(client: TestClient) -> None:  # type: ignore[type-arg]
    """RFC 7235 puts one or more spaces between the scheme and the credentials."""
    encoded = base64.b64encode(f"{HOOK_USERNAME}:{HOOK_PASSWORD}".encode())
    assert await _raw_authorization(client, b"Basic   " + encoded) == b"HTTP/1.1 400 Bad Request"  # {} has no trigger
