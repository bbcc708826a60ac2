"""One reader of the change table per process, handing each change to the streams that want it.

``GET /changes/stream`` subscribes here. While at least one stream is open, one task (the
*tail*) reads the changes committed after the last one it saw (``presence.db.changes.tail_from``)
and puts each into the queue of every subscription whose filter matches it. It reads when woken:

- in this process, by :meth:`ChangeHub.wake`, which the committer calls after a commit that recorded changes;
- on PostgreSQL, by a ``NOTIFY`` from any replica's commit (:mod:`presence.db.notifications`);
- and at least every :data:`FALLBACK_INTERVAL` anyway, so a lost wake-up delays a change by no more.

The tail reads on a connection of its own while it runs (in autocommit: no transaction to begin or
end), one statement per page, and the wake-ups of one moment (:data:`COALESCE_INTERVAL`) share one
read: with a thousand streams open, intake's commits cost the tail a read every 50 ms at most.

The table is the source of truth: a wake-up says only "read now". With no stream open there is no
tail, no listening connection, and nothing on the intake path but the one ``NOTIFY`` of the commit.

Each subscription's queue holds at most ``PRESENCE_STREAM_QUEUE`` changes (references to strings the
subscriptions share). While the stream reads its backlog from the table, a full queue is emptied and
the stream reads the table again from where it got to; once it is live, a full queue means its client
reads more slowly than changes come, and the stream is disconnected (the client resumes with
``Last-Event-ID``). So no client can make the process hold more than that for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from typing import Final

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from presence.db.changes import ChangeFilter, CursorExpired, LiveChange, latest_seq, tail_from
from presence.db.failures import classify
from presence.db.notifications import listen_forever
from presence.metrics import Metrics

log = logging.getLogger(__name__)

#: Longest a change waits for a stream's tail when every wake-up was lost (seconds).
FALLBACK_INTERVAL: Final = 1.0
#: How long the tail waits, once woken, before it reads: the commits of a burst share one read.
#: It bounds how often a busy service reads the table for its streams (at most 20 times a second),
#: at the price of as much latency, far inside the second the contract allows.
COALESCE_INTERVAL: Final = 0.05
#: Changes the tail reads at once.
TAIL_PAGE: Final = 500


class StreamClosed(Exception):
    """The hub stopped (the service is shutting down): no new stream."""


class Subscription:
    """One stream's place in the fan-out: its filter, and the changes waiting for it."""

    def __init__(self, where: ChangeFilter, limit: int) -> None:
        self.where = where
        self._limit = limit
        self._queue: deque[LiveChange] = deque()
        self._ready = asyncio.Event()
        #: Reading its backlog from the table: a full queue is emptied, not a disconnection.
        self._catching_up = True
        self._overflowed = False
        #: Why the stream must end: ``"slow"``, ``"expired"``, ``"gone"``, ``"shutdown"``; ``None`` while it goes on.
        self.ended: str | None = None
        #: Called when the stream must end at once, even mid-write (the handler aborts its connection).
        self.on_end: Callable[[], None] | None = None
        #: Whether the stream's client has gone (its connection closed): asked about once a second,
        #: so that a stream whose client left ends without waiting for its next write to fail.
        self.client_gone: Callable[[], bool] | None = None

    def offer(self, change: LiveChange) -> None:
        if self.ended is not None:
            return
        if len(self._queue) >= self._limit:
            if self._catching_up:
                self._queue.clear()
                self._overflowed = True
            else:
                self.end("slow")
                return
        self._queue.append(change)
        self._ready.set()

    def overflowed(self) -> bool:
        """Whether the queue was emptied since the last call: the backlog must be read again."""
        overflowed, self._overflowed = self._overflowed, False
        return overflowed

    def go_live(self) -> None:
        """The backlog is written: from now on a full queue disconnects."""
        self._catching_up = False

    def end(self, reason: str) -> None:
        if self.ended is not None:
            return
        self.ended = reason
        self._queue.clear()
        self._ready.set()
        if self.on_end is not None:
            self.on_end()

    async def next(self) -> list[LiveChange]:
        """The changes waiting, at least one; ``[]`` once the stream must end."""
        while not self._queue and self.ended is None:
            self._ready.clear()
            await self._ready.wait()
        taken = list(self._queue)
        self._queue.clear()
        return taken

    @property
    def queued(self) -> int:
        return len(self._queue)


