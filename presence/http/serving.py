"""``presence serve``'s listening socket, kept within the process's open-file limit.

aiohttp's server reads a request's headers and body for as long as the client
cares to take, and accepts connections until ``accept()`` fails; at the
open-file limit asyncio then logs a traceback for every failed ``accept()``
(over a hundred each time the socket is ready), and every descriptor the
service needs for itself (a database connection, a file) fails with it. So:

- At start the soft ``RLIMIT_NOFILE`` is raised to the hard limit, and open
  connections are capped below it (``PRESENCE_MAX_CONNECTIONS``, by default
  the limit less :data:`RESERVED_DESCRIPTORS`, the database pool and the
  listen backlog, which asyncio accepts in one go before any cap can act). At the
  cap a new connection displaces the one that has waited longest without a
  request in progress (a connection that has not sent its headers, or an idle
  kept-alive one); when every connection has a request in progress, the new
  one is closed at once. Idle sockets therefore cannot lock real clients out.
- A request's line and headers must be in within ``PRESENCE_HEADER_TIMEOUT``
  of the connection opening, or of the first byte of the next request on a
  kept-alive connection; else the connection is closed (after a ``408`` if
  anything was sent). aiohttp 3.14 has no such timeout: its
  ``keepalive_timeout`` only closes a connection with no complete request
  within that time of its previous response, and nothing bounds the body.
  The body's deadline is ``/hook``'s (:mod:`presence.http.body`).
- Accept failures (``EMFILE`` and kin) are logged at most once per
  :data:`LOG_INTERVAL`, with a count, and so are connections shed at the cap.

The guard is a protocol that wraps each of aiohttp's request handlers: it sees
a connection open, its bytes arrive and it close, and a middleware tells it
when each request starts and ends.

What aiohttp refuses before any handler runs (a request line or a header over its
limits, bytes that are not HTTP) it answers itself, as plain text, and logs with a
traceback each time: :class:`_JsonErrorHandler` answers in the API's error shape
instead, and logs one line without a traceback. A socket that cannot be listened
on (a port in use, a host that is no address of this machine) is a
:class:`ListenError`, one line for the operator.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import signal
import ssl
from collections.abc import Callable
from http import HTTPStatus
from typing import Any, Final

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from presence.settings import Settings

log = logging.getLogger(__name__)

#: Descriptors kept back from connections for what the service opens itself (database files and
#: sockets beyond the pool, the migration's files, logs); the database pool is kept back on top.
RESERVED_DESCRIPTORS: Final = 64
#: Connections the kernel queues for accept(); asyncio accepts up to this many at a time, before
#: the guard sees any of them, so the cap keeps as many descriptors back again.
LISTEN_BACKLOG: Final = 128
#: Fewest connections the cap allows, however low the limit.
MIN_CONNECTIONS: Final = 8
#: Seconds between two log lines about the same trouble.
LOG_INTERVAL: Final = 10.0
#: What a connection that sent part of a request, then too little, is told before it is closed.
_TIMEOUT_BODY: Final = b'{"error": {"code": "request_timeout", "message": "the headers came too late"}}'
REQUEST_TIMEOUT_RESPONSE: Final = (
    b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Type: application/json\r\n"
    b"Content-Length: %d\r\n\r\n%s" % (len(_TIMEOUT_BODY), _TIMEOUT_BODY)
)
_ACCEPT_FAILED: Final = "socket.accept() out of system resource"
#: Codes of what aiohttp refuses before a handler runs, in the API's error shape.
_REFUSED_CODES: Final = {400: "bad_request", 413: "payload_too_large", 414: "uri_too_long", 431: "headers_too_large"}


class ListenError(Exception):
    """``serve`` cannot listen where it was told to; the message is one line naming the setting."""


def raise_open_file_limit() -> int:
    """Raise the soft ``RLIMIT_NOFILE`` to the hard limit (as far as the kernel allows); the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as error:
            log.warning("cannot raise the open-file limit from %d to %d: %s", soft, target, error)
        else:
            soft = target
    return soft


def connection_cap(settings: Settings, open_file_limit: int) -> int:
    """Most connections open at once: ``PRESENCE_MAX_CONNECTIONS``, never above what the limit leaves."""
    reserved = RESERVED_DESCRIPTORS + settings.db_pool_size + settings.db_max_overflow + LISTEN_BACKLOG
    room = max(open_file_limit - reserved, MIN_CONNECTIONS)
    if settings.max_connections is None:
        return room
    if settings.max_connections > room:
        log.warning(
            "PRESENCE_MAX_CONNECTIONS=%d leaves too few of the %d open files for the database: using %d",
            settings.max_connections,
            open_file_limit,
            room,
        )
        return room
    return settings.max_connections


