"""Headless Chromium for the dashboard's tests: Debian's ``chromium``, driven by Playwright, never downloaded.

The browser is the machine's (``PRESENCE_TEST_CHROMIUM``, else ``chromium`` on the ``PATH``); where
there is none the tests skip with that reason, unless ``PRESENCE_TEST_REQUIRE_BROWSER=1`` (CI) makes
its absence a failure. A browser that is there but fails to start is always a failure.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import AsyncIterator, Iterable

import pytest
from playwright.async_api import Browser, ConsoleMessage, Page, async_playwright, expect

from tests.support.api import API_TOKEN

CHROMIUM_VARIABLE = "PRESENCE_TEST_CHROMIUM"
REQUIRE_BROWSER_VARIABLE = "PRESENCE_TEST_REQUIRE_BROWSER"
#: What a browser logs by itself for a request that failed or was answered 4xx: expected in the tests
#: of a wrong token and of an unreachable service, an error anywhere else.
FAILED_REQUEST = re.compile(r"^Failed to load resource: ")


def chromium_path() -> str | None:
    return os.environ.get(CHROMIUM_VARIABLE) or shutil.which("chromium") or shutil.which("chromium-browser")


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    path = chromium_path()
    if path is None:
        message = f"Chromium is not installed (apt-get install chromium, or set {CHROMIUM_VARIABLE})"
        if os.environ.get(REQUIRE_BROWSER_VARIABLE) == "1":
            pytest.fail(f"{message}; {REQUIRE_BROWSER_VARIABLE}=1, so this is a failure")
        pytest.skip(message)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=path, headless=True)
        try:
            yield browser
        finally:
            await browser.close()


class WatchedPage:
    """A page, and every error its console printed or its scripts threw (a CSP violation is one)."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.errors: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.errors.append(f"uncaught: {error}"))

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(message.text)

    def unexpected_errors(self, *, allowed: Iterable[re.Pattern[str]] = ()) -> list[str]:
        patterns = tuple(allowed)
        return [error for error in self.errors if not any(p.search(error) for p in patterns)]

    async def open(self) -> None:
        """Open the page and wait for the token prompt, or for the board if the tab kept a token."""
        response = await self.page.goto("/dashboard")
        assert response is not None
        assert response.status == 200

    async def sign_in(self, token: str = API_TOKEN) -> None:
        """Type the token in the prompt and submit it with Enter, as a keyboard user does."""
        field = self.page.get_by_label("API token")
        await expect(field).to_be_visible()
        await field.fill(token)
        await field.press("Enter")

    async def open_signed_in(self) -> None:
        await self.open()
        await self.sign_in()
        await expect(self.page.locator("#board")).to_be_visible()
        await expect(self.page.locator("#live")).to_have_text("live")  # the stream is open
