"""``GET /dashboard`` (contract §12): its files over HTTP, then the page itself in headless Chromium.

The browser tests run the app as a real server on a port of 127.0.0.1 (``aiohttp``'s test server,
in the test's event loop) and drive Debian's Chromium with Playwright's async API. One browser per
module (and per xdist worker): each test gets a fresh context, so no token or storage leaks between
tests. Every page is watched for console errors, which is how a Content-Security-Policy violation
shows: the service's own headers are in force, since the page comes from the service.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient
from playwright.async_api import Browser, expect

from presence.dashboard import ASSETS
from presence.http.dashboard import CONTENT_SECURITY_POLICY
from presence.settings import Settings
from tests.support import payloads
from tests.support.api import API_TOKEN, Api, serving
from tests.support.browser import FAILED_REQUEST, WatchedPage, chromium
from tests.support.databases import Databases

#: The whole module shares one event loop, so that it can share one browser.
pytestmark = pytest.mark.asyncio(loop_scope="module")

AT = 1_795_256_130_000
#: Contract §12 (the issue's test): a change appears, and the counts move, within 2 s.
WITHIN_2_S = 2000


def _connected(uid: str, session_id: str, at: int, platform: str) -> dict[str, Any]:
    session = payloads.device(session_id, connected_at=at, platform=platform)
    return payloads.connection(uid, "connected", at, session, connections=[session])


def _disconnected(uid: str, session_id: str, at: int, platform: str) -> dict[str, Any]:
    session = payloads.device(session_id, connected_at=at - 60_000, platform=platform)
    return payloads.connection(uid, "disconnected", at, session, connections=[], status="offline")


# --- the module's fixtures: the conftest's, in the module's event loop ----------------------------


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as browser:
        yield browser


@pytest_asyncio.fixture(loop_scope="module")
async def database_url(databases: Databases) -> AsyncIterator[str]:
    url = await databases.fresh()
    yield url
    await databases.drop(url)


@pytest_asyncio.fixture(loop_scope="module")
async def client(settings: Settings) -> AsyncIterator[TestClient]:  # type: ignore[type-arg]
    async with serving(settings) as client:
        yield client


@pytest_asyncio.fixture(loop_scope="module")
async def page(browser: Browser, client: TestClient) -> AsyncIterator[WatchedPage]:  # type: ignore[type-arg]
    """A fresh tab on the service, desktop-sized (1280 by 900)."""
    context = await browser.new_context(base_url=str(client.make_url("")), viewport={"width": 1280, "height": 900})
    try:
        yield WatchedPage(await context.new_page())
    finally:
        await context.close()


# --- over HTTP: the files, their headers, no token --------------------------------------------------


async def test_the_page_and_its_files_need_no_token_and_carry_the_security_headers(api: Api) -> None:
    for path, media_type in [("/dashboard", "text/html"), *((f"/dashboard/{n}", t) for n, t in ASSETS.items())]:
        response = await api.get(path, authorization=None)
        assert response.status == 200, path
        assert response.content_type == media_type, path
        assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == "no-referrer"
        assert response.headers["Cache-Control"] == "no-cache"
        assert await response.read()
    assert "'unsafe-inline'" not in CONTENT_SECURITY_POLICY
    assert "script-src 'self'" in CONTENT_SECURITY_POLICY
    # The data is not public: what the page reads needs the token.
    assert (await api.get("/stats", authorization=None)).status == 401


async def test_a_file_is_revalidated_by_its_etag_and_an_unknown_one_is_not_found(api: Api) -> None:
    first = await api.get("/dashboard/app.js", authorization=None)
    etag = first.headers["ETag"]
    again = await api.client.get("/dashboard/app.js", headers={"If-None-Match": etag})
    assert again.status == 304
    assert await again.read() == b""
    assert again.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    changed = await api.client.get("/dashboard/app.js", headers={"If-None-Match": '"other"'})
    assert changed.status == 200
    missing = await api.get("/dashboard/secrets.txt", authorization=None)
    assert missing.status == 404
    assert (await missing.json())["error"]["code"] == "not_found"
    # Only the listed files: no path leads out of the folder.
    assert (await api.get("/dashboard/..%2F__init__.py", authorization=None)).status == 404


async def test_the_page_has_no_inline_script_style_or_handler(api: Api) -> None:
    """What the CSP would block, checked on the source too, so that a violation is caught without a browser."""
    html = await (await api.get("/dashboard", authorization=None)).text()
    assert re.search(r"<script(?![^>]*\bsrc=)", html) is None, "an inline <script>"
    assert "<style" not in html
    assert re.search(r"\sstyle=", html) is None
    assert re.search(r"\son[a-z]+=", html) is None, "an inline event handler"


# --- in the browser ------------------------------------------------------------------------------------


async def test_the_page_asks_for_a_token_then_shows_what_stats_answers(api: Api, page: WatchedPage) -> None:
    await api.hook(_connected("alice", "a-web", AT, "web"))
    await api.hook(_connected("bob", "b-ios", AT + 1, "ios"))
    await api.hook(_connected("carol", "c-android", AT + 2, "android"))
    await api.hook(_disconnected("carol", "c-android", AT + 3, "android"))
    await page.open()
    tab = page.page
    await expect(tab.get_by_label("API token")).to_be_focused()  # typing goes to the prompt at once
    await expect(tab.locator("#board")).to_be_hidden()
    await page.sign_in()
    stats = await api.get_json("/stats")
    assert stats["users_online"] == 2  # the seeding did what the test means
    await expect(tab.locator("#users-online")).to_have_text(str(stats["users_online"]))
    await expect(tab.locator("#connections")).to_have_text(str(stats["connections"]))
    rows = tab.locator("#platforms tbody tr")
    await expect(rows).to_have_count(len(stats["connections_by_platform"]))
    for platform, count in stats["connections_by_platform"].items():
        await expect(tab.locator(f'#platforms tr[data-platform="{platform}"] td.count')).to_have_text(str(count))
    # The token is kept for this tab only, and never put in a URL.
    assert await tab.evaluate("sessionStorage.getItem('presence.token')") == API_TOKEN
    assert await tab.evaluate("localStorage.length") == 0
    assert API_TOKEN not in tab.url
    await tab.reload()
    await expect(tab.locator("#board")).to_be_visible()
    await expect(tab.locator("#users-online")).to_have_text(str(stats["users_online"]))
    other_tab = WatchedPage(await tab.context.new_page())
    await other_tab.open()
    await expect(other_tab.page.get_by_label("API token")).to_be_visible()
    assert page.unexpected_errors() == []
    assert other_tab.unexpected_errors() == []


async def test_a_connection_posted_meanwhile_appears_in_the_changes_and_moves_the_counts_within_2_s(
    api: Api, page: WatchedPage
) -> None:
    await api.hook(_connected("alice", "a-web", AT, "web"))
    await page.open_signed_in()
    tab = page.page
    await expect(tab.locator("#users-online")).to_have_text("1")
    posted = time.monotonic()
    await api.hook(_connected("cometchat-uid-9", "s9-ios", AT + 10, "ios"))
    change = tab.locator("#changes li", has_text="cometchat-uid-9")
    await expect(change).to_be_visible(timeout=WITHIN_2_S)
    await expect(change).to_contain_text("online")
    await expect(tab.locator("#users-online")).to_have_text("2", timeout=WITHIN_2_S)
    await expect(tab.locator("#connections")).to_have_text("2", timeout=WITHIN_2_S)
    await expect(tab.locator('#platforms tr[data-platform="ios"] td.count')).to_have_text("1", timeout=WITHIN_2_S)
    assert time.monotonic() - posted < 2.5  # the three waits above, together, stayed near the bound
    # The events-per-second chart names the trigger and outcome counted, and the rate moved off zero.
    await expect(tab.locator("#events-chart")).to_contain_text("after_connection_status_changed · accepted")
    await tab.wait_for_function("Number(document.getElementById('events-rate').textContent) > 0")
    await expect(tab.locator("#changes-rate")).not_to_have_text("0.0")
    # Paused (from the keyboard), the list stays as it is while the stream goes on; resumed, it catches up.
    await tab.locator("#pause").focus()
    await tab.keyboard.press("Enter")
    await expect(tab.locator("#pause")).to_have_attribute("aria-pressed", "true")
    await api.hook(_connected("cometchat-uid-10", "s10-web", AT + 20, "web"))
    await expect(tab.locator("#users-online")).to_have_text("3")  # the stream brought its change
    await expect(tab.locator("#changes li", has_text="cometchat-uid-10")).to_have_count(0)
    await tab.keyboard.press("Enter")
    await expect(tab.locator("#changes li", has_text="cometchat-uid-10")).to_be_visible()
    assert page.unexpected_errors() == []


async def test_a_uid_lookup_shows_presence_and_sessions_and_a_message_its_receipts(api: Api, page: WatchedPage) -> None:
    await api.hook(_connected("cometchat-uid-4", "s-old", AT, "web"))
    await api.hook(_disconnected("cometchat-uid-4", "s-old", AT + 60_000, "web"))
    await api.hook(_connected("cometchat-uid-4", "s-new", AT + 120_000, "android"))
    conversation = "cometchat-uid-4_user_cometchat-uid-5"
    await api.hook(payloads.message(57, conversation, "cometchat-uid-5", receiver="cometchat-uid-4"))
    await api.hook(
        payloads.receipt(
            "read", 57, reader="cometchat-uid-4", message_sender="cometchat-uid-5", at=AT, receiver="cometchat-uid-5"
        )
    )
    await page.open_signed_in()
    tab = page.page
    uid = tab.get_by_label("uid")
    await uid.fill("cometchat-uid-4")
    await uid.press("Enter")
    await expect(tab.locator("#user-status")).to_have_text("online")
    await expect(tab.locator("#user-status-source")).to_have_text("a webhook")
    await expect(tab.locator("#user-connections tbody tr")).to_have_count(1)
    await expect(tab.locator("#user-connections")).to_contain_text("s-new")
    sessions = tab.locator("#user-sessions li")
    await expect(sessions).to_have_count(2)
    await expect(tab.locator('#user-sessions li[data-session="s-new"]')).to_contain_text("live")
    await expect(sessions.nth(0)).to_have_attribute("data-session", "s-new")  # the newest first
    await expect(sessions.nth(1)).to_have_attribute("data-session", "s-old")
    await expect(sessions.nth(1)).to_contain_text("1 min 0 s")
    await uid.fill("nobody")
    await uid.press("Enter")
    await expect(tab.locator("#user-result")).to_contain_text("Unknown user")

    message = tab.get_by_label("Message id")
    await message.fill("57")
    await message.press("Enter")
    reader = tab.locator('#message-receipts tr[data-reader="cometchat-uid-4"]')
    await expect(reader).to_be_visible()
    await expect(tab.locator("#message-facts")).to_contain_text("cometchat-uid-5")  # the sender
    await expect(tab.locator("#message-facts")).to_contain_text("1 reader")
    # On a phone-sized screen every result still fits its width: nothing scrolls sideways.
    await tab.set_viewport_size({"width": 390, "height": 844})
    await expect(reader).to_be_visible()
    assert await tab.evaluate("document.documentElement.scrollWidth") <= 390
    assert page.unexpected_errors(allowed=[FAILED_REQUEST]) == []  # the unknown uid's 404s


async def test_a_wrong_token_shows_the_error_and_keeps_nothing(page: WatchedPage) -> None:
    await page.open()
    await page.sign_in("not-the-token")
    tab = page.page
    await expect(tab.locator("#login-error")).to_contain_text("refused")
    await expect(tab.locator("#board")).to_be_hidden()
    assert await tab.evaluate("sessionStorage.length") == 0
    await page.sign_in()  # then the right one works
    await expect(tab.locator("#board")).to_be_visible()
    assert page.unexpected_errors(allowed=[FAILED_REQUEST]) == []  # the 401 only


async def test_an_empty_database_and_an_unreachable_service_each_show_a_message(page: WatchedPage) -> None:
    await page.open_signed_in()
    tab = page.page
    notice = tab.locator("#notice")
    await expect(notice).to_contain_text("The database is empty")
    await expect(tab.locator("#changes-empty")).to_be_visible()
    # The network fails the way a stopped service does: every new request is refused.
    await tab.context.route(re.compile(r"/metrics$"), lambda route: route.abort("connectionrefused"))
    await expect(notice).to_contain_text("cannot be reached")
    await tab.context.unroute_all()
    await expect(notice).not_to_contain_text("cannot be reached")
    assert page.unexpected_errors(allowed=[FAILED_REQUEST]) == []