class ThrottledLog:
    """One warning now, then at most one a window saying how many more there were."""

    def __init__(self, message: str, *, interval: float = LOG_INTERVAL) -> None:
        self._message = message
        self._interval = interval
        self._more = 0
        self._window: asyncio.TimerHandle | None = None

    def note(self, detail: object = None) -> None:
        if self._window is not None:
            self._more += 1
            return
        log.warning("%s%s", self._message, f": {detail}" if detail is not None else "")
        self._window = asyncio.get_running_loop().call_later(self._interval, self._close_window)

    def _close_window(self) -> None:
        if not self._more:
            self._window = None
            return
        log.warning("%s: %d more times in the last %g s", self._message, self._more, self._interval)
        self._more = 0
        self._window = asyncio.get_running_loop().call_later(self._interval, self._close_window)

    def close(self) -> None:
        if self._window is not None:
            self._window.cancel()
            self._window = None


class ConnectionGuard:
    """The protocol factory ``serve`` listens with: each connection is a :class:`_Connection` around aiohttp's."""

    def __init__(self, *, cap: int, header_timeout: float) -> None:
        self.cap = cap
        self.header_timeout = header_timeout
        self._handlers: Callable[[], asyncio.Protocol] | None = None
        #: Every open connection; and those without a request in progress, longest waiting first.
        self._open: set[_Connection] = set()
        self._idle: dict[_Connection, None] = {}
        self._by_handler: dict[asyncio.BaseProtocol, _Connection] = {}
        self._shed = ThrottledLog("connections closed at the cap on open connections")

    @property
    def open_connections(self) -> int:
        return len(self._open)

    def serve(self, handlers: Callable[[], asyncio.Protocol]) -> None:
        """Give each connection from now on one of ``handlers()`` (aiohttp's server)."""
        self._handlers = handlers

    def __call__(self) -> asyncio.Protocol:
        assert self._handlers is not None, "serve() first"
        return _Connection(self, self._handlers())

    def install(self, app: web.Application) -> None:
        """Put :meth:`middleware` around every other middleware of ``app``.

        Outermost, it hears of every request whose head came in, also of one that an inner
        middleware answers itself (a ``401``): inside them, such a request never ended its head's
        clock, and the connection, idle and kept alive, got a ``408`` a header timeout later.
        """
        app.middlewares.insert(0, self.middleware)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Tell each connection when a request is in progress: headers are in, and it must not be displaced."""
        connection = self._by_handler.get(request.protocol)
        if connection is None:  # not served through this guard (a test server)
            return await handler(request)
        connection.request_started()
        try:
            return await handler(request)
        finally:
            connection.request_finished()

    def close(self) -> None:
        self._shed.close()

    def _admit(self, connection: _Connection) -> bool:
        """Make room for ``connection`` (displacing the longest idle one), or refuse it."""
        if len(self._open) >= self.cap:
            displaced = next(iter(self._idle), None)
            self._shed.note(f"at most {self.cap} open")
            if displaced is None:
                return False
            displaced.abort()
            self._closed(displaced)  # now: its connection_lost comes later, after this burst of accepts
        self._open.add(connection)
        self._idle[connection] = None
        self._by_handler[connection.handler] = connection
        return True

    def _busy(self, connection: _Connection) -> None:
        self._idle.pop(connection, None)

    def _idle_again(self, connection: _Connection) -> None:
        if connection in self._open:
            self._idle[connection] = None

    def _closed(self, connection: _Connection) -> None:
        self._open.discard(connection)
        self._idle.pop(connection, None)
        self._by_handler.pop(connection.handler, None)


class _Connection(asyncio.Protocol):
    """One connection: aiohttp's handler inside, the head deadline and the cap around it.

    The head's deadline is one timer at a time, not one a request: a head's clock starts
    at the connection's opening and at each later request's first byte (:meth:`_start_head`,
    one reading of the loop's clock) and stops when the request starts. The timer, when
    it fires, closes the connection if the head pending then is late, else waits again for
    what is left of that head's time (none pending: the next head's first byte sets it
    again). Arming and cancelling a timer for each request cost about 1.5 µs of each (3% of
    a ``GET /users/{uid}/presence``, py-spy), and left every request's cancelled timer
    in the loop's heap for ``PRESENCE_HEADER_TIMEOUT``.
    """

    def __init__(self, guard: ConnectionGuard, handler: asyncio.Protocol) -> None:
        self.handler = handler
        self._guard = guard
        self._transport: asyncio.Transport | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._admitted = False
        self._in_request = False
        self._bytes_since_request = 0
        #: When the pending head's clock started (the loop's time); ``None``: no head is pending.
        self._head_since: float | None = None
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._loop = asyncio.get_running_loop()
        if not self._guard._admit(self):
            transport.abort()
            return
        self._admitted = True
        self._start_head()
        self.handler.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if not self._admitted:
            return
        if not self._in_request:
            if self._head_since is None:
                self._start_head()  # the first byte of the next request on a kept-alive connection
            self._bytes_since_request += len(data)
        self.handler.data_received(data)

    def eof_received(self) -> bool | None:
        return self.handler.eof_received() if self._admitted else None

    def connection_lost(self, exc: Exception | None) -> None:
        self._head_since = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._admitted:
            return
        self._guard._closed(self)
        self.handler.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._admitted:
            self.handler.pause_writing()

    def resume_writing(self) -> None:
        if self._admitted:
            self.handler.resume_writing()

    def request_started(self) -> None:
        self._in_request = True
        self._head_since = None
        self._guard._busy(self)

    def request_finished(self) -> None:
        self._in_request = False
        self._bytes_since_request = 0
        self._guard._idle_again(self)

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def _start_head(self) -> None:
        assert self._loop is not None
        self._head_since = now = self._loop.time()
        if self._timer is None:
            self._timer = self._loop.call_at(now + self._guard.header_timeout, self._check_head)

    def _check_head(self) -> None:
        """The timer: the pending head is late, or the timer waits for what is left of its time."""
        assert self._loop is not None
        self._timer = None
        if self._head_since is None:
            return
        due = self._head_since + self._guard.header_timeout
        if self._loop.time() < due:
            self._timer = self._loop.call_at(due, self._check_head)
            return
        self._head_since = None
        self._head_too_late()

    def _head_too_late(self) -> None:
        transport = self._transport
        if self._in_request or transport is None or transport.is_closing():
            return
        if self._bytes_since_request:
            transport.write(REQUEST_TIMEOUT_RESPONSE)
            transport.close()  # after the 408 is written; nothing else is
        else:
            transport.abort()


class _JsonErrorHandler(RequestHandler):
    """aiohttp's request handler, answering what it refuses itself in the API's error shape."""

    def handle_error(
        self, request: BaseRequest, status: int = 500, exc: BaseException | None = None, message: str | None = None
    ) -> web.StreamResponse:
        if status >= 500:  # a bug aiohttp caught (the error middleware answers everything else): as aiohttp does
            response = super().handle_error(request, status, exc, message)
            code, text = "internal_error", "internal error"
        else:
            # Anyone on the network can send these: a line each, never a traceback.
            log.info("refused a request before reading it (%d): %s", status, _one_line(exc or message))
            if request.writer.output_size > 0:
                raise ConnectionError("Response is sent already, cannot send another response with the error message")
            response = web.Response(status=status)
            response.force_close()
            code = _REFUSED_CODES.get(status, "bad_request")
            text = _one_line(exc or message) or HTTPStatus(status).phrase
        assert isinstance(response, web.Response)
        response.body = orjson.dumps({"error": {"code": code, "message": text}})
        response.content_type = "application/json"
        return response


def _one_line(detail: object) -> str:
    words = " ".join(str(getattr(detail, "message", detail)).split())
    return words[:200] + "…" if len(words) > 200 else words


class _GuardedSite(web.BaseSite):
    """A TCP site that listens with the guard, not with aiohttp's server directly."""

    def __init__(
        self, runner: web.AppRunner, guard: ConnectionGuard, host: str, port: int, ssl_context: ssl.SSLContext | None
    ) -> None:
        super().__init__(runner, ssl_context=ssl_context)
        self._guard = guard
        self._host = host
        self._port = port

    @property
    def name(self) -> str:
        scheme = "https" if self._ssl_context else "http"
        return f"{scheme}://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        loop = asyncio.get_running_loop()
        # What web.Server() makes, with our handle_error: aiohttp offers no hook for the handler's class.
        self._guard.serve(lambda: _JsonErrorHandler(server, loop=loop, **server._kwargs))
        try:
            self._server = await loop.create_server(
                self._guard, self._host, self._port, ssl=self._ssl_context, backlog=LISTEN_BACKLOG
            )
        except OSError as error:  # in use, not an address of this machine, not a name that resolves
            raise ListenError(
                f"cannot listen on {self._host} port {self._port} (--host/PRESENCE_HOST, --port/PRESENCE_PORT):"
                f" {error.strerror or error}"
            ) from None


