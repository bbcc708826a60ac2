"""The README's screenshot of ``GET /dashboard``: a real server, realistic traffic, Debian's Chromium.

    .venv/bin/python bench/screenshot.py [--out docs/dashboard.png] [--phone docs/dashboard-phone.png]

Starts ``presence serve`` on a fresh SQLite database in a temporary folder, posts a few hundred
webhooks (users connecting and leaving on several platforms, messages, their receipts, some bodies
that are rejected), opens the page in headless Chromium, signs in with the token, keeps the traffic
going for ~20 s so that the events chart has a history, looks up a user and a message, and saves a
full-page screenshot (desktop width; ``--phone`` a phone-sized one too). The browser is the
machine's (``PRESENCE_TEST_CHROMIUM`` or ``chromium`` on the ``PATH``); nothing is downloaded.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import asyncio
import random
import tempfile
import time
from collections.abc import Sequence
from typing import Any

import aiohttp
from playwright.async_api import Page, async_playwright, expect

from bench.progress import log
from tests.support import payloads
from tests.support.api import API_TOKEN, HOOK_AUTH
from tests.support.browser import chromium_path
from tests.support.server import ServerProcess, presence_environment

PLATFORMS = ("web", "android", "ios", "ios", "android", "android", "web", "react-native")
USERS = 60
TRAFFIC_SECONDS = 20.0
SHOWN_UID = "cometchat-uid-4"
SHOWN_MESSAGE = 1057


def _uid(n: int) -> str:
    return SHOWN_UID if n == 4 else f"cometchat-uid-{n}"


class Traffic:
    """Webhooks as CometChat would post them for a small, busy app."""

    def __init__(self, http: aiohttp.ClientSession, url: str) -> None:
        self.http = http
        self.url = url
        self.random = random.Random(16)  # noqa: S311 - traffic, not secrets
        self.sessions: dict[str, tuple[str, str, int]] = {}  # uid → its live session
        self.message_id = 1000
        self.serial = 0

    async def post(self, body: Any) -> None:
        async with self.http.post(f"{self.url}/hook", json=body, headers={"Authorization": HOOK_AUTH}) as response:
            await response.read()

    def now_ms(self) -> int:
        return int(time.time() * 1000)

    async def connect(self, n: int) -> None:
        uid = _uid(n)
        self.serial += 1
        session_id, platform, at = f"s{n}-{self.serial}", self.random.choice(PLATFORMS), self.now_ms()
        device = payloads.device(session_id, connected_at=at, platform=platform)
        self.sessions[uid] = (session_id, platform, at)
        await self.post(payloads.connection(uid, "connected", at, device, connections=[device]))

    async def disconnect(self, n: int) -> None:
        uid = _uid(n)
        live = self.sessions.pop(uid, None)
        if live is None:
            return
        session_id, platform, connected_at = live
        device = payloads.device(session_id, connected_at=connected_at, platform=platform)
        await self.post(
            payloads.connection(uid, "disconnected", self.now_ms(), device, connections=[], status="offline")
        )

    async def chat(self, sender: int, reader: int, *, read: bool) -> None:
        self.message_id += 1
        a, b = _uid(sender), _uid(reader)
        conversation = "_user_".join(sorted((a, b)))
        at = self.now_ms()
        await self.post(payloads.message(self.message_id, conversation, a, receiver=b, sent_at=at // 1000))
        await self.post(payloads.receipt("delivered", self.message_id, reader=b, message_sender=a, at=at, receiver=a))
        if read:
            await self.post(payloads.receipt("read", self.message_id, reader=b, message_sender=a, at=at, receiver=a))

    async def seed(self) -> None:
        for n in range(1, USERS + 1):
            await self.connect(n)
        for n in range(1, USERS + 1, 3):
            await self.disconnect(n)
        await self.connect(4)  # the user looked up: a history of two sessions, one live
        self.message_id = SHOWN_MESSAGE - 1
        await self.chat(5, 4, read=True)
        for _ in range(40):
            await self.chat(
                self.random.randint(1, USERS), self.random.randint(1, USERS), read=self.random.random() < 0.6
            )

    async def run(self, seconds: float) -> None:
        """A few events a second, in waves, with a rejected body now and then."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            wave = 2 + int(4 * (1 + (time.monotonic() % 8) / 8))
            for _ in range(wave):
                n = self.random.randint(5, USERS)
                if self.random.random() < 0.5:
                    await (self.disconnect(n) if _uid(n) in self.sessions else self.connect(n))
                else:
                    await self.chat(n, self.random.randint(5, USERS), read=self.random.random() < 0.5)
            if self.random.random() < 0.2:
                await self.post({"trigger": "after_connection_status_changed", "data": {}})  # rejected
            await asyncio.sleep(0.25)


async def _show(page: Page, url: str) -> None:
    await page.goto(f"{url}/dashboard")
    field = page.get_by_label("API token")
    await field.fill(API_TOKEN)
    await field.press("Enter")
    await expect(page.locator("#live")).to_have_text("live")


async def _look_up(page: Page) -> None:
    await page.get_by_label("uid").fill(SHOWN_UID)
    await page.get_by_label("uid").press("Enter")
    await expect(page.locator("#user-sessions li").first).to_be_visible()
    await page.get_by_label("Message id").fill(str(SHOWN_MESSAGE))
    await page.get_by_label("Message id").press("Enter")
    await expect(page.locator("#message-receipts")).to_be_visible()


async def take(out: Path, phone: Path | None) -> None:
    browser_path = chromium_path()
    if browser_path is None:
        raise SystemExit("screenshot: Chromium is not installed (apt-get install chromium)")
    with tempfile.TemporaryDirectory(prefix="presence-screenshot-") as folder:
        workdir = Path(folder)
        environment = presence_environment(f"sqlite+aiosqlite:///{workdir / 'presence.db'}")
        with ServerProcess(environment, workdir, name="screenshot") as server:
            server.start()
            log(f"screenshot: serving at {server.url}")
            async with aiohttp.ClientSession() as http, async_playwright() as playwright:
                traffic = Traffic(http, server.url)
                await traffic.seed()
                browser = await playwright.chromium.launch(executable_path=browser_path)
                desktop = await browser.new_page(viewport={"width": 1280, "height": 900})
                await _show(desktop, server.url)
                log(f"screenshot: {TRAFFIC_SECONDS:.0f} s of traffic")
                await traffic.run(TRAFFIC_SECONDS)
                await _look_up(desktop)
                await traffic.run(1.0)  # the latest changes fresh on the page
                await desktop.wait_for_timeout(500)
                await desktop.screenshot(path=str(out), full_page=True)
                log(f"screenshot: {out}")
                if phone is not None:
                    small = await browser.new_page(viewport={"width": 390, "height": 844}, device_scale_factor=2)
                    await _show(small, server.url)
                    await traffic.run(5.0)
                    await _look_up(small)
                    await small.screenshot(path=str(phone), full_page=True)
                    log(f"screenshot: {phone}")
                await browser.close()
            server.terminate()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("docs/dashboard.png"))
    parser.add_argument("--phone", type=Path, default=None, help="also a phone-sized (390 px) screenshot here")
    args = parser.parse_args(argv)
    asyncio.run(take(args.out, args.phone))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
