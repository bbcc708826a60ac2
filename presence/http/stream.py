"""``GET /changes/stream``: the changes as Server-Sent Events, resumable, on any replica (contract §9).

Each change is an event ``id: <seq>``, ``event: <type>``, ``data: <the change as JSON>``; a comment
line (``: ping``) goes out every ``PRESENCE_STREAM_HEARTBEAT`` seconds. ``Last-Event-ID`` (or
``after=``, which it overrides, as a browser's ``EventSource`` reconnects to the same URL) resumes
after that ``seq``; without either, the stream starts with the changes committed after it opened.

The stream subscribes to the process's :class:`~presence.live.hub.ChangeHub` first, then reads its
backlog from the table (``changes_after`` pages, up to the last committed change, which is at or above
where the hub's fan-out starts), then writes what the hub hands it, skipping what the backlog already
wrote: no change is missed and none repeated. An error before the first byte is an ordinary JSON
answer (``410 cursor_expired``, ``400``, ``503``); after it, the stream just ends, and the client
resumes with ``Last-Event-ID``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Final

from aiohttp import web
from aiohttp_sse import EventSourceResponse
from sqlalchemy.ext.asyncio import AsyncEngine

from presence.db.changes import ChangeFilter, CursorExpired, LiveChange, latest_seq, tail_after
from presence.db.failures import classify, describe
from presence.http.api import change_filter, seq_value
from presence.http.errors import ApiError
from presence.http.keys import ENGINE, HUB, METRICS, SETTINGS
from presence.live.hub import StreamClosed, Subscription

log = logging.getLogger(__name__)

#: Changes of the backlog read at once.
BACKLOG_PAGE: Final = 500
#: Longest one write may wait for the client to take it; a client that takes longer is disconnected.
SEND_TIMEOUT: Final = 30.0


async def stream_changes(request: web.Request) -> web.StreamResponse:
    where = change_filter(request)
    cursor = _resume_from(request)
    hub = request.app[HUB]
    engine = request.app[ENGINE]
    try:
        subscription = await hub.subscribe(where)
    except StreamClosed:
        raise ApiError(503, "unavailable", "the service is shutting down") from None
    try:
        async with engine.connect() as connection:
            if cursor is None:
                first: tuple[list[LiveChange], int] = ([], await latest_seq(connection))
            else:
                first = await tail_after(connection, cursor, limit=BACKLOG_PAGE, where=where)
        stream = _Stream(request, subscription, where, engine)
        return await stream.serve(first)
    except CursorExpired as error:
        raise ApiError(
            410,
            "cursor_expired",
            f"changes up to {error.oldest_kept} are no longer kept; read the current state, then follow on",
        ) from None
    finally:
        hub.unsubscribe(subscription)


class _Stream:
    """One open stream: its response, its subscription, and how far it has written."""

    def __init__(self, request: web.Request, subscription: Subscription, where: ChangeFilter, engine: AsyncEngine):
        self._request = request
        self._subscription = subscription
        self._where = where
        self._engine = engine
        self._response = EventSourceResponse(
            ping_interval=request.app[SETTINGS].stream_heartbeat, send_timeout=SEND_TIMEOUT
        )
        self._writing = False

    async def serve(self, first: tuple[list[LiveChange], int]) -> web.StreamResponse:
        response = self._response
        await response.prepare(self._request)
        self._subscription.on_end = self._ended
        self._subscription.client_gone = self._client_gone
        pump = asyncio.create_task(self._pump(*first), name="presence-stream")
        # The heartbeat task ends when a write fails: the client is gone, even while no change comes.
        heartbeat = asyncio.ensure_future(response.wait())
        try:
            await asyncio.wait({pump, heartbeat}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            pump.cancel()
            await asyncio.wait({pump})
            response.stop_streaming()
            await heartbeat
        error = None if pump.cancelled() else pump.exception()
        if isinstance(error, TimeoutError):  # a write the client did not take within SEND_TIMEOUT
            self._disconnected("slow")
        elif error is not None and not isinstance(error, ConnectionError):
            self._request.app[METRICS].stream_disconnects.labels(reason="error").inc()
            log.warning("a change stream ended: %s", describe(error) if classify(error) else repr(error))
        return response

    async def _pump(self, backlog: list[LiveChange], position: int) -> None:
        """Write the backlog, then the live changes; return when the subscription ends."""
        subscription = self._subscription
        await self._write(backlog)
        more = len(backlog) == BACKLOG_PAGE
        while True:
            while more:
                async with self._engine.connect() as connection:
                    backlog, position = await tail_after(connection, position, limit=BACKLOG_PAGE, where=self._where)
                await self._write(backlog)
                more = len(backlog) == BACKLOG_PAGE
            if not subscription.overflowed():
                break
            more = True  # changes came faster than the backlog was read: read the table again from here
        subscription.go_live()
        while True:
            changes = await subscription.next()
            if not changes:
                return
            await self._write([change for change in changes if change.seq > position])
            position = max(position, changes[-1].seq)

    async def _write(self, changes: list[LiveChange]) -> None:
        """Write the events in one go (one write for many, not one each)."""
        if not changes:
            return
        parts = []
        for change in changes:
            parts.append(f"id: {change.seq}\r\nevent: {change.type}\r\n")
            if "\n" in change.json or "\r" in change.json:  # stored JSON has none; a line break would end the event
                parts.extend(f"data: {line}\r\n" for line in change.json.splitlines())
            else:
                parts.append(f"data: {change.json}\r\n")
            parts.append("\r\n")
        self._writing = True
        try:
            async with asyncio.timeout(SEND_TIMEOUT):
                await self._response.write("".join(parts).encode())
        finally:
            self._writing = False

    def _client_gone(self) -> bool:
        transport = self._request.transport
        return transport is None or transport.is_closing()

    def _ended(self) -> None:
        """The hub ended the subscription: at shutdown the stream finishes the write in hand and ends
        its response cleanly; a slow stream (or one past retention) is cut off, even mid-write."""
        reason = self._subscription.ended
        if reason == "gone" or (reason == "shutdown" and not self._writing):
            return
        transport = self._request.transport
        if transport is not None:
            transport.abort()
        if reason in ("slow", "expired"):
            self._disconnected(reason)

    def _disconnected(self, reason: str) -> None:
        self._request.app[METRICS].stream_disconnects.labels(reason=reason).inc()
        log.info("a change stream was disconnected (%s)", reason)


def _resume_from(request: web.Request) -> int | None:
    """The ``seq`` to resume after: ``Last-Event-ID``, else ``after``, else ``None`` (from now on)."""
    header = request.headers.get("Last-Event-ID")
    if header is not None:
        return seq_value("Last-Event-ID", header.strip())
    after = request.query.get("after")
    return None if after is None else seq_value("after", after)
