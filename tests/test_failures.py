"""One definition of "the database failed": what each kind of error means to every caller."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable

import asyncpg
import pytest
from sqlalchemy import exc
from sqlalchemy.engine import URL, make_url

from presence.db.failures import Failure, classify, is_unavailable
from tests.support.databases import Databases, connect_postgres, postgres_server_url
from tests.support.tcp_proxy import TcpProxy


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
        # Unwrapped by SQLAlchemy, as its pool's connect hook lets asyncpg's errors out:
        (asyncpg.exceptions.UniqueViolationError("duplicate key"), Failure.REFUSED),
        (asyncpg.exceptions.SerializationError("could not serialize"), Failure.TRANSIENT),
        (asyncpg.exceptions.AdminShutdownError("terminating connection"), Failure.UNAVAILABLE),
        (asyncpg.exceptions.CannotConnectNowError("the database system is starting up"), Failure.UNAVAILABLE),
        (asyncpg.exceptions.TooManyConnectionsError("too many clients"), Failure.UNAVAILABLE),
        (asyncpg.exceptions.UndefinedTableError("no such table"), None),
        (ValueError("a bug"), None),
        (KeyError("a bug"), None),
    ],
    ids=repr,
)
def test_every_caller_reads_a_failure_the_same_way(error: BaseException, expected: Failure | None) -> None:
    assert classify(error) is expected
    assert is_unavailable(error) == (expected in (Failure.UNAVAILABLE, Failure.TRANSIENT))


async def _lost_connection_errors(admin: asyncpg.Connection, server: URL) -> dict[str, BaseException]:
    """What asyncpg raises, as it raises it (not wrapped by SQLAlchemy), when its connection goes away.

    Not wrapped is how the pool's ``connect`` hook (asyncpg's codec set-up on a new connection) lets
    them out; ``tests/test_outage.py`` puts the service through the same terminations and cuts.
    """
    errors: dict[str, BaseException] = {}

    async def caught(name: str, operation: Awaitable[object]) -> None:
        try:
            await operation
        except Exception as error:
            errors[name] = error
        else:
            raise AssertionError(f"{name}: the operation did not fail")

    async def terminate(connection: asyncpg.Connection) -> None:
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", connection.get_server_pid())

    connection = await connect_postgres(server)
    await terminate(connection)
    await asyncio.sleep(0.2)  # the server's goodbye arrives
    await caught("query after termination", connection.fetchval("SELECT 1"))
    await caught(
        "codec set-up after termination",
        connection.set_type_codec("json", encoder=str.encode, decoder=bytes.decode, schema="pg_catalog"),
    )

    connection = await connect_postgres(server)
    query = asyncio.ensure_future(connection.fetchval("SELECT pg_sleep(10)"))
    await asyncio.sleep(0.2)
    await terminate(connection)
    await caught("query running at termination", query)

    async with TcpProxy(server.host or "127.0.0.1", server.port or 5432) as proxy:
        through = make_url(proxy.url_for(server.render_as_string(hide_password=False)))
        connection = await connect_postgres(through)
        query = asyncio.ensure_future(connection.fetchval("SELECT pg_sleep(10)"))
        await asyncio.sleep(0.2)
        proxy.cut()
        await caught("query running at a cut", query)
        await caught("query after a cut", connection.fetchval("SELECT 1"))
        proxy.restore()
        proxy.drop_after_replies(1)
        await caught("connect through a dropped handshake", connect_postgres(through))
    return errors


@pytest.mark.postgres
async def test_what_asyncpg_raises_when_its_connection_goes_is_unavailable(postgres_databases: Databases) -> None:
    """§2, §5: terminated, reset or closed, unwrapped: unavailable (503), never a bug (500)."""
    server = make_url(postgres_server_url())
    admin = await connect_postgres(server)
    try:
        errors = await _lost_connection_errors(admin, server)
    finally:
        await admin.close()
    assert {name: classify(error) for name, error in errors.items()} == dict.fromkeys(errors, Failure.UNAVAILABLE), {
        name: repr(error) for name, error in errors.items()
    }
