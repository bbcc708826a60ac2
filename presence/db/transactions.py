"""Where a group commit's statements run: one transaction, all or nothing.

On an SQLite file, :class:`SqliteTransactions` runs the whole transaction in one
hop to a thread of its own, on a stdlib ``sqlite3`` connection: ``BEGIN
IMMEDIATE``, one ``executemany`` per statement, ``COMMIT`` (and its fsync). Going
through aiosqlite instead costs a round trip to its thread and back for every
call, and each return waits its turn behind the requests the event loop is
serving: most of a commit's time went to that waiting (docs/design.md).

Elsewhere (PostgreSQL, where asyncpg needs no thread; an in-memory SQLite
database, which only the engine's own connection can see)
:class:`EngineTransactions` runs the statements on a connection of the engine.

Both bound a transaction by ``timeout`` seconds, counted from when its work
starts (a batch waiting for the SQLite writer to finish an earlier transaction
is not charged for that wait, which has a bound of its own), and both raise
:class:`TimeoutError` past it. A transaction that lost a race with a peer
(:data:`presence.db.failures.Failure.TRANSIENT`) is run again, here, so no
caller has to know which failures are worth a retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Final, Protocol

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from presence.db.driver import Step, execute, execute_asyncpg, execute_sqlite
from presence.db.engine import open_sqlite_writer, sqlite_file
from presence.db.failures import Failure, classify, needs_new_connection
from presence.settings import Settings

log = logging.getLogger(__name__)

#: Runs of one transaction that lost a race with a peer before its failure is given up.
TRANSIENT_ATTEMPTS: Final = 3
#: Pooled PostgreSQL connections found closed at ``BEGIN`` that one transaction skips (then gives up).
_DEAD_CONNECTIONS_SKIPPED: Final = 8


class Transactions(Protocol):
    async def start(self) -> None:
        """Get ready before the first transaction; never raises (the first ``run`` will)."""

    async def run(self, statements: Sequence[Step]) -> None:
        """Execute ``statements`` in one transaction and commit it; raise if it did not commit.

        :class:`TimeoutError` when it did not finish within the timeout; then it may
        still commit (the event is applied at least once, as a retried webhook is).
        """

    async def probe(self) -> None:
        """Commit a transaction that writes and changes nothing, within the timeout; raise as ``run`` does.

        Whether a commit can succeed now, with no event at stake: ``/readyz`` asks it after a
        failed commit.
        """

    async def close(self) -> None:
        """Release the connection; nothing may run afterwards."""


def transactions_for(engine: AsyncEngine, settings: Settings) -> Transactions:
    path = sqlite_file(engine)
    if path is None:
        return EngineTransactions(engine, timeout=settings.commit_timeout)
    return SqliteTransactions(path, synchronous=settings.sqlite_synchronous, timeout=settings.commit_timeout)


class EngineTransactions:
    """Each transaction runs in a task of its own, which the caller stops waiting for at the timeout.

    Giving up on a silent database takes time of its own: cancelling asyncpg's statement, rolling
    back, closing the stuck connection each wait for a peer that does not answer (seconds, up to
    the connect and statement timeouts). That cleanup goes on in the background, in the task, while
    the caller is answered at the timeout; :meth:`close` waits for it, within the timeout again.
    """

    def __init__(self, engine: AsyncEngine, *, timeout: float) -> None:
        self._engine = engine
        self._postgres = engine.dialect.name == "postgresql"
        self._timeout = timeout
        #: Transactions given up on (or still running): their cleanup is awaited by close().
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        pass  # the pool connects on demand

    async def run(self, statements: Sequence[Step]) -> None:
        await self._bounded(self._attempts(statements))

    async def probe(self) -> None:
        await self._bounded(self._select_one())

    async def close(self) -> None:
        # The engine's owner disposes of it, after this: let given-up transactions finish first.
        if self._tasks:
            _, stuck = await asyncio.wait(set(self._tasks), timeout=self._timeout)
            if stuck:
                log.warning("%d abandoned transactions still closing their connections; leaving them", len(stuck))

    async def _bounded(self, work: Coroutine[None, None, None]) -> None:
        """``work`` within the timeout, counted from now: checkout, connect, statements, commit."""
        task = asyncio.create_task(work, name="presence-transaction")
        self._tasks.add(task)
        task.add_done_callback(_forget_task(self._tasks))
        try:
            done, _ = await asyncio.wait({task}, timeout=self._timeout)
        except asyncio.CancelledError:
            task.cancel()  # the caller is gone (the committer closing): stop, in the background
            raise
        if task not in done:
            task.cancel()  # its rollback and the stuck connection's closing go on in the background
            raise TimeoutError(f"the transaction did not finish within {self._timeout} s")
        task.result()

    async def _attempts(self, statements: Sequence[Step]) -> None:
        # One deadline (_bounded's) for every attempt: a silent database is an outage, not a wait.
        for attempt in range(1, TRANSIENT_ATTEMPTS + 1):
            try:
                if self._postgres:
                    await self._on_asyncpg(statements)
                else:
                    async with self._engine.begin() as connection:
                        await execute(connection, statements)
            except Exception as error:
                if classify(error) is not Failure.TRANSIENT or attempt == TRANSIENT_ATTEMPTS:
                    raise
                log.info("transaction conflicted with a peer (%s); running it again", type(error).__name__)
                await asyncio.sleep(0.005 * attempt)
            else:
                return

    async def _on_asyncpg(self, statements: Sequence[Step]) -> None:
        """One transaction on the pooled connection's own asyncpg connection, SQLAlchemy left out.

        The intake pool does not ping a connection at checkout (three round trips: SQLAlchemy's
        ping is a transaction of its own): ``BEGIN`` is the ping. A connection found dead there
        has run nothing of this transaction, so it is dropped and the next one tried, as the
        ping would have; one that fails later, or whose statement was cancelled (a timeout), is
        dropped too, never given back to the pool in an unknown state. A refused or conflicting
        statement only rolls back (the connection is sound).
        """
        for _ in range(_DEAD_CONNECTIONS_SKIPPED + 1):
            async with self._engine.connect() as connection:
                raw = (await connection.get_raw_connection()).driver_connection
                assert isinstance(raw, asyncpg.Connection)
                try:
                    await raw.execute("BEGIN")
                except (asyncpg.PostgresConnectionError, asyncpg.InterfaceError, OSError):
                    closed = raw.is_closed()
                    await connection.invalidate()
                    if closed:
                        continue  # it died in the pool (a server restart): another one
                    raise
                except BaseException:
                    await connection.invalidate()  # cancelled (a timeout): nothing more is tried
                    raise
                try:
                    await execute_asyncpg(raw, statements)
                    await raw.execute("COMMIT")
                except asyncpg.PostgresError as error:
                    if isinstance(error, asyncpg.PostgresConnectionError) or raw.is_closed():
                        await connection.invalidate()
                        raise
                    try:
                        await raw.execute("ROLLBACK")
                    except BaseException:
                        await connection.invalidate()
                    raise
                except BaseException:
                    await connection.invalidate()
                    raise
                return
        raise ConnectionError("every pooled connection to PostgreSQL was found closed")

    async def _select_one(self) -> None:
        async with self._engine.begin() as connection:
            await connection.exec_driver_sql("SELECT 1")


def _forget_task(tasks: set[asyncio.Task[None]]) -> Callable[[asyncio.Task[None]], None]:
    def forget(task: asyncio.Task[None]) -> None:
        tasks.discard(task)
        if not task.cancelled():
            task.exception()  # seen: a transaction given up on may fail later, unheard

    return forget


class SqliteTransactions:
    """One writer thread with one connection: WAL, ``synchronous`` as the engine's, and the writer's
    own settings (``presence.db.engine.writer_pragmas``: statement journals in memory, checkpoints
    every :data:`~presence.db.engine.SQLITE_WAL_AUTOCHECKPOINT_PAGES` pages).

    A transaction gets ``timeout`` seconds from when the thread starts it. Waiting for
    the thread to be free (behind a transaction whose caller gave up, still running to
    its end) is bounded by ``timeout`` too; one that never started is then dropped, so
    what was answered "not committed" is not committed later by surprise.
    """

    def __init__(self, path: Path, *, synchronous: str, timeout: float) -> None:
        self._path = path
        self._synchronous = synchronous
        self._timeout = timeout
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="presence-sqlite-writer")
        #: Used only on the writer thread.
        self._connection: sqlite3.Connection | None = None
        self._closed = False

    async def start(self) -> None:
        """Open the writer's connection now, before the service's other connections are busy.

        The first connections to a database file set up its WAL index; the writer opening
        it for its first commit while retention's first pass was deleting on another
        connection was seen, rarely, to end in "database is locked" and "disk I/O error".
        """
        try:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._connect)
        except sqlite3.Error as error:
            log.warning("cannot open the SQLite database yet (%s); the first commit will try again", error)

    async def run(self, statements: Sequence[Step]) -> None:
        await self._on_thread(self._transaction, statements)

    async def probe(self) -> None:
        await self._on_thread(self._probe_transaction, ())

    async def _on_thread(self, transaction: Callable[[Sequence[Step]], None], statements: Sequence[Step]) -> None:
        # If the caller stops waiting (a commit timeout), the transaction still runs to its end
        # on the thread, and the next one waits for it: the thread is never abandoned mid-write.
        loop = asyncio.get_running_loop()
        job = _Job(loop)
        finished = loop.run_in_executor(self._executor, self._run_job, job, transaction, statements)
        try:
            async with asyncio.timeout(self._timeout):
                await asyncio.shield(job.started)
        except TimeoutError:
            if job.abandon():
                raise TimeoutError("the SQLite writer was busy with an earlier transaction") from None
        async with asyncio.timeout(self._timeout):
            await finished

    def _run_job(self, job: _Job, transaction: Callable[[Sequence[Step]], None], statements: Sequence[Step]) -> None:
        if job.begin():
            transaction(statements)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            # Behind any transaction still on the thread: a connection is never closed mid-write.
            await asyncio.get_running_loop().run_in_executor(self._executor, self._disconnect)
        finally:
            self._executor.shutdown(wait=False)

    def _transaction(self, statements: Sequence[Step]) -> None:
        """One transaction, on the writer thread."""
        connection = self._connection or self._connect()
        try:
            connection.execute("BEGIN IMMEDIATE")
            execute_sqlite(connection, statements)
            connection.execute("COMMIT")
        except BaseException as error:
            self._after_failure(connection, error)
            raise

    def _probe_transaction(self, _statements: Sequence[Step]) -> None:
        """On the writer thread: a commit that writes a page (an empty one writes nothing, and
        would succeed on a full disk), and changes nothing: ``user_version`` set to itself."""
        connection = self._connection or self._connect()
        try:
            connection.execute("BEGIN IMMEDIATE")
            (version,) = connection.execute("PRAGMA user_version").fetchone()
            connection.execute(f"PRAGMA user_version = {int(version)}")  # PRAGMA takes no parameters
            connection.execute("COMMIT")
        except BaseException as error:
            self._after_failure(connection, error)
            raise

    def _after_failure(self, connection: sqlite3.Connection, error: BaseException) -> None:
        if connection.in_transaction:
            try:
                connection.execute("ROLLBACK")
            except sqlite3.Error:
                self._disconnect()  # a connection that cannot roll back is not used again
                return
        if needs_new_connection(error):
            # Opened while the file was read-only, it stays read-only when the file is writable
            # again; after a full disk or an I/O error it is not trusted either: open it afresh.
            self._disconnect()

    def _connect(self) -> sqlite3.Connection:
        connection = open_sqlite_writer(self._path, self._synchronous, any_thread=True)
        self._connection = connection
        return connection

    def _disconnect(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(sqlite3.Error):
                self._connection.close()
            self._connection = None


class _Job:
    """Whether a transaction handed to the writer thread has started, or was given up before it did."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self._state: str = "waiting"
        #: Set (on the loop) when the thread starts the transaction.
        self.started: asyncio.Future[None] = loop.create_future()

    def begin(self) -> bool:
        """On the thread: start, unless the caller has given up; ``False`` then."""
        with self._lock:
            if self._state == "abandoned":
                return False
            self._state = "started"
        self._loop.call_soon_threadsafe(_set_started, self.started)
        return True

    def abandon(self) -> bool:
        """On the loop: give up on a transaction not yet started; ``False`` if it already has."""
        with self._lock:
            if self._state == "started":
                return False
            self._state = "abandoned"
            return True


def _set_started(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
