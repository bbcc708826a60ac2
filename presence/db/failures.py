"""What a database error means, said once for every caller.

Three kinds matter to the service, and each caller answers them its own way
(``/hook`` with ``503`` or ``422``, the query API with ``503``, the commands
with exit code 3):

- *refused*: the database refused the data itself (SQLSTATE class 22 or 23, or
  SQLite's integrity and data errors); the same statement will fail again.
- *transient*: a peer won a race (serialization failure, deadlock); the same
  transaction, run again, may well commit. The transaction layer retries these.
- *unavailable*: the database cannot be reached or used now (connection lost or
  refused, a timeout, a locked, read-only or full SQLite file); retry later.

Anything else (a ``ProgrammingError``: SQL that does not fit the schema) is not
the database failing but a bug, and is left to propagate. One such error is read
apart (:func:`is_schema_missing`): a table or column the code needs is not there,
which on a schema at the newest revision cannot happen (the tests run on it), so
it means the schema is behind the code (``serve --no-migrate`` before ``presence
migrate`` has run): the query API answers ``503 not_ready`` until it has.

Errors come wrapped by SQLAlchemy (``DBAPIError``, the driver's error in ``orig``),
but not always: what fails while SQLAlchemy sets up a new connection (asyncpg's
codec set-up in the pool's ``connect`` hook) reaches us as asyncpg raised it, and
so does the plain ``OSError`` of a socket that was reset. Both are read the same way.
"""

from __future__ import annotations

import sqlite3
from enum import Enum

import asyncpg
from sqlalchemy import exc


class Failure(Enum):
    REFUSED = "refused"
    TRANSIENT = "transient"
    UNAVAILABLE = "unavailable"


#: serialization_failure and deadlock_detected: a peer won a race; retrying is safe.
TRANSIENT_SQLSTATES = frozenset({"40001", "40P01"})
#: data_exception and integrity_constraint_violation: the data, not the database.
_REFUSED_CLASSES = frozenset({"22", "23"})

#: Errors that say nothing of the data: the database, its connection or its file failed.
_UNAVAILABLE_TYPES: tuple[type[BaseException], ...] = (
    exc.OperationalError,
    exc.InterfaceError,
    exc.DisconnectionError,
    exc.TimeoutError,  # the pool had no connection to give in time
    sqlite3.OperationalError,  # our own SQLite connections: locked, read-only, disk I/O
    sqlite3.InterfaceError,
    sqlite3.DatabaseError,  # a file that is not (or no longer) a database
    OSError,
    TimeoutError,
)


def classify(error: BaseException) -> Failure | None:
    """The kind of database failure ``error`` is, or ``None`` if it is not one."""
    if isinstance(error, exc.IntegrityError | exc.DataError | sqlite3.IntegrityError | sqlite3.DataError):
        return Failure.REFUSED
    if isinstance(error, exc.DBAPIError):
        return _classify_driver_error(sqlstate(error), bug=isinstance(error, exc.ProgrammingError))
    if isinstance(error, asyncpg.PostgresError):  # unwrapped: the server's answer, or a connection lost
        state = error.sqlstate if isinstance(error.sqlstate, str) else ""
        return _classify_driver_error(state, bug=isinstance(error, asyncpg.exceptions.SyntaxOrAccessError))
    if isinstance(error, asyncpg.InterfaceError | asyncpg.exceptions.InternalClientError):
        return Failure.UNAVAILABLE  # unwrapped: "connection is closed", a protocol out of step
    return Failure.UNAVAILABLE if isinstance(error, _UNAVAILABLE_TYPES) else None


def _classify_driver_error(state: str, *, bug: bool) -> Failure | None:
    if state in TRANSIENT_SQLSTATES:
        return Failure.TRANSIENT
    if state[:2] in _REFUSED_CLASSES:
        return Failure.REFUSED
    if bug:
        return None  # our SQL, or a schema it was not written for (a ProgrammingError)
    # Whatever else the driver reports (a connection terminated or reset, a server shutting
    # down, a statement timeout, a full disk) is the database failing, not the request.
    return Failure.UNAVAILABLE


#: SQLite's primary result codes that say the file, not the statement, failed: read-only,
#: I/O, full, cannot be opened. A connection that saw one is not trusted again (it may have
#: been opened read-only, and stays so after the file is writable again): it is reopened.
_SQLITE_FILE_FAILURES = frozenset(
    {sqlite3.SQLITE_READONLY, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_FULL, sqlite3.SQLITE_CANTOPEN}
)


#: undefined_table and undefined_column, and SQLite's words for them.
SCHEMA_MISSING_SQLSTATES = frozenset({"42P01", "42703"})


def is_schema_missing(error: BaseException) -> bool:
    """Whether ``error`` says a table or column the code uses does not exist: the schema is behind."""
    if isinstance(error, exc.DBAPIError):
        if sqlstate(error) in SCHEMA_MISSING_SQLSTATES:
            return True
        return error.orig is not None and is_schema_missing(error.orig)
    if isinstance(error, asyncpg.PostgresError):
        return error.sqlstate in SCHEMA_MISSING_SQLSTATES
    if isinstance(error, sqlite3.OperationalError):
        message = str(error)
        return message.startswith(("no such table", "no such column")) or " has no column named " in message
    return False


def needs_new_connection(error: BaseException) -> bool:
    """Whether the SQLite connection that raised ``error`` must be closed and opened again."""
    code = getattr(error, "sqlite_errorcode", None)
    return isinstance(error, sqlite3.Error) and isinstance(code, int) and code & 0xFF in _SQLITE_FILE_FAILURES


def is_unavailable(error: BaseException) -> bool:
    """Whether ``error`` means "the database cannot be used now; retry later"."""
    return classify(error) in (Failure.UNAVAILABLE, Failure.TRANSIENT)


def sqlstate(error: exc.DBAPIError) -> str:
    """The SQLSTATE the driver reported (asyncpg's ``sqlstate``, psycopg's ``pgcode``), or ``""``."""
    state = getattr(error.orig, "sqlstate", None) or getattr(error.orig, "pgcode", None)
    return state if isinstance(state, str) else ""


def describe(error: BaseException) -> str:
    """The database's own words, without the SQL or a URL: for one log or error line."""
    original = error.orig if isinstance(error, exc.DBAPIError) else None
    return f"{type(error).__name__}: {original if original is not None else error}"
