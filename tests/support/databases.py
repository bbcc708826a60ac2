"""Fresh databases for tests, on the schema the migrations make.

Each backend migrates one template database once per test run; every test (and
every hypothesis example that asks) gets a copy of it: a file copy for SQLite,
``CREATE DATABASE … TEMPLATE`` for PostgreSQL. No test ever calls ``create_all``.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import uuid
from pathlib import Path
from typing import Protocol

import asyncpg
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import create_async_engine

from presence.db.schema import upgrade
from tests.support.descriptors import descriptors_of, sqlite_descriptors

#: Where the PostgreSQL tests run; a server at this URL must accept CREATE DATABASE.
POSTGRES_URL_VARIABLE = "PRESENCE_TEST_POSTGRES_URL"
#: Set to 1 (as .ci/run does) to fail, rather than skip, when PostgreSQL is unreachable.
REQUIRE_POSTGRES_VARIABLE = "PRESENCE_TEST_REQUIRE_POSTGRES"
DEFAULT_POSTGRES_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"


class Databases(Protocol):
    backend: str

    async def fresh(self) -> str: ...

    async def drop(self, url: str) -> None: ...

    async def close(self) -> None: ...


async def migrate(url: str) -> None:
    engine = create_async_engine(url)
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()


class SqliteDatabases:
    backend = "sqlite"

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._template = directory / "template.db"
        self._counter = itertools.count()

    async def prepare(self) -> None:
        await migrate(self.url_of(self._template))

    @staticmethod
    def url_of(path: Path) -> str:
        return f"sqlite+aiosqlite:///{path}"

    async def fresh(self) -> str:
        path = self._directory / f"test-{next(self._counter)}.db"
        shutil.copyfile(self._template, path)
        return self.url_of(path)

    async def drop(self, url: str) -> None:
        path = Path(make_url(url).database or "")
        held = descriptors_of(path, sqlite_descriptors().values())
        if held:
            # Unlinking a file an app still has open hides that the app outlived its database.
            raise AssertionError(
                f"{path.name} is dropped while this process still has it open ({', '.join(held)}): "
                "close the app or engine that uses it before its database is dropped"
            )
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)  # noqa: ASYNC240 - a local unlink, instant

    async def close(self) -> None:
        pass


class PostgresDatabases:
    backend = "postgresql"

    def __init__(self, server_url: str) -> None:
        self._server = make_url(server_url)
        self._prefix = f"presence_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        self._template = f"{self._prefix}_template"
        self._counter = itertools.count()

    def url_of(self, database: str) -> str:
        return self._server.set(database=database).render_as_string(hide_password=False)

    async def _admin(self) -> asyncpg.Connection:
        return await connect_postgres(self._server)

    async def prepare(self) -> None:
        admin = await self._admin()
        try:
            await admin.execute(f'CREATE DATABASE "{self._template}"')
        finally:
            await admin.close()
        await migrate(self.url_of(self._template))

    async def fresh(self) -> str:
        name = f"{self._prefix}_{next(self._counter)}"
        admin = await self._admin()
        try:
            await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{self._template}"')
        finally:
            await admin.close()
        return self.url_of(name)

    async def drop(self, url: str) -> None:
        admin = await self._admin()
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)')
        finally:
            await admin.close()

    async def close(self) -> None:
        await self.drop(self.url_of(self._template))


async def connect_postgres(url: URL) -> asyncpg.Connection:
    """A plain asyncpg connection to the server and database of an SQLAlchemy URL."""
    return await asyncpg.connect(
        host=url.host, port=url.port, user=url.username, password=url.password, database=url.database, timeout=5
    )


def postgres_server_url() -> str:
    return os.environ.get(POSTGRES_URL_VARIABLE) or DEFAULT_POSTGRES_URL


def postgres_required() -> bool:
    return os.environ.get(REQUIRE_POSTGRES_VARIABLE, "") not in ("", "0")


async def postgres_unreachable_reason(url: str) -> str | None:
    """Why PostgreSQL at ``url`` cannot be used for tests, or ``None`` if it can."""
    try:
        connection = await asyncio.wait_for(connect_postgres(make_url(url)), timeout=5)
    except (OSError, TimeoutError, asyncpg.PostgresError) as error:
        return f"{type(error).__name__}: {error}"
    await connection.close()
    return None
