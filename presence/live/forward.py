"""Forwarding (contract §9): the changes POSTed to the app as Standard Webhooks, at least once, in order.

One background task per replica. The one that holds the lease in ``forward_state``
(:mod:`presence.db.forwarding`) reads the changes after the cursor, POSTs up to
``forward_batch`` of them as ``{"changes": [...]}`` in ``seq`` order, and moves the cursor past
them once the app answers 2xx. A refusal, a timeout or a connection error is retried, the same
batch under the same ``webhook-id``, after a delay that doubles from 1 s to 60 s, with jitter;
while it waits the lease is renewed, so the batches stay in order. The others only read the
lease, every second, and take it when it expires (its holder died or lost the database).

Nothing here runs on intake's path: the task has its own database connection, holds no
transaction across a POST, and the committer never waits for it. A receiver that hangs holds
this task alone, for ``forward_timeout`` at most per try.

The committer may call :meth:`Forwarder.wake` after a commit that recorded changes, to send them
before the next poll (at most a second later otherwise).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

import aiohttp
from sqlalchemy.ext.asyncio import AsyncEngine
from standardwebhooks import Webhook

from presence.db.changes import CursorExpired, changes_after
from presence.db.failures import classify, describe
from presence.db.forwarding import advance, read_lease, release, take_lease
from presence.metrics import Metrics
from presence.settings import Settings

log = logging.getLogger(__name__)

#: Between two looks at the changes (or at the lease, on a replica that does not hold it).
POLL_INTERVAL: Final = 1.0
FIRST_DELAY: Final = 1.0
MAX_DELAY: Final = 60.0
#: Most bytes of an answer read (and thrown away): the status is all that counts.
MAX_ANSWER_BYTES: Final = 64 * 1024


@dataclass(frozen=True, slots=True)
class Batch:
    """Changes to POST together: their ``seq`` range and the body, rendered once and resent as is."""

    first: int
    last: int
    count: int
    body: str

    @property
    def webhook_id(self) -> str:
        """The same for every try of this batch, so that the app can tell a retry from a new message."""
        return f"changes_{self.first}_{self.last}"


def delay_after(failures: int, *, jitter: Callable[[], float] = random.random) -> float:
    """Seconds to wait after the ``failures``-th failure in a row: doubling from 1 s to 60 s, ±25 %."""
    base = min(MAX_DELAY, FIRST_DELAY * 2.0 ** min(failures - 1, 16))
    return base * (0.75 + 0.5 * jitter())


def shown_url(url: str) -> str:
    """The URL as logged: no credentials, no query (either may hold a token)."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class Forwarder:
    def __init__(
        self,
        engine: AsyncEngine,
        settings: Settings,
        metrics: Metrics,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        assert settings.forward_url is not None, "forwarding needs PRESENCE_FORWARD_URL"
        assert settings.forward_secret is not None, "forwarding needs PRESENCE_FORWARD_SECRET"
        self._engine = engine
        self._url = settings.forward_url
        self._shown_url = shown_url(settings.forward_url)
        self._webhook = Webhook(settings.forward_secret.reveal())
        self._timeout = settings.forward_timeout
        self._batch = settings.forward_batch
        self._lease = settings.forward_lease
        self._metrics = metrics
        self._clock = clock
        #: This process, in the lease: random, so that a restarted replica is a new holder.
        self.holder = f"presence-{secrets.token_hex(8)}"
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        #: While we hold the lease: until when, and the cursor (only the holder moves it).
        self._held_until: datetime | None = None
        self._cursor = 0
        self._task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        """Look for new changes now rather than at the next poll."""
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="presence-forward")

    async def close(self) -> None:
        """Stop: a POST in flight is abandoned (its batch is sent again later), the lease given up."""
        self._stop.set()
        if self._task is not None:
            await self._task

    async def _run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=self._timeout)
        async with aiohttp.ClientSession(timeout=timeout, headers={"User-Agent": "presence"}) as session:
            try:
                await self._loop(session)
            finally:
                await self._give_up_lease()

    async def _loop(self, session: aiohttp.ClientSession) -> None:
        pending: Batch | None = None
        failures = 0
        while not self._stop.is_set():
            try:
                if not await self._hold():
                    pending = None
                    await self._idle()
                    continue
                if pending is None:
                    pending = await self._next_batch()
                    if pending is None:
                        await self._idle()
                        continue
                outcome = await self._post(session, pending)
                if outcome is None:
                    await self._delivered(pending)
                    pending, failures = None, 0
                    continue
                if self._stop.is_set():
                    break
                failures += 1
                delay = delay_after(failures)
                self._metrics.forward_failures.labels(status=outcome).inc()
                log.warning(
                    "forwarding changes %d to %d to %s failed (%s), try %d; trying again in %.1f s",
                    pending.first,
                    pending.last,
                    self._shown_url,
                    outcome,
                    failures,
                    delay,
                )
            except Exception as error:
                failures += 1
                delay = delay_after(failures)
                self._held_until = None  # read the lease again: it may have changed meanwhile
                pending = None
                if classify(error) is None:  # a bug: its traceback, and forwarding goes on
                    log.exception("forwarding failed unexpectedly; trying again in %.1f s", delay)
                else:
                    self._metrics.database_errors.labels(operation="forward").inc()
                    log.warning("forwarding: the database failed (%s); trying again in %.1f s", describe(error), delay)
            await self._pause(delay)

    async def _hold(self) -> bool:
        """Whether we hold the lease, taking or renewing it when it is free or half spent."""
        now = self._clock()
        if self._held_until is not None and now < self._held_until - self._lease / 2:
            return True
        async with self._engine.connect() as connection:
            lease = await read_lease(connection)
            if not lease.free_for(self.holder, now):
                if self._held_until is not None:
                    log.warning("forwarding: the lease passed to %s", lease.holder)
                self._held_until = None
                return False
        async with self._engine.begin() as connection:
            until = now + self._lease
            cursor = await take_lease(connection, self.holder, now=now, until=until)
        if cursor is None:  # another took it between the read and the update
            self._held_until = None
            return False
        if self._held_until is None:
            log.info("forwarding to %s from change %d on", self._shown_url, cursor + 1)
        self._held_until, self._cursor = until, cursor
        return True

    async def _next_batch(self) -> Batch | None:
        async with self._engine.connect() as connection:
            try:
                page = await changes_after(connection, self._cursor, limit=self._batch)
            except CursorExpired as expired:
                page = None
                oldest_kept = expired.oldest_kept
        if page is None:
            # The app was away longer than PRESENCE_CHANGE_RETENTION: what was pruned is gone for it.
            log.error(
                "forwarding: changes %d to %d were pruned before they could be delivered;"
                " the app must read the current state again; forwarding goes on from change %d",
                self._cursor + 1,
                oldest_kept,
                oldest_kept + 1,
            )
            await self._move_cursor(oldest_kept)
            return None
        if not page.changes:
            return None
        body = '{"changes":[' + ",".join(change for _seq, change in page.changes) + "]}"
        return Batch(page.changes[0][0], page.changes[-1][0], len(page.changes), body)

    async def _post(self, session: aiohttp.ClientSession, batch: Batch) -> str | None:
        """POST ``batch``, signed now; ``None`` on a 2xx, else what failed (a status, ``timeout``, ``error``).

        Raced with the stop: a POST the app has not answered when the service stops is abandoned.
        """
        timestamp = datetime.now(UTC)
        headers = {
            "Content-Type": "application/json",
            "webhook-id": batch.webhook_id,
            "webhook-timestamp": str(int(timestamp.timestamp())),
            "webhook-signature": self._webhook.sign(batch.webhook_id, timestamp, batch.body),
        }
        sending = asyncio.ensure_future(self._send(session, batch, headers))
        stopping = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait((sending, stopping), return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            if not sending.done():
                sending.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sending
        return "stopped" if sending.cancelled() else sending.result()

    async def _send(self, session: aiohttp.ClientSession, batch: Batch, headers: dict[str, str]) -> str | None:
        try:
            async with session.post(
                self._url, data=batch.body.encode(), headers=headers, allow_redirects=False
            ) as response:
                await response.content.read(MAX_ANSWER_BYTES)
                return None if 200 <= response.status < 300 else str(response.status)
        except TimeoutError:
            return "timeout"
        except aiohttp.ClientError as error:
            log.debug("forwarding: %s", error)
            return "error"

    async def _delivered(self, batch: Batch) -> None:
        if await self._move_cursor(batch.last):
            self._metrics.forward_delivered.inc(batch.count)

    async def _move_cursor(self, through: int) -> bool:
        until = self._clock() + self._lease
        async with self._engine.begin() as connection:
            moved = await advance(connection, self.holder, through=through, until=until)
        if moved:
            self._held_until, self._cursor = until, through
        else:
            log.warning(
                "forwarding: the lease passed to another replica before change %d was recorded as delivered", through
            )
            self._held_until = None
        return moved

    async def _idle(self) -> None:
        """Until the next poll, a wake-up or the stop."""
        waking = asyncio.ensure_future(self._wake.wait())
        stopping = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait((waking, stopping), timeout=POLL_INTERVAL, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waking.cancel()
            stopping.cancel()
        self._wake.clear()

    async def _pause(self, seconds: float) -> None:
        """Wait ``seconds`` (or until the stop), renewing the lease meanwhile so that no other replica
        sends the next batch before the one that failed."""
        deadline = asyncio.get_running_loop().time() + seconds
        while not self._stop.is_set():
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                return
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(left, self._lease.total_seconds() / 4)):
                    await self._stop.wait()
            if self._held_until is not None:
                with contextlib.suppress(Exception):  # a database that failed is met again by the loop
                    await self._hold()

    async def _give_up_lease(self) -> None:
        if self._held_until is None:
            return
        try:
            async with self._engine.begin() as connection:
                await release(connection, self.holder)
        except Exception as error:
            log.warning("forwarding: could not give the lease up (%s); it expires by itself", describe(error))
        self._held_until = None
