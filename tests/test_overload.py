"""Limits under load: a real ``presence serve`` against idle, slow and abandoned clients, on 127.0.0.1 only.

Each test runs the server in a process of its own, with bounded counts of
sockets and requests and a bounded time, and measures the process from the
outside (``/proc/<pid>``): its open descriptors, its peak memory, its stderr.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import orjson

from tests.support import payloads
from tests.support.api import HOOK_AUTH
from tests.support.server import PRESENCE_MODULE, ServerProcess, presence_environment

#: The open-file limit the server runs under (soft and hard): far below what the sockets below need.
DESCRIPTOR_LIMIT = 256
IDLE_SOCKETS = 200
SLOWLORIS_SOCKETS = 150
HEADER_TIMEOUT = 1.0
BODY_TIMEOUT = 2.0
#: How soon an answer must come while the server is under siege.
PROMPTLY = 2.0
#: Lines of stderr the whole test may cause (start-up, and a throttled warning every 10 s).
MOST_STDERR_LINES = 20
TIMEOUT = aiohttp.ClientTimeout(total=PROMPTLY)

#: Peak memory the server may reach while 900 KB bodies pile up behind a held write lock.
MOST_RSS_BYTES = 400 * 1024 * 1024
WAITING_BYTES = 16 * 1024 * 1024
BIG_BODIES = 600
BIG_BODY_CONCURRENCY = 100


def limited(limit: int) -> tuple[str, ...]:
    """``presence`` under an open-file limit (soft and hard); ``prlimit`` execs it, so the pid stays the server's."""
    return ("prlimit", f"--nofile={limit}:{limit}", "--", *PRESENCE_MODULE)


def a_connection(uid: str) -> bytes:
    session = payloads.device("s-1", connected_at=1_763_720_000_000)
    return orjson.dumps(payloads.connection(uid, "connected", 1_763_720_000_000, session, connections=[session]))


async def post_hook(url: str, body: bytes) -> int:
    headers = {"Authorization": HOOK_AUTH, "Content-Type": "application/json"}
    async with (
        aiohttp.ClientSession(timeout=TIMEOUT) as session,
        session.post(f"{url}/hook", data=body, headers=headers) as response,
    ):
        return response.status


async def _post_hook_or_timeout(url: str, body: bytes) -> int | None:
    """The status, or ``None`` when a machine busy with other work made the answer late: try again."""
    try:
        return await post_hook(url, body)
    except TimeoutError:
        return None


async def get_healthz(url: str) -> int:
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session, session.get(f"{url}/healthz") as response:
        return response.status


