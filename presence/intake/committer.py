"""Group commit: the events of concurrent requests share one transaction.

``/hook`` hands each accepted event to :meth:`Committer.submit` and answers only
when the transaction that holds it has committed. One task drains the queue:
whatever arrived while the previous commits were in flight goes into the next
transaction, so under load one commit (and one fsync) acknowledges many events.
Up to ``concurrency`` transactions are in flight at once (1 on SQLite, whose
single writer would only queue them; several on PostgreSQL, so that round trips
overlap). Their order does not matter: every write is a join, and each takes its
row locks in key order.
Within a batch the pure core joins the facts first, so each row is written once.
The statements are built on the event loop and run as one transaction by
:mod:`presence.db.transactions` (on SQLite, one hop to the writer thread), which
bounds each by the commit timeout and runs again one that lost a race with a peer.

What waits is bounded twice: by a count of events and by their bytes (the inbox
text each holds, counted from submission until its commit ends, so batches in
flight count too). An event whose request went away (cancelled, or its client
hung up: ``client_gone``) before its batch was formed is dropped, not committed:
it was never acknowledged, and CometChat sends it again. Once its commit has
started it is committed, answered or not (at least once, as CometChat's retries are).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from presence.core.facts import changes_of
from presence.db.failures import Failure, classify, describe
from presence.db.recording import ChangeSink, change_types
from presence.db.transactions import Transactions, transactions_for
from presence.db.writes import Writer
from presence.intake.accept import Accepted
from presence.metrics import Metrics
from presence.settings import Settings

log = logging.getLogger(__name__)


class IntakeUnavailable(Exception):
    """The event was not committed; the caller should retry (``503``)."""


class IntakeRejected(Exception):
    """The database refused this event alone; retrying will not help."""


#: Whether the client that submitted an event is gone (it hung up); it is asked before the commit starts.
ClientGone = Callable[[], bool]


@dataclass(slots=True)
class _Pending:
    item: Accepted
    done: asyncio.Future[None]
    #: What this event holds in memory while it waits, counted against the byte limit.
    size: int
    client_gone: ClientGone | None

    def abandoned(self) -> bool:
        """Nobody waits for the outcome: the request was cancelled, or its client hung up."""
        return self.done.cancelled() or (self.client_gone is not None and self.client_gone())


class Committer:
    """Owns its :class:`Transactions`: :meth:`close` closes them."""

    def __init__(
        self,
        transactions: Transactions,
        writer: Writer,
        *,
        max_batch: int,
        queue_limit: int,
        queue_bytes: int | None = None,
        concurrency: int = 1,
        commit_timeout: float,
        metrics: Metrics | None = None,
    ) -> None:
        self._transactions = transactions
        self._writer = writer
        self._max_batch = max_batch
        self._slots = asyncio.Semaphore(concurrency)
        #: Commit tasks and their batches; close() answers the batches of those it cancels.
        self._in_flight: dict[asyncio.Task[None], list[_Pending]] = {}
        self._queue_limit = queue_limit
        self._queue_bytes = queue_bytes
        #: Bytes of the events submitted whose commit has not ended (queued or in flight).
        self._waiting_bytes = 0
        self._commit_timeout = commit_timeout
        self._metrics = metrics
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        #: Why the last commit failed (the database's own words), until one succeeds: ``None`` then.
        #: Before the first commit nothing is known: the first ``unready()`` probes.
        self._failure: str | None = "no commit has been tried yet"
        self._probe: asyncio.Task[str | None] | None = None
        #: The highest ``seq`` this committer has committed (contract §9); 0 before any.
        self._last_seq = 0
        self._change_listeners: list[Callable[[int], None]] = []

    @classmethod
    def for_settings(cls, engine: AsyncEngine, settings: Settings, metrics: Metrics | None = None) -> Committer:
        """The committer ``/hook`` and ``presence import`` share, as the settings configure it."""
        return cls(
            transactions_for(engine, settings),
            Writer(engine.dialect),
            max_batch=settings.commit_max_batch,
            concurrency=1 if engine.dialect.name == "sqlite" else settings.commit_concurrency,
            queue_limit=settings.intake_queue_limit,
            queue_bytes=settings.intake_queue_bytes,
            commit_timeout=settings.commit_timeout,
            metrics=metrics,
        )

    @property
    def last_seq(self) -> int:
        """The highest change ``seq`` a commit of this committer has committed; 0 before any."""
        return self._last_seq

    def on_changes(self, callback: Callable[[int], None]) -> Callable[[], None]:
        """Call ``callback(last_seq)`` on the event loop after each commit that recorded changes.

        It runs once the transaction has committed, with the last ``seq`` it took: everything at
        or below that is readable then (numbers are taken in commit order). The callback must
        not block or raise. Returns the function that removes it.
        """
        self._change_listeners.append(callback)
        return lambda: self._change_listeners.remove(callback)

    async def start(self) -> None:
        await self._transactions.start()
        self._task = asyncio.create_task(self._run(), name="presence-committer")

    async def close(self) -> None:
        """Commit what is queued, then stop; what is still queued after two commit timeouts is answered 503."""
        self._closing = True
        if self._task is None:
            await self._transactions.close()
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2 * self._commit_timeout):
                await self._queue.join()
        in_flight = dict(self._in_flight)
        for task in (self._task, *in_flight):
            task.cancel()
        for task in (self._task, *in_flight):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        # Batches whose commit was cancelled (or never started), then what was still queued.
        left = [pending for batch in in_flight.values() for pending in batch]
        while not self._queue.empty():
            queued = self._queue.get_nowait()
            self._waiting_bytes -= queued.size  # those in flight were counted off as their task ended
            left.append(queued)
        _settle(left, IntakeUnavailable("the service stopped before this event was committed"))
        try:
            async with asyncio.timeout(self._commit_timeout):
                await self._transactions.close()
        except TimeoutError:
            log.warning("the database connection did not close within %s s; leaving it", self._commit_timeout)

    async def unready(self) -> str | None:
        """Why a webhook could not be committed now, or ``None`` if it could (``/readyz``).

        Ready while the last commit succeeded. After a failed one, a transaction that writes
        and changes nothing (:meth:`Transactions.probe`, bounded by the commit timeout) says
        whether the database takes commits again, so readiness comes back without traffic.
        Concurrent callers share one probe.
        """
        if self._closing:
            return "the service is shutting down"
        if self._failure is None:
            return None
        if self._probe is None or self._probe.done():
            self._probe = asyncio.create_task(self._probe_writes(), name="presence-commit-probe")
        return await asyncio.shield(self._probe)

    async def _probe_writes(self) -> str | None:
        try:
            await self._transactions.probe()
        except Exception as error:
            if classify(error) is None:
                raise
            self._failure = describe(error)
        else:
            self._failure = None
        return self._failure

    @property
    def waiting_bytes(self) -> int:
        """Bytes of the events submitted whose commit has not ended, and of the bodies reserved."""
        return self._waiting_bytes

    def reserve(self, size: int) -> bool:
        """Count ``size`` more bytes (of a body still being read) against the byte limit; ``False`` if full.

        The bytes stay counted until :meth:`release`; an event submitted is counted on its own.
        """
        if not self._has_room(size):
            return False
        self._waiting_bytes += size
        return True

    def release(self, size: int) -> None:
        self._waiting_bytes -= size

    def _has_room(self, size: int) -> bool:
        # Whatever its size, one event goes through when nothing else waits.
        limit = self._queue_bytes
        return limit is None or not self._waiting_bytes or self._waiting_bytes + size <= limit

    async def submit(self, item: Accepted, *, client_gone: ClientGone | None = None) -> None:
        """Return once ``item`` is committed; raise :class:`IntakeUnavailable` if it was not.

        ``client_gone``: asked when the batch is formed; if it says so (or this call was
        cancelled), the event is dropped instead of committed and this raises :class:`IntakeUnavailable`.
        """
        if self._closing or self._task is None or self._task.done():
            raise IntakeUnavailable("the service is shutting down")
        if self._queue.qsize() >= self._queue_limit:
            raise IntakeUnavailable("too many events are waiting for a commit")
        size = _size_of(item)
        if not self._has_room(size):
            raise IntakeUnavailable("too many bytes of events are waiting for a commit")
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.add_done_callback(_consume_outcome)
        self._waiting_bytes += size
        self._queue.put_nowait(_Pending(item, done, size, client_gone))
        # A request cancelled here cancels only its own future: if its batch has not been formed
        # yet, its event is dropped there; else it is committed with its neighbours.
        await done

    async def _run(self) -> None:
        while True:
            # A free slot first: the batch goes on gathering while every slot is busy.
            await self._slots.acquire()
            try:
                batch = self._keep_answered([await self._queue.get()])
            except BaseException:
                self._slots.release()
                raise
            while len(batch) < self._max_batch and not self._queue.empty():
                batch.extend(self._keep_answered([self._queue.get_nowait()]))
            if not batch:
                self._slots.release()
                continue
            task = asyncio.create_task(self._commit_in_slot(batch), name="presence-commit")
            self._in_flight[task] = batch
            task.add_done_callback(self._forget)

    def _keep_answered(self, taken: list[_Pending]) -> list[_Pending]:
        """``taken`` less the events nobody waits for any more, which are dropped: their commit has not started."""
        kept = []
        for pending in taken:
            if pending.abandoned():
                _settle([pending], IntakeUnavailable("the client went away before its event was committed"))
                self._waiting_bytes -= pending.size
                self._queue.task_done()
            else:
                kept.append(pending)
        return kept

    def _forget(self, task: asyncio.Task[None]) -> None:
        self._in_flight.pop(task, None)

    async def _commit_in_slot(self, batch: list[_Pending]) -> None:
        try:
            await self._commit_batch(batch)
        finally:
            self._slots.release()
            for pending in batch:
                self._waiting_bytes -= pending.size
                self._queue.task_done()

    async def _commit_batch(self, batch: list[_Pending]) -> None:
        started = time.perf_counter()
        try:
            # A database that stops answering must not hold every later request: the transaction
            # layer gives a stuck commit up (rolled back, or its outcome unknown): answered 503.
            await self._commit([p.item for p in batch])
        except Exception as error:
            if self._metrics is not None:
                self._metrics.database_errors.labels(operation="commit").inc()
            if classify(error) is not Failure.REFUSED:
                self._failure = describe(error)
                log.warning("commit of %d events failed: %s", len(batch), self._failure)
                _settle(batch, IntakeUnavailable("the database is unavailable"))
                return
            if len(batch) == 1:
                log.error(
                    "database refused an event: %s", describe(error), extra={"trigger": batch[0].item.inbox.trigger}
                )
                _settle(batch, IntakeRejected("the database refused this event"))
                return
            # An event spoiled the batch: halve it until the refused ones stand alone, so the
            # others commit in a few transactions (about 2·log2(n) for one bad event in n).
            middle = len(batch) // 2
            await self._commit_batch(batch[:middle])
            await self._commit_batch(batch[middle:])
            return
        self._failure = None
        if self._metrics is not None:
            self._metrics.commit_seconds.observe(time.perf_counter() - started)
            self._metrics.commit_batch_size.observe(len(batch))
        _settle(batch, None)

    async def _commit(self, items: Sequence[Accepted]) -> None:
        changes = changes_of((item.event, item.received_at_ms) for item in items)
        sink = ChangeSink(recorded_at_ms=time.time_ns() // 1_000_000)
        await self._transactions.run(self._writer.steps([item.inbox for item in items], changes, record=sink))
        if sink.last_seq is None:
            return
        if self._metrics is not None:
            for change_type, count in change_types(sink.changes).items():
                self._metrics.changes.labels(type=change_type).inc(count)
        self._last_seq = max(self._last_seq, sink.last_seq)
        for listener in list(self._change_listeners):
            try:
                listener(sink.last_seq)
            except Exception:
                log.exception("a listener of committed changes failed")


def _settle(batch: list[_Pending], error: Exception | None) -> None:
    for pending in batch:
        if pending.done.done():
            continue
        if error is None:
            pending.done.set_result(None)
        else:
            pending.done.set_exception(error)


def _size_of(item: Accepted) -> int:
    # The inbox text is what a waiting event holds: the body it came from and the dict parsed from
    # it are gone by then. Its size in memory, not its length: one character beyond Latin-1 widens all.
    return sys.getsizeof(item.inbox.body)


def _consume_outcome(future: asyncio.Future[None]) -> None:
    # The request may have gone away; mark its outcome seen so asyncio does not warn.
    if not future.cancelled():
        future.exception()
