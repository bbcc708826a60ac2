"""The async engine, with the per-backend settings that make a commit durable."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final, Literal

from sqlalchemy import event, exc
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from presence.db.failures import needs_new_connection
from presence.settings import Settings

#: How long an SQLite connection waits for another's write lock before giving up.
SQLITE_BUSY_TIMEOUT_MS: Final = 5000

#: WAL pages past which a commit of the intake writer checkpoints (SQLite's default is 1000).
#: At the benchmark's batches a commit writes about 400 pages, most of them the same hot pages
#: again (indexes keyed by uid): a checkpoint copies each distinct page once and syncs the
#: database file once, so checkpointing every 25 commits instead of every 2 or 3 copies and syncs
#: far less per event (``bench/floor.py --batch 64``: about 8 µs of SQLite's CPU per event less,
#: of about 55). The price: a WAL file of up to about 40 MB (reused, not truncated), and a longer
#: pause of the writer at each checkpoint.
SQLITE_WAL_AUTOCHECKPOINT_PAGES: Final = 10_000


#: What an engine is for. ``queries``: the query API's, each statement bounded by
#: ``query_timeout``. ``intake``: the group committer's (and migrations' and retention's), a pool
#: of its own so that no number of slow queries can hold a webhook. ``forward``: forwarding's, one
#: connection of its own, so that a slow app can hold neither. ``general``: a command's.
EngineRole = Literal["general", "queries", "intake", "forward"]


def create_engine(settings: Settings, *, role: EngineRole = "general") -> AsyncEngine:
    options: dict[str, Any] = {}
    if settings.database_url.startswith("postgresql"):
        connect_args: dict[str, Any] = {
            "timeout": settings.db_connect_timeout,
            "command_timeout": settings.db_command_timeout,
        }
        if role == "queries" and settings.query_timeout > 0:
            # The server cancels a query past it (SQLSTATE 57014, an unavailable database to
            # presence.db.failures: 503), time waiting for a lock included, and frees its connection.
            connect_args["server_settings"] = {"statement_timeout": str(max(1, round(settings.query_timeout * 1000)))}
        pool_size, overflow = settings.db_pool_size, settings.db_max_overflow
        if role == "intake":
            # One connection per commit in flight, and one for retention's batches.
            pool_size, overflow = settings.commit_concurrency + 1, 0
        elif role == "forward":
            pool_size, overflow = 1, 0  # one sender, one statement at a time
        # A pooled connection may have died with the server: check it before use, so the
        # service recovers from an outage by itself. A local SQLite file needs no such check, and
        # the check is a round trip per request (measured in docs/benchmarks.md, "Figures kept out of the code").
        # Intake's check is three round trips per commit (SQLAlchemy pings in a transaction of its
        # own): there a connection asyncpg already saw closed is replaced at checkout, for free, and
        # the commit's own BEGIN is the ping (presence.db.transactions.EngineTransactions).
        options.update(
            pool_pre_ping=role != "intake",
            pool_size=pool_size,
            max_overflow=overflow,
            pool_timeout=settings.db_pool_timeout,
            pool_recycle=settings.db_pool_recycle,
            connect_args=connect_args,
        )
    engine = create_async_engine(settings.database_url, **options)
    if engine.dialect.name == "sqlite":
        _configure_sqlite(engine, settings.sqlite_synchronous)
    elif role == "intake":
        event.listen(engine.sync_engine.pool, "checkout", _replace_closed)
    return engine


def _replace_closed(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """At checkout, a connection asyncpg knows closed (the server restarted, or terminated it) is replaced.

    No round trip: asyncpg notices a closed socket when the event loop reads it.
    """
    if dbapi_connection.driver_connection.is_closed():
        raise exc.DisconnectionError("the pooled connection was closed by the server")


def needs_own_intake_engine(settings: Settings) -> bool:
    """Whether intake gets an engine of its own: on PostgreSQL. SQLite's commits have a writer
    thread of their own already, and an in-memory database is only seen by its one engine."""
    return settings.database_url.startswith("postgresql")


def _configure_sqlite(engine: AsyncEngine, synchronous: str) -> None:
    # WAL lets readers run beside the one writer; synchronous=FULL fsyncs the WAL
    # on every commit, so an acknowledged event survives a power cut, not only a
    # killed process. Group commit pays that fsync once per batch.
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")  # first: the others may wait for a lock
        ensure_wal(cursor)
        cursor.execute(f"PRAGMA synchronous={synchronous}")  # one of a fixed set, checked by Settings
        cursor.close()

    @event.listens_for(engine.sync_engine, "handle_error")
    def _reopen_after_file_failures(context: ExceptionContext) -> None:
        # A connection opened on a read-only file stays read-only after the file is writable
        # again: have the pool replace it, as it replaces a PostgreSQL connection that was lost.
        if needs_new_connection(context.original_exception):
            context.is_disconnect = True


def ensure_wal(cursor: Any) -> None:
    """Put the database in WAL mode unless it is already (WAL is a property of the file).

    ``cursor``: a DB-API cursor, the stdlib's or SQLAlchemy's adapter of aiosqlite's.

    Asking for WAL again on every connection is not free: it takes a lock without
    waiting for it, while other connections of the service may be writing.
    """
    cursor.execute("PRAGMA journal_mode")
    (mode,) = cursor.fetchone()
    if str(mode).lower() != "wal":
        cursor.execute("PRAGMA journal_mode=WAL")


def writer_pragmas(synchronous: str) -> list[str]:
    """The intake writer's settings, run after ``busy_timeout`` and :func:`ensure_wal`.

    ``synchronous`` (``Settings.sqlite_synchronous``), in WAL mode:

    - ``FULL`` (the default): the WAL is synced at every commit, before the ``200``. A killed
      process loses nothing acknowledged, and nor does a power cut or a kernel crash (on a
      disk that honours flushes).
    - ``EXTRA``: the same as ``FULL`` in WAL mode (its extra sync, of the directory after a
      rollback journal is deleted, has no WAL counterpart; the WAL file's directory is synced
      when the file is first synced at every level).
    - ``NORMAL``: a commit is written to the WAL but not synced; the WAL is synced before each
      checkpoint. A killed process loses nothing acknowledged (the writes are the kernel's), but
      a power cut or a kernel crash can lose every commit since the last checkpoint's sync (up
      to :data:`SQLITE_WAL_AUTOCHECKPOINT_PAGES` pages of them); the database stays consistent.

    ``temp_store=MEMORY``: the statement journals (what an upsert's triggers touched, to undo
    one statement) stay in memory instead of spilling to files in ``/var/tmp`` that were written
    and never synced; they are never needed after a crash, when the whole transaction is gone.
    ``wal_autocheckpoint``: see :data:`SQLITE_WAL_AUTOCHECKPOINT_PAGES`.
    ``bench/floor.py`` opens its connection as the writer does (:func:`open_sqlite_writer`), so it
    measures what intake does.
    """
    return [
        f"PRAGMA synchronous={synchronous}",  # one of a fixed set, checked by Settings
        "PRAGMA temp_store=MEMORY",
        f"PRAGMA wal_autocheckpoint={SQLITE_WAL_AUTOCHECKPOINT_PAGES}",
    ]


def open_sqlite_writer(path: Path, synchronous: str, *, any_thread: bool = False) -> sqlite3.Connection:
    """The intake writer's connection (``SqliteTransactions``'; ``bench/floor.py``'s): :func:`open_sqlite`
    with ``busy_timeout``, then WAL, then :func:`writer_pragmas`."""
    connection = open_sqlite(path, [f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}"], any_thread=any_thread)
    try:
        ensure_wal(connection.cursor())
        for pragma in writer_pragmas(synchronous):
            connection.execute(pragma)
    except sqlite3.Error:
        connection.close()
        raise
    return connection


def sqlite_file(engine: AsyncEngine) -> Path | None:
    """The database file of an SQLite engine, for connections of our own beside the pool's.

    ``None`` for other backends, in-memory databases and URI filenames, which only the
    pool's connections can be trusted to open as the operator meant.
    """
    url = engine.url
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    if url.database.startswith("file:") or url.query.get("uri") or url.query.get("mode") == "memory":
        return None
    return Path(url.database).resolve()


def open_sqlite(path: Path, pragmas: Sequence[str], *, any_thread: bool = False) -> sqlite3.Connection:
    """A stdlib connection of our own to an existing SQLite file, in autocommit, ``pragmas`` run.

    ``mode=rw``: the schema is made by migrations, never by opening a file that is not there.
    """
    connection = sqlite3.connect(
        f"{path.as_uri()}?mode=rw", uri=True, isolation_level=None, check_same_thread=not any_thread
    )
    try:
        for pragma in pragmas:
            connection.execute(pragma)
    except sqlite3.Error:
        connection.close()
        raise
    return connection
