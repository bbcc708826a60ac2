"""One definition of "the database failed": what each kind of error means to every caller."""

from __future__ import annotations

import sqlite3

import pytest
from sqlalchemy import exc

from presence.db.failures import Failure, classify, is_unavailable


class DriverError(Exception):
    """What asyncpg raises: an exception carrying the server's SQLSTATE."""

    def __init__(self, sqlstate: str) -> None:
        super().__init__(f"SQLSTATE {sqlstate}")
        self.sqlstate = sqlstate


def driver(kind: type[exc.DBAPIError], sqlstate: str = "") -> exc.DBAPIError:
    return kind("SELECT 1", {}, DriverError(sqlstate))


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (driver(exc.IntegrityError, "23505"), Failure.REFUSED),
        (driver(exc.DBAPIError, "22001"), Failure.REFUSED),  # value too long, as a generic driver error
        (sqlite3.IntegrityError("UNIQUE constraint failed"), Failure.REFUSED),
        (driver(exc.DBAPIError, "40001"), Failure.TRANSIENT),
        (driver(exc.OperationalError, "40P01"), Failure.TRANSIENT),
        (driver(exc.DBAPIError, "57P01"), Failure.UNAVAILABLE),  # terminated by the administrator
        (driver(exc.DBAPIError), Failure.UNAVAILABLE),  # a connection reset: no SQLSTATE at all
        (driver(exc.OperationalError), Failure.UNAVAILABLE),
        (driver(exc.InterfaceError), Failure.UNAVAILABLE),
        (exc.TimeoutError("pool exhausted"), Failure.UNAVAILABLE),
        (sqlite3.OperationalError("attempt to write a readonly database"), Failure.UNAVAILABLE),
        (sqlite3.DatabaseError("file is not a database"), Failure.UNAVAILABLE),
        (ConnectionRefusedError(111, "refused"), Failure.UNAVAILABLE),
        (TimeoutError(), Failure.UNAVAILABLE),
        (driver(exc.ProgrammingError, "42P01"), None),  # SQL that does not fit the schema: a bug
        (ValueError("a bug"), None),
        (KeyError("a bug"), None),
    ],
    ids=repr,
)
def test_every_caller_reads_a_failure_the_same_way(error: BaseException, expected: Failure | None) -> None:
    assert classify(error) is expected
    assert is_unavailable(error) == (expected in (Failure.UNAVAILABLE, Failure.TRANSIENT))
