"""The dashboard under load: 100,000 users online, a few hundred changes a second, the page still responsive.

    .venv/bin/python bench/dashboard.py [--users 100000] [--rate 400] [--duration 30]

Starts ``presence serve`` on a fresh SQLite database, posts one connection event for each of
``--users`` users (each then online with one live session; through HTTP, as fast as it goes),
opens ``GET /dashboard`` in headless Chromium (the machine's) and signs in. Then it posts
``--rate`` connection events a second for ``--duration`` seconds (each a presence change of
another user) and, every 5 s, one of a marker user, timing how long until the page has drawn it.
In the page, a 100 ms timer records how late it fires (the main thread's lag) and a
``PerformanceObserver`` the long tasks (> 50 ms).

Prints a markdown report to stdout: the rate of changes reached, the lag (p50, p99, max), the
long tasks, the markers' latency, the page's rows and its JavaScript heap before and after, and
``GET /stats``'s latency at that many users. See docs/performance.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Sequence
from typing import Any

import aiohttp
from playwright.async_api import Page, async_playwright, expect

from bench.databases import SqliteDatabase
from bench.progress import log
from bench.servers import server_environment
from tests.support import payloads
from tests.support.api import API_AUTH, API_TOKEN, HOOK_AUTH
from tests.support.browser import chromium_path
from tests.support.server import ServerProcess

MARKER_EVERY = 5.0
WORKERS = 32
#: Seeding posts as fast as this (more than one client core and one server core reach).
SEED_RATE = 20_000.0

_PROBE = """() => {
  window.__probe = { lags: [], longTasks: [], renders: [] };
  new MutationObserver(() => {
    const newest = document.querySelector("#changes li");
    if (newest) window.__probe.renders.push([Date.now(), Number(newest.dataset.seq)]);
  }).observe(document.getElementById("changes"), { childList: true });
  new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) window.__probe.longTasks.push(entry.duration);
  }).observe({ type: "longtask" });
  let last = performance.now();
  setInterval(() => {
    const now = performance.now();
    window.__probe.lags.push(Math.max(0, now - last - 100));
    last = now;
  }, 100);
}"""


def _percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0


async def _flood(
    http: aiohttp.ClientSession, url: str, users: int, rate: float, duration: float, *, first: int = 1
) -> int:
    """``rate`` connection events a second, each of another user; returns how many were acknowledged.

    The events are numbered from ``first``; user ``n % users`` gets event ``n``, a new live session.
    """
    started = time.monotonic()
    total = first + int(rate * duration)
    next_number = first
    acknowledged = 0

    async def worker() -> None:
        nonlocal next_number, acknowledged
        while next_number < total:
            number = next_number
            next_number += 1
            due = started + (number - first) / rate
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            uid = f"user-{number % users:07d}"
            at = int(time.time() * 1000)
            session = payloads.device(f"s{number}", connected_at=at, platform=("web", "ios", "android")[number % 3])
            body = payloads.connection(uid, "connected", at, session, connections=[session])
            async with http.post(f"{url}/hook", json=body, headers={"Authorization": HOOK_AUTH}) as response:
                await response.read()
                acknowledged += response.status == 200

    await asyncio.gather(*(worker() for _ in range(WORKERS)))
    return acknowledged


async def _markers(http: aiohttp.ClientSession, url: str, page: Page, duration: float) -> list[float]:
    """Every :data:`MARKER_EVERY` s, a marker user's event, and how long until the page has drawn it.

    At a few hundred changes a second a row stays among the 50 shown for less than a render's
    interval, so a marker's row may never be on screen: the page's observer (:data:`_PROBE`) notes
    the newest ``seq`` of each render instead, and the marker is drawn by the first render that
    reached its ``seq`` (read from ``GET /changes?uid=``).
    """
    posted: list[tuple[str, float]] = []
    deadline = time.monotonic() + duration - 1.0
    while time.monotonic() + MARKER_EVERY < deadline:
        await asyncio.sleep(MARKER_EVERY)
        uid = f"marker-{len(posted) + 1}"
        at = int(time.time() * 1000)
        session = payloads.device(uid, connected_at=at)
        body = payloads.connection(uid, "connected", at, session, connections=[session])
        started = time.time()
        async with http.post(f"{url}/hook", json=body, headers={"Authorization": HOOK_AUTH}) as response:
            await response.read()
        posted.append((uid, started))
    await asyncio.sleep(2.0)  # the last marker's render
    renders: list[list[float]] = await page.evaluate("window.__probe.renders")
    latencies = []
    for uid, started in posted:
        async with http.get(f"{url}/changes?uid={uid}", headers={"Authorization": API_AUTH}) as response:
            seq = (await response.json())["changes"][0]["seq"]
        drawn = next((at_ms / 1000 for at_ms, newest in renders if newest >= seq), None)
        if drawn is None:
            raise AssertionError(f"{uid} (seq {seq}) was never drawn")
        latencies.append(drawn - started)  # the page's clock is this machine's
    return latencies


async def _stats_latency(http: aiohttp.ClientSession, url: str, count: int = 20) -> list[float]:
    seconds = []
    for _ in range(count):
        started = time.monotonic()
        async with http.get(f"{url}/stats", headers={"Authorization": API_AUTH}) as response:
            await response.read()
        seconds.append(time.monotonic() - started)
    return seconds


async def _changes_total(http: aiohttp.ClientSession, url: str) -> float:
    async with http.get(f"{url}/metrics", headers={"Authorization": API_AUTH}) as response:
        text = await response.text()
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith("presence_changes_total{"))


async def measure(users: int, rate: float, duration: float) -> list[str]:
    browser_path = chromium_path()
    if browser_path is None:
        raise SystemExit("dashboard bench: Chromium is not installed (apt-get install chromium)")
    with tempfile.TemporaryDirectory(prefix="presence-dashboard-") as folder:
        workdir = Path(folder)
        database = SqliteDatabase(workdir / "presence.db")
        with ServerProcess(server_environment(database.url), workdir, name="dashboard") as server:
            server.start(timeout=120)
            async with aiohttp.ClientSession() as http, async_playwright() as playwright:
                started = time.monotonic()
                seeded = await _flood(http, server.url, users, SEED_RATE, users / SEED_RATE, first=0)
                log(f"seeded {seeded:,} users through /hook in {time.monotonic() - started:.1f} s")
                stats = await _stats_latency(http, server.url)
                browser = await playwright.chromium.launch(executable_path=browser_path)
                page = await browser.new_page(viewport={"width": 1280, "height": 900})
                await page.goto(f"{server.url}/dashboard")
                await page.get_by_label("API token").fill(API_TOKEN)
                await page.get_by_label("API token").press("Enter")
                await expect(page.locator("#live")).to_have_text("live")
                await page.wait_for_timeout(3000)  # the first samples of /metrics, the chart drawn
                await page.evaluate(_PROBE)
                heap_before: int = await page.evaluate("performance.memory.usedJSHeapSize")
                changes_before = await _changes_total(http, server.url)
                log(f"posting {rate:.0f} events/s for {duration:.0f} s")
                flood_started = time.monotonic()
                acknowledged, markers = await asyncio.gather(
                    _flood(http, server.url, users, rate, duration), _markers(http, server.url, page, duration)
                )
                elapsed = time.monotonic() - flood_started
                changes = await _changes_total(http, server.url) - changes_before
                probe: dict[str, Any] = await page.evaluate("window.__probe")
                rows: int = await page.locator("#changes li").count()
                heap_after: int = await page.evaluate("performance.memory.usedJSHeapSize")
                shown_online = await page.locator("#users-online").text_content()
                await browser.close()
            server.terminate()
    lags = [float(v) for v in probe["lags"]]
    long_tasks = [float(v) for v in probe["longTasks"]]
    return [
        f"{users:,} users online, {rate:.0f} connection events/s posted for {duration:.0f} s",
        "",
        "| Measure | Value |",
        "| --- | --- |",
        f"| Changes recorded, per second | {changes / elapsed:.0f} ({acknowledged:,} events acknowledged) |",
        f"| Main-thread lag of a 100 ms timer, p50 / p99 / max | {_percentile(lags, 0.5):.1f} / "
        f"{_percentile(lags, 0.99):.1f} / {max(lags, default=0):.1f} ms ({len(lags)} ticks) |",
        f"| Long tasks (> 50 ms) | {len(long_tasks)}, longest {max(long_tasks, default=0):.0f} ms |",
        f"| A marker's event to its row on the page, median / max | {statistics.median(markers):.2f} / "
        f"{max(markers):.2f} s ({len(markers)} markers) |",
        f"| Rows in the latest changes | {rows} |",
        f"| JavaScript heap before / after | {heap_before / 1e6:.1f} / {heap_after / 1e6:.1f} MB |",
        f"| Users online shown at the end | {shown_online} |",
        f"| `GET /stats` at {users:,} users, median / max | {statistics.median(stats) * 1000:.0f} / "
        f"{max(stats) * 1000:.0f} ms |",
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--rate", type=float, default=400.0)
    parser.add_argument("--duration", type=float, default=30.0)
    args = parser.parse_args(argv)
    print("\n".join(asyncio.run(measure(args.users, args.rate, args.duration))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
