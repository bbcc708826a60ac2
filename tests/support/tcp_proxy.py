"""A TCP proxy the test owns, between the service and PostgreSQL, to make the database go away.

It listens on ``127.0.0.1:0`` and forwards every connection to the upstream
``host:port``, in the event loop of the test that opened it::

    async with TcpProxy("127.0.0.1", 5432) as proxy:
        url = proxy.url_for(database_url)  # the same database, through the proxy
        proxy.cut()      # every open connection is closed; new ones are accepted and closed at once
        proxy.cut_after_requests(3)  # the same, once clients have sent 3 more chunks to the upstream
        proxy.restore()  # new connections are forwarded again
        proxy.stall()    # a silent partition: bytes stop flowing both ways, nothing is closed
        proxy.restore()  # ... and flow again, as when a network heals

``drop_after_replies(n)`` lets new connections through but drops each of them
right after it has forwarded its ``n``-th chunk from the upstream: with ``n``
covering the handshake, the client has just been told that its connection is
ready when it is gone (what a database restart does to a connection opened a
moment before it).

``hold()`` and ``release()`` make a barrier: connections that arrive while the
proxy holds are accepted but not forwarded until ``release()``, so that several
processes meet the database at the same moment (``waiting`` counts them).
Everything the proxy opened is closed when its ``async with`` block ends.
"""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Self

from sqlalchemy.engine import make_url

#: Bytes read from one side before they are written to the other.
CHUNK = 64 * 1024


class _Link:
    """One client connection and its upstream connection."""

    def __init__(self, client: asyncio.StreamWriter, upstream: asyncio.StreamWriter, replies_left: int) -> None:
        self.client = client
        self.upstream = upstream
        self.aborted = False
        #: Chunks from the upstream this link forwards before it is dropped; 0: no limit.
        self.replies_left = replies_left

    def abort(self) -> None:
        """Drop both connections at once, pending bytes and all (a cut)."""
        self.aborted = True
        for writer in (self.client, self.upstream):
            writer.transport.abort()

    def close(self) -> None:
        """Close both connections once what is buffered has been sent (a normal end)."""
        for writer in (self.client, self.upstream):
            writer.close()


class TcpProxy:
    def __init__(self, upstream_host: str, upstream_port: int, *, host: str = "127.0.0.1") -> None:
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self.host = host
        self.port = 0
        #: Connections accepted and closed at once because the proxy was cut.
        self.refused = 0
        #: Connections forwarded to the upstream.
        self.forwarded = 0
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._refusing = False
        self._open = asyncio.Event()  # set: new connections go through; clear: they wait (hold)
        self._open.set()
        self._flowing = asyncio.Event()  # set: bytes flow; clear: they wait (stall)
        self._flowing.set()
        self._waiting = 0
        self._cut_countdown = 0
        self._replies_per_link = 0

    # -- control -------------------------------------------------------------------------------

    def cut(self) -> None:
        """Close every open connection; accept and close every new one until :meth:`restore`."""
        self._refusing = True
        self._cut_countdown = 0
        self._flowing.set()  # a stalled pipe must notice that its link is gone
        for link in list(self._links):
            link.abort()

    def cut_after_requests(self, count: int = 1) -> None:
        """Cut right after clients have sent ``count`` more chunks to the upstream: the last one's answer is lost.

        That chunk may be a statement or a ``COMMIT``: the database may have done what the client
        will never hear about, as when PostgreSQL goes away in the middle of a transaction.
        """
        if count < 1:
            raise ValueError("count must be at least 1")
        self._cut_countdown = count

    def drop_after_replies(self, count: int) -> None:
        """Until :meth:`restore`, drop each new connection once it has forwarded ``count`` chunks from the upstream."""
        if count < 1:
            raise ValueError("count must be at least 1")
        self._replies_per_link = count

    @property
    def is_cut(self) -> bool:
        return self._refusing

    def stall(self) -> None:
        """Stop forwarding bytes both ways without closing anything: a silent network partition."""
        self._flowing.clear()

    def restore(self) -> None:
        """Forward again: new connections after a cut, and the held-up bytes after a stall."""
        self._refusing = False
        self._cut_countdown = 0
        self._replies_per_link = 0
        self._flowing.set()

    def hold(self) -> None:
        """Accept new connections but forward none of them until :meth:`release`."""
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    @property
    def waiting(self) -> int:
        """Connections accepted while held and not yet released."""
        return self._waiting

    @property
    def open_connections(self) -> int:
        return len(self._links)

    def url_for(self, database_url: str) -> str:
        """``database_url`` with its host and port replaced by this proxy's."""
        if self._server is None:
            raise RuntimeError("the proxy is not listening yet")
        return make_url(database_url).set(host=self.host, port=self.port).render_as_string(hide_password=False)

    # -- lifetime ------------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._accept, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        self._open.set()
        self._flowing.set()
        for link in list(self._links):
            link.abort()
        # Every handler now ends by itself: the gate is open, the bytes flow, the links are aborted.
        # (Cancelling them instead would make asyncio log their CancelledError.)
        if self._tasks:
            _, stuck = await asyncio.wait(list(self._tasks), timeout=5)
            for task in stuck:
                task.cancel()
        if server is not None:
            await server.wait_closed()

    # -- forwarding ----------------------------------------------------------------------------

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._serve(client_reader, client_writer)
        except Exception:  # a proxy never lets one connection's trouble escape
            client_writer.transport.abort()
        finally:
            self._tasks.discard(task)

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        if not self._open.is_set():
            self._waiting += 1
            try:
                await self._open.wait()
            finally:
                self._waiting -= 1
        if self._refusing or self._server is None:
            self.refused += 1
            client_writer.transport.abort()
            return
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(self.upstream_host, self.upstream_port)
        except OSError:
            client_writer.transport.abort()
            return
        link = _Link(client_writer, upstream_writer, self._replies_per_link)
        if self._refusing or self._server is None:  # cut or closed while the upstream connection was opening
            link.abort()
            return
        self.forwarded += 1
        self._links.add(link)
        try:
            await asyncio.gather(
                self._pipe(client_reader, upstream_writer, link, to_upstream=True),
                self._pipe(upstream_reader, client_writer, link, to_upstream=False),
            )
        finally:
            self._links.discard(link)
            link.close()

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, link: _Link, *, to_upstream: bool
    ) -> None:
        try:
            while True:
                data = await reader.read(CHUNK)
                await self._flowing.wait()
                if link.aborted:
                    return
                if not data:
                    # This side ended: end the other, whose answer (its own end) ends the other pipe.
                    writer.close()
                    return
                writer.write(data)
                await writer.drain()
                if to_upstream and self._cut_countdown > 0:
                    self._cut_countdown -= 1
                    if self._cut_countdown == 0:
                        self.cut()
                if not to_upstream and link.replies_left > 0:
                    link.replies_left -= 1
                    if link.replies_left == 0:
                        link.abort()
                        return
        except OSError:  # ConnectionResetError and friends: one side went away, so the link is over
            link.abort()