def open_descriptors(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


def peak_rss(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmHWM:\s+(\d+) kB$", status, re.MULTILINE)
    assert match is not None, status
    return int(match[1]) * 1024


def is_closed_by_peer(sock: socket.socket) -> bool:
    """Whether the server closed ``sock`` (end of stream, a reset, or a 408 then the end)."""
    try:
        data = sock.recv(4096)
    except BlockingIOError:
        return False
    except OSError:  # reset
        return True
    if not data:
        return True
    assert data.startswith(b"HTTP/1.1 408"), data
    return True


@contextlib.contextmanager
def sockets(count: int, port: int, first_bytes: bytes) -> Iterator[list[socket.socket]]:
    opened: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            if first_bytes:
                sock.sendall(first_bytes)
            sock.setblocking(False)
            opened.append(sock)
        yield opened
    finally:
        for sock in opened:
            sock.close()


async def test_idle_and_slow_sockets_beyond_the_descriptor_limit_do_not_lock_out_clients(tmp_path: Path) -> None:
    environment = presence_environment(
        f"sqlite+aiosqlite:///{tmp_path / 'siege.db'}",
        extra={"PRESENCE_HEADER_TIMEOUT": str(HEADER_TIMEOUT), "PRESENCE_BODY_TIMEOUT": str(BODY_TIMEOUT)},
    )
    slow_body_head = (
        f"POST /hook HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {HOOK_AUTH}\r\n"
        "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
    ).encode()
    with ServerProcess(environment, tmp_path, program=limited(DESCRIPTOR_LIMIT)) as server:
        server.start()
        with (
            sockets(IDLE_SOCKETS, server.port, b"") as idle,
            sockets(SLOWLORIS_SOCKETS, server.port, b"POST /hook HTTP/1.1\r\nHost: 127.0.0.1\r\n") as slowloris,
        ):
            assert len(idle) + len(slowloris) > DESCRIPTOR_LIMIT
            started = time.monotonic()
            assert await get_healthz(server.url) == 200
            assert await post_hook(server.url, a_connection("besieged")) == 200
            assert time.monotonic() - started < PROMPTLY
            assert open_descriptors(server.pid) < DESCRIPTOR_LIMIT

            await asyncio.sleep(HEADER_TIMEOUT + 1.0)
            assert all(is_closed_by_peer(sock) for sock in idle + slowloris)

            with sockets(1, server.port, slow_body_head) as (slow_body,):
                await asyncio.sleep(HEADER_TIMEOUT + 0.5)  # past the header timeout: its headers were in
                assert not is_closed_by_peer(slow_body)
                await asyncio.sleep(BODY_TIMEOUT)
                slow_body.setblocking(True)
                slow_body.settimeout(5)
                answer = slow_body.recv(4096)
                assert answer.startswith(b"HTTP/1.1 408"), answer
                assert b'"request_timeout"' in answer

            assert await get_healthz(server.url) == 200
        stderr = server.stderr()
    lines = stderr.splitlines()
    assert len(lines) <= MOST_STDERR_LINES, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]


async def post_and_hang_up(port: int, body: bytes) -> None:
    """Send a whole ``/hook`` request, then close without reading the answer, as a client that gave up."""
    head = (
        f"POST /hook HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {HOOK_AUTH}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    _reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head)
        writer.write(body)
        await writer.drain()
    except ConnectionError:
        pass  # answered 503 and closed before the whole body was read: what a client may see
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def test_big_bodies_behind_a_held_write_lock_stay_within_memory(tmp_path: Path) -> None:
    """``presence rebuild`` holds SQLite's write lock; 900 KB bodies whose clients hang up must not pile up."""
    database = tmp_path / "locked.db"
    # A budget of 16 MiB (a quarter of the default) keeps what must be committed after the lock small,
    # so the measure is of the bound, not of how the machine's other work slows the recovery.
    environment = presence_environment(
        f"sqlite+aiosqlite:///{database}", extra={"PRESENCE_INTAKE_QUEUE_BYTES": str(WAITING_BYTES)}
    )
    # A trigger the service does not act on is kept whole, so each inbox row is as large as its body.
    big = orjson.dumps({"trigger": "some_future_trigger", "data": {"padding": "x" * 900_000}})
    with ServerProcess(environment, tmp_path) as server:
        server.start()
        lock = sqlite3.connect(database, isolation_level=None)
        try:
            lock.execute("BEGIN IMMEDIATE")
            gate = asyncio.Semaphore(BIG_BODY_CONCURRENCY)

            async def one() -> None:
                async with gate:
                    await post_and_hang_up(server.port, big)

            async with asyncio.timeout(60):
                await asyncio.gather(*(one() for _ in range(BIG_BODIES)))
                await asyncio.sleep(1.0)  # what was read is parsed and queued by now
            peak = peak_rss(server.pid)
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        print(f"peak RSS {peak / 2**20:.0f} MiB after {BIG_BODIES} bodies of {len(big)} bytes")
        assert peak < MOST_RSS_BYTES, f"peak RSS {peak / 2**20:.0f} MiB"

        deadline = time.monotonic() + 30  # commits of the queue fail on the lock, then the hook recovers
        while (status := await _post_hook_or_timeout(server.url, a_connection("after-the-lock"))) != 200:
            assert status in (503, None)
            assert time.monotonic() < deadline, "the hook did not recover once the lock was released"
            await asyncio.sleep(0.2)
