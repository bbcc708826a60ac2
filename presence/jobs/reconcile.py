"""Reconciliation passes (contract §10): CometChat's REST API asked who is online, corrections recorded as events.

A pass started at T:

1. lists the users CometChat has online (``perPage`` 1000: one request per 1000 online users);
2. reads, in bounded batches, the users the service has ``online`` and those CometChat listed;
3. asks ``GET /users/{uid}`` about each user the service has online, settled (no event newer than
   T minus ``PRESENCE_RECONCILE_GRACE``), whom the listing missed: paging by page number can skip
   a user, so only CometChat's own ``offline`` for that user corrects it (at most
   :data:`MAX_CONFIRMATIONS` a pass, a random sample when there are more: the rest wait for the next);
4. only once every request has succeeded, records its corrections through the committer, as
   ``presence_reconcile`` events at T (``presence.core.reconcile``), in windows like ``presence
   import``'s: the same inbox, the same joins (a later real event still wins), the same change feed.

A CometChat failure (after the retries its budget allows) or a database failure ends the pass with
:class:`ReconcileFailed`, one line; a failure before step 4 records nothing at all, one during it
leaves the users not reached as they were. Intake and queries never wait for a pass: it holds no
transaction, and its events queue with the webhooks'.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Final, Literal

import orjson
from sqlalchemy.ext.asyncio import AsyncEngine

from presence.core import reconcile
from presence.core.events import ReconciledStatus
from presence.core.times import ms_to_datetime
from presence.db import reads, reconciling
from presence.db.failures import classify, describe
from presence.intake.accept import accept
from presence.intake.committer import Committer, IntakeRejected, IntakeUnavailable
from presence.jobs.cometchat import MAX_PER_PAGE, CometChat, CometChatError, RemoteUser
from presence.metrics import Metrics
from presence.settings import Settings

log = logging.getLogger(__name__)

#: Users read from the database at a time.
BATCH: Final = 1000
#: ``GET /users/{uid}`` requests in flight at once.
CONFIRM_CONCURRENCY: Final = 8
#: Most ``GET /users/{uid}`` one pass sends: a fifth of CometChat's 10,000 requests a minute. After a long
#: outage every user may be doubtful; a random sample of this many is asked, the rest left for the next passes.
MAX_CONFIRMATIONS: Final = 2000
#: Called with the number of users checked so far.
Progress = Callable[[int], None]
Outcome = Literal["completed", "cometchat_failed", "database_failed", "timed_out"]


@dataclass(slots=True)
class ReconcileSummary:
    #: Distinct users looked at: those CometChat listed online and those the service had online.
    checked: int = 0
    corrected_offline: int = 0
    corrected_online: int = 0
    #: Requests to CometChat that failed (retried ones included).
    errors: int = 0
    #: Doubtful users not asked this pass (beyond :data:`MAX_CONFIRMATIONS`): left as they were, for the next.
    deferred: int = 0
    requests: int = 0
    seconds: float = 0.0

    @property
    def unchanged(self) -> int:
        return self.checked - self.corrected_offline - self.corrected_online

    def describe(self) -> str:
        return (
            f"{self.checked} users checked: {self.corrected_offline} corrected offline, {self.corrected_online}"
            f" corrected online, {self.unchanged} unchanged, {self.errors} errors"
            f" ({self.requests} requests to CometChat, {self.seconds:.1f} s)"
            + (f"; {self.deferred} doubtful users left for the next pass" if self.deferred else "")
        )


class ReconcileFailed(Exception):
    """A pass stopped before its end; the message is one line, ``summary`` says what it recorded."""

    def __init__(self, reason: str, summary: ReconcileSummary, outcome: Outcome) -> None:
        recorded = summary.corrected_offline + summary.corrected_online
        super().__init__(
            f"reconciliation stopped: {reason}; {recorded} corrections were recorded, nothing changed for the"
            " users not reached"
        )
        self.summary = summary
        self.outcome = outcome


async def run_pass(
    engine: AsyncEngine,
    committer: Committer,
    settings: Settings,
    *,
    metrics: Metrics | None = None,
    progress: Progress | None = None,
    request_timeout: float = 10.0,
    retry_budget: float = 60.0,
    per_page: int = MAX_PER_PAGE,
    max_confirmations: int = MAX_CONFIRMATIONS,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    clock: Callable[[], float] = time.time,
    deadline: float | None = None,
) -> ReconcileSummary:
    """One pass; its summary, or :class:`ReconcileFailed`. Logs one line either way, counts it in ``metrics``.

    ``deadline``: seconds the pass may take; past them it stops (``timed_out``). Background passes
    get their interval, so that a pass still running never meets the next replica's.
    """
    url, key = settings.cometchat_url, settings.cometchat_api_key
    assert url is not None, "reconciliation needs PRESENCE_COMETCHAT_API_KEY"
    assert key is not None
    started = time.perf_counter()
    summary = ReconcileSummary()

    def count_error(status: str) -> None:
        if metrics is not None:
            metrics.cometchat_errors.labels(status=status).inc()

    client = CometChat(
        url,
        key,
        timeout=request_timeout,
        retry_budget=retry_budget,
        per_page=per_page,
        on_error=count_error,
        sleep=sleep,
    )
    outcome: Outcome = "completed"
    limit = asyncio.timeout(deadline)
    try:
        async with limit, client:
            await _Pass(
                engine,
                committer,
                client,
                settings,
                summary=summary,
                progress=progress,
                clock=clock,
                max_confirmations=max_confirmations,
            ).run()
    except TimeoutError:
        if not limit.expired():
            raise
        outcome = "timed_out"
        reason = f"the pass took longer than its {deadline:g} s (PRESENCE_RECONCILE_INTERVAL)"
        raise ReconcileFailed(reason, summary, outcome) from None
    except CometChatError as error:
        outcome = "cometchat_failed"
        raise ReconcileFailed(str(error), summary, outcome) from None
    except IntakeUnavailable as error:
        outcome = "database_failed"
        raise ReconcileFailed(f"the database is unavailable ({error})", summary, outcome) from None
    except Exception as error:
        if classify(error) is None:
            raise
        outcome = "database_failed"
        raise ReconcileFailed(f"the database failed ({describe(error)})", summary, outcome) from None
    finally:
        summary.requests, summary.errors = client.requests, client.errors
        summary.seconds = time.perf_counter() - started
        if metrics is not None:
            metrics.reconcile_runs.labels(outcome=outcome).inc()
            metrics.reconcile_seconds.observe(summary.seconds)
            metrics.reconcile_corrections.labels(direction="offline").inc(summary.corrected_offline)
            metrics.reconcile_corrections.labels(direction="online").inc(summary.corrected_online)
    log.info("reconciliation: %s", summary.describe())
    return summary


class _Pass:
    def __init__(
        self,
        engine: AsyncEngine,
        committer: Committer,
        client: CometChat,
        settings: Settings,
        *,
        summary: ReconcileSummary,
        progress: Progress | None,
        clock: Callable[[], float],
        max_confirmations: int,
    ) -> None:
        self._engine = engine
        self._committer = committer
        self._client = client
        self._summary = summary
        self._progress = progress
        self._grace_ms = int(settings.reconcile_grace.total_seconds() * 1000)
        self._max_skew_ms = settings.max_clock_skew_ms
        self._window = max(1, min(2 * settings.commit_max_batch, settings.intake_queue_limit))
        self._started_ms = int(clock() * 1000)
        self._floor = reads.ttl_floor(settings.connection_ttl, ms_to_datetime(self._started_ms))
        self._max_confirmations = max_confirmations

    async def run(self) -> None:
        listed: dict[str, RemoteUser] = {}
        async for page in self._client.online_pages():
            listed.update((user.uid, user) for user in page)
            self._report(len(listed))
        doubtful, online_here = await self._doubtful(listed)
        self._summary.checked = len(listed.keys() | online_here)
        marked_online = await self._missing(listed)
        confirmed = await self._confirm(doubtful)
        corrections: list[tuple[str, ReconciledStatus, int | None]] = [(uid, "online", None) for uid in marked_online]
        corrections += [(user.uid, "offline", user.last_active_at_ms) for user in confirmed]
        await self._record(corrections)

    def _report(self, checked: int) -> None:
        if self._progress is not None:
            self._progress(checked)

    async def _doubtful(self, listed: dict[str, RemoteUser]) -> tuple[list[str], set[str]]:
        """The users the service has online, settled, whom CometChat did not list; and every user it has online."""
        doubtful: list[str] = []
        online_here: set[str] = set()
        after: str | None = None
        while True:
            async with self._engine.connect() as connection:
                batch = await reconciling.online_after(connection, after, BATCH)
            if not batch:
                return doubtful, online_here
            online_here.update(uid for uid, _ in batch)
            doubtful += reconcile.to_confirm(batch, listed.keys(), started_ms=self._started_ms, grace_ms=self._grace_ms)
            self._report(len(listed.keys() | online_here))
            after = batch[-1][0]

    async def _missing(self, listed: dict[str, RemoteUser]) -> list[str]:
        marked: list[str] = []
        for chunk in _chunks(sorted(listed), BATCH):
            async with self._engine.connect() as connection:
                known = await reconciling.known_of(connection, chunk, self._floor)
            marked += reconcile.to_mark_online(chunk, known, started_ms=self._started_ms, grace_ms=self._grace_ms)
        return marked

    async def _confirm(self, doubtful: list[str]) -> list[RemoteUser]:
        """The doubtful users CometChat says are offline, asked one by one, a few at a time.

        A user CometChat does not know (``404``) is left alone: no answer is not an ``offline``.
        """
        if len(doubtful) > self._max_confirmations:
            self._summary.deferred = len(doubtful) - self._max_confirmations
            doubtful = random.sample(doubtful, self._max_confirmations)  # fair over passes: none starves
        slots = asyncio.Semaphore(CONFIRM_CONCURRENCY)

        async def ask(uid: str) -> RemoteUser | None:
            async with slots:
                return await self._client.user(uid)

        offline: list[RemoteUser] = []
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(ask(uid)) for uid in doubtful]
        except ExceptionGroup as failures:
            # The first failure ends the pass; the requests still in flight were cancelled.
            raise failures.exceptions[0] from None
        for uid, task in zip(doubtful, tasks, strict=True):
            user = task.result()
            if user is not None and not user.online:
                # As the service names the user: CometChat may spell the uid in lower case.
                offline.append(replace(user, uid=uid))
        return offline

    async def _record(self, corrections: list[tuple[str, ReconciledStatus, int | None]]) -> None:
        in_flight: set[asyncio.Task[ReconciledStatus]] = set()
        failed: list[BaseException] = []

        async def submit(uid: str, status: ReconciledStatus, last_active: int | None) -> ReconciledStatus:
            raw = orjson.dumps(reconcile.body(uid, status, self._started_ms, last_active))
            accepted = accept(raw, received_at=datetime.now(UTC), max_skew_ms=self._max_skew_ms, own=True)
            await self._committer.submit(accepted)
            return status

        def done(task: asyncio.Task[ReconciledStatus]) -> None:
            in_flight.discard(task)
            if task.cancelled():
                return
            error = task.exception()
            if error is not None:
                failed.append(error)
            elif task.result() == "offline":
                self._summary.corrected_offline += 1
            else:
                self._summary.corrected_online += 1

        try:
            for uid, status, last_active in corrections:
                if failed:
                    break
                task = asyncio.create_task(submit(uid, status, last_active))
                in_flight.add(task)
                task.add_done_callback(done)
                if len(in_flight) >= self._window:
                    await asyncio.wait(set(in_flight), return_when=asyncio.FIRST_COMPLETED)
            if in_flight:
                await asyncio.wait(set(in_flight))
        finally:
            for task in in_flight:
                task.cancel()
        for error in failed:
            if isinstance(error, IntakeRejected):
                log.error("reconciliation: the database refused a correction: %s", error)
                continue
            raise error


def _chunks(items: Iterable[str], size: int) -> Iterator[list[str]]:
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


async def run_forever(
    engine: AsyncEngine, committer: Committer, settings: Settings, metrics: Metrics, stop: asyncio.Event
) -> None:
    """Background passes inside ``serve``: one every ``PRESENCE_RECONCILE_INTERVAL``, by one replica at a time.

    Each replica looks every few seconds whether a pass is due and claims it (``reconciling.claim_pass``);
    the one that did runs it. A pass that fails is logged and counted; the next comes at its time.
    """
    interval = settings.reconcile_interval
    assert interval is not None
    holder = f"presence-{secrets.token_hex(8)}"
    poll = min(5.0, interval.total_seconds() / 2)
    log.info("reconciliation with CometChat every %g s", interval.total_seconds())
    while not stop.is_set():
        now = datetime.now(UTC)
        try:
            async with engine.begin() as connection:
                claimed = await reconciling.claim_pass(connection, holder, now=now, next_at=now + interval)
        except Exception as error:
            if classify(error) is None:
                raise
            log.warning("reconciliation: cannot claim the next pass (%s)", describe(error))
            claimed = False
        if claimed:
            try:
                # Within its interval: the next claim, by any replica, finds this pass over.
                await run_pass(engine, committer, settings, metrics=metrics, deadline=interval.total_seconds())
            except ReconcileFailed as failure:
                log.warning("%s", failure)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(poll):
                await stop.wait()
