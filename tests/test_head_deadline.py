"""``PRESENCE_HEADER_TIMEOUT`` on one connection of ``serve``'s guard: one timer at a time, the same deadlines.

Each head (the request line and headers) must be in within the timeout of the
connection opening, or of the next request's first byte on a kept-alive
connection. The guard keeps one timer per connection, which waits again for
what is left of the head pending when it fires; these tests hold it to the
deadlines a timer per request gave.
"""

from __future__ import annotations

import asyncio

from aiohttp import web
from aiohttp.typedefs import Handler

from presence.http.serving import REQUEST_TIMEOUT_RESPONSE, ConnectionGuard, _Connection

TIMEOUT = 0.3


class _Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = b""
        self.closed = False
        self.aborted = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += bytes(data)

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def is_closing(self) -> bool:
        return self.closed or self.aborted


class _Handler(asyncio.Protocol):
    """aiohttp's request handler, as far as the guard sees it: bytes in, nothing out."""


def _connection() -> tuple[_Connection, _Transport]:
    guard = ConnectionGuard(cap=10, header_timeout=TIMEOUT)
    guard.serve(_Handler)
    connection = guard()
    assert isinstance(connection, _Connection)
    transport = _Transport()
    connection.connection_made(transport)
    return connection, transport


def _answered(connection: _Connection) -> None:
    """One whole request in, begun and answered, as aiohttp's handler goes through it."""
    connection.data_received(b"GET /healthz HTTP/1.1\r\n\r\n")
    connection.request_started()
    connection.request_finished()


async def test_a_kept_alive_connection_whose_heads_come_in_time_stays_open() -> None:
    connection, transport = _connection()
    loop = asyncio.get_running_loop()
    ends = loop.time() + 4 * TIMEOUT
    while loop.time() < ends:  # a request every tenth of the timeout, for four timeouts
        _answered(connection)
        await asyncio.sleep(TIMEOUT / 10)
    assert not transport.is_closing()
    await asyncio.sleep(2 * TIMEOUT)  # idle after an answer: aiohttp's keep-alive timeout's business
    assert not transport.is_closing()
    connection.connection_lost(None)


async def test_a_head_that_does_not_come_in_time_after_a_request_gets_a_408() -> None:
    connection, transport = _connection()
    _answered(connection)
    await asyncio.sleep(0.8 * TIMEOUT)
    connection.data_received(b"GET /heal")  # the next head, cut short
    # The timer set by the first request fires now: this head's own time is not up.
    await asyncio.sleep(0.5 * TIMEOUT)
    assert not transport.is_closing()
    await asyncio.sleep(0.7 * TIMEOUT)  # past this head's own deadline
    assert transport.closed
    assert transport.written == REQUEST_TIMEOUT_RESPONSE


async def test_a_connection_that_sends_nothing_is_aborted_at_the_deadline() -> None:
    _, transport = _connection()
    await asyncio.sleep(0.7 * TIMEOUT)
    assert not transport.is_closing()
    await asyncio.sleep(0.6 * TIMEOUT)
    assert transport.aborted
    assert transport.written == b""


async def test_a_request_in_progress_is_never_timed_out() -> None:
    connection, transport = _connection()
    connection.data_received(b"POST /hook HTTP/1.1\r\nContent-Length: 9\r\n\r\n")
    connection.request_started()  # its body is the body timeout's business
    await asyncio.sleep(2 * TIMEOUT)
    assert not transport.is_closing()
    connection.connection_lost(None)


async def test_a_late_head_after_a_quiet_spell_still_gets_its_408() -> None:
    """The timer found nothing pending and stopped: the next head's first byte sets it again."""
    connection, transport = _connection()
    _answered(connection)
    await asyncio.sleep(1.5 * TIMEOUT)  # the timer fired meanwhile, with no head pending
    connection.data_received(b"GET /heal")
    await asyncio.sleep(0.7 * TIMEOUT)
    assert not transport.is_closing()
    await asyncio.sleep(0.6 * TIMEOUT)
    assert transport.closed
    assert transport.written == REQUEST_TIMEOUT_RESPONSE


async def test_a_request_an_inner_middleware_answers_ends_its_heads_clock() -> None:
    """A ``401`` from the token middleware, on a kept-alive connection served as ``serve`` serves it:
    a header timeout later the connection is still open, with no ``408`` written on it."""

    @web.middleware
    async def refuse(request: web.Request, handler: Handler) -> web.StreamResponse:
        raise web.HTTPUnauthorized()

    async def never(request: web.Request) -> web.StreamResponse:
        raise AssertionError("refused before its handler")

    app = web.Application(middlewares=[refuse])
    app.router.add_get("/", never)
    guard = ConnectionGuard(cap=10, header_timeout=TIMEOUT)
    guard.install(app)
    runner = web.AppRunner(app)
    await runner.setup()
    guard.serve(runner.server)  # type: ignore[arg-type]
    server = await asyncio.get_running_loop().create_server(guard, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 401")
        length = int(
            next(line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")).split(b":")[1]
        )
        await reader.readexactly(length)
        await asyncio.sleep(3 * TIMEOUT)
        assert not reader.at_eof()
        assert reader._buffer == b"", "something was written on the idle connection"  # type: ignore[attr-defined]
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 401")
    finally:
        writer.close()
        server.close()
        await server.wait_closed()
        await runner.cleanup()