def run(app: web.Application, settings: Settings, *, ssl_context: ssl.SSLContext | None) -> None:
    """Serve ``app`` until SIGTERM or SIGINT, then stop as ``web.run_app`` does (requests in progress finish)."""
    limit = raise_open_file_limit()
    guard = ConnectionGuard(cap=connection_cap(settings, limit), header_timeout=settings.header_timeout)
    guard.install(app)
    asyncio.run(_serve(app, settings, guard, ssl_context, limit))


async def _serve(
    app: web.Application,
    settings: Settings,
    guard: ConnectionGuard,
    ssl_context: ssl.SSLContext | None,
    open_file_limit: int,
) -> None:
    loop = asyncio.get_running_loop()
    accept_failures = ThrottledLog("cannot accept connections")

    def on_loop_error(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        # asyncio logs each failed accept() with a traceback, over a hundred a time on Python 3.11.
        if context.get("message") == _ACCEPT_FAILED:
            accept_failures.note(context.get("exception"))
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(on_loop_error)
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    runner = web.AppRunner(app, access_log=None, keepalive_timeout=settings.keepalive_timeout)
    await runner.setup()
    try:
        site = _GuardedSite(runner, guard, settings.host, settings.port, ssl_context)
        await site.start()
        log.info("Running on %s (at most %d connections, open-file limit %d)", site.name, guard.cap, open_file_limit)
        await stop.wait()
    finally:
        await runner.cleanup()
        guard.close()
        accept_failures.close()