class ChangeHub:
    """The process's streams: one tail while any is open, and the wake-ups that drive it."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        queue_limit: int,
        metrics: Metrics | None = None,
        listen: bool | None = None,
        connect_timeout: float = 5.0,
        command_timeout: float = 5.0,
    ) -> None:
        """``listen``: ``LISTEN`` for other replicas' commits; by default on PostgreSQL."""
        self._engine = engine
        self._queue_limit = queue_limit
        self._metrics = metrics
        self._listen = engine.dialect.name == "postgresql" if listen is None else listen
        self._connect_timeout = connect_timeout
        self._command_timeout = command_timeout
        # Subscriptions by what they filter on first, so that a change is offered only to those
        # that may want it: a thousand streams on one user each cost nothing for the others' changes.
        self._by_uid: dict[str, set[Subscription]] = {}
        self._by_conversation: dict[str, set[Subscription]] = {}
        self._by_type: dict[str, set[Subscription]] = {}
        self._unfiltered: set[Subscription] = set()
        self._count = 0
        #: The highest ``seq`` handed out; ``None`` while no tail runs.
        self._position: int | None = None
        self._woken = asyncio.Event()
        self._tail: asyncio.Task[None] | None = None
        self._listener: asyncio.Task[None] | None = None
        #: The tail's connection while it runs.
        self._connection: AsyncConnection | None = None
        #: Tails that found nobody left and are closing their connection.
        self._ending: set[asyncio.Task[None]] = set()
        self._closed = False

    @property
    def subscribers(self) -> int:
        return self._count

    def wake(self, through: int | None = None) -> None:
        """Changes up to ``through`` (or some, when ``None``) have committed: read them now."""
        if self._tail is None:
            return
        if through is not None and self._position is not None and through <= self._position:
            return
        self._woken.set()

    async def subscribe(self, where: ChangeFilter) -> Subscription:
        """A subscription that is offered every matching change above the tail's position from now on.

        The caller reads from the table what it needs below that (its backlog): :meth:`changes_after`
        reads up to the last committed ``seq``, which is at or above the tail's position.
        """
        if self._closed:
            raise StreamClosed("the service is shutting down")
        if self._tail is None:
            async with self._engine.connect() as connection:
                position = await latest_seq(connection)
            if self._closed:
                raise StreamClosed("the service is shutting down")
            if self._tail is None:  # no other stream started it meanwhile
                self._start_tail(position)
        subscription = Subscription(where, self._queue_limit)
        self._bucket(where).add(subscription)
        self._count += 1
        self._gauge()
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        bucket = self._bucket(subscription.where)
        if subscription not in bucket:
            return
        bucket.discard(subscription)
        self._count -= 1
        self._gauge()
        for index, key in (
            (self._by_uid, subscription.where.uid),
            (self._by_conversation, subscription.where.conversation_id),
            (self._by_type, subscription.where.type),
        ):
            if key is not None and not index.get(key, True):
                del index[key]
        if not self._count:
            self._woken.set()  # the tail sees nobody is left, and stops

    async def close(self) -> None:
        """End every stream (cleanly: each handler finishes its response), then stop the tail."""
        self._closed = True
        for subscription in self._all():
            subscription.end("shutdown")
        await self._stop_tail()

    def _start_tail(self, position: int) -> None:
        self._position = position
        self._woken.clear()
        self._tail = asyncio.create_task(self._run(), name="presence-stream-tail")
        if self._listen:
            self._listener = asyncio.create_task(
                listen_forever(
                    self._engine.url,
                    self.wake,
                    connect_timeout=self._connect_timeout,
                    command_timeout=self._command_timeout,
                ),
                name="presence-stream-listener",
            )

    async def _stop_tail(self) -> None:
        tasks = [task for task in (self._tail, self._listener) if task is not None]
        self._tail = self._listener = None
        self._position = None
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        # A tail that stopped by itself may still be closing its connection: the engine is disposed next.
        await asyncio.gather(*self._ending, return_exceptions=True)

    async def _run(self) -> None:
        failing = False
        loop = asyncio.get_running_loop()
        swept = loop.time()
        try:
            while True:
                if not self._count:
                    # Synchronously, so that a stream subscribing from now on starts a new tail.
                    listener, self._listener, self._tail, self._position = self._listener, None, None, None
                    if listener is not None:
                        listener.cancel()
                    # Still closing its connection below: stopping the hub waits for that too.
                    ending = asyncio.current_task()
                    if ending is not None:
                        self._ending.add(ending)
                        ending.add_done_callback(self._ending.discard)
                    return
                self._woken.clear()
                failing = await self._read_logged(failing)
                now = loop.time()
                if now - swept >= FALLBACK_INTERVAL:
                    swept = now
                    self._sweep()
                woken = False
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(FALLBACK_INTERVAL):
                        woken = await self._woken.wait()
                if woken and self._count:
                    # Commits come in bursts under load: the wake-ups of the next moment share one read.
                    await asyncio.sleep(COALESCE_INTERVAL)
        finally:
            connection, self._connection = self._connection, None
            if connection is not None:
                await connection.close()

    async def _read_logged(self, failing: bool) -> bool:
        """Read once, on the tail's connection (taken anew after a failure); whether it failed."""
        try:
            if self._connection is None:
                self._connection = await self._connect()
            await self._read(self._connection)
        except CursorExpired as expired:
            # Retention pruned past the tail (it cannot, while the tail reads every second, unless
            # the retention is shorter than that): every stream ends, and resumes with a 410.
            for subscription in self._all():
                subscription.end("expired")
            self._position = expired.oldest_kept
        except Exception as error:
            stale, self._connection = self._connection, None
            if stale is not None:  # it may be the connection that failed: take another next time
                with contextlib.suppress(Exception):
                    await stale.invalidate()
            if classify(error) is None:
                log.exception("the streams' tail failed; reading again in %s s", FALLBACK_INTERVAL)
            elif not failing:
                log.warning("the streams cannot read changes (trying every %s s): %s", FALLBACK_INTERVAL, error)
            return True
        return False

    async def _connect(self) -> AsyncConnection:
        """The tail's own connection while it runs: no pool round trip per read, no transaction to end."""
        connection = await self._engine.connect()
        try:
            return await connection.execution_options(isolation_level="AUTOCOMMIT")
        except BaseException:
            await connection.close()
            raise

    async def _read(self, connection: AsyncConnection) -> None:
        """Hand out every change committed above the position, a page at a time."""
        while True:
            position = self._position
            assert position is not None
            changes = await tail_from(connection, position, limit=TAIL_PAGE)
            if self._position != position:
                return  # the tail was restarted meanwhile
            for change in changes:
                self._offer(change)
            if changes:
                self._position = changes[-1].seq
            if len(changes) < TAIL_PAGE:
                return

    def _sweep(self) -> None:
        """End the subscriptions whose client has gone."""
        for subscription in self._all():
            if subscription.client_gone is not None and subscription.client_gone():
                subscription.end("gone")

    def _offer(self, change: LiveChange) -> None:
        candidates = [self._unfiltered, self._by_type.get(change.type)]
        if change.uid is not None:
            candidates.append(self._by_uid.get(change.uid))
        if change.conversation_id is not None:
            candidates.append(self._by_conversation.get(change.conversation_id))
        for bucket in candidates:
            if not bucket:
                continue
            for subscription in list(bucket):  # one that ends here leaves the bucket later, not now
                if subscription.where.matches(change.type, change.uid, change.conversation_id):
                    subscription.offer(change)

    def _bucket(self, where: ChangeFilter) -> set[Subscription]:
        if where.uid is not None:
            return self._by_uid.setdefault(where.uid, set())
        if where.conversation_id is not None:
            return self._by_conversation.setdefault(where.conversation_id, set())
        if where.type is not None:
            return self._by_type.setdefault(where.type, set())
        return self._unfiltered

    def _all(self) -> list[Subscription]:
        every = list(self._unfiltered)
        for index in (self._by_uid, self._by_conversation, self._by_type):
            for bucket in index.values():
                every.extend(bucket)
        return every

    def _gauge(self) -> None:
        if self._metrics is not None:
            self._metrics.stream_subscribers.set(self._count)
