"""The databases a run measures on: SQLite files in its directory, PostgreSQL databases it creates and drops."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import asyncpg


class Database(Protocol):
    url: str

    def scalar(self, sql: str) -> int: ...

    def column(self, sql: str, limit: int) -> list[Any]: ...

    def backend_pids(self) -> list[int]: ...


@dataclass(slots=True)
class SqliteDatabase:
    path: Path
    url: str = ""

    def __post_init__(self) -> None:
        self.url = f"sqlite+aiosqlite:///{self.path}"

    def scalar(self, sql: str) -> int:
        with contextlib.closing(sqlite3.connect(self.path, timeout=30)) as connection:
            value: int = connection.execute(sql).fetchone()[0]
            return value

    def column(self, sql: str, limit: int) -> list[Any]:
        with contextlib.closing(sqlite3.connect(self.path, timeout=30)) as connection:
            return [row[0] for row in connection.execute(sql).fetchmany(limit)]

    def backend_pids(self) -> list[int]:
        return []  # SQLite runs inside the server process


@dataclass(slots=True)
class PostgresDatabase:
    """A database of its own on the PostgreSQL server, made by :meth:`create` and dropped by :meth:`drop`."""

    server_dsn: str
    name: str = field(default_factory=lambda: f"presence_bench_{os.getpid()}_{secrets.token_hex(3)}")
    url: str = ""

    def __post_init__(self) -> None:
        base = self.server_dsn.rsplit("/", 1)[0]
        self.url = f"{base}/{self.name}".replace("postgresql://", "postgresql+asyncpg://", 1)

    def _dsn(self, database: str | None = None) -> str:
        if database is None:
            return self.server_dsn
        return f"{self.server_dsn.rsplit('/', 1)[0]}/{database}"

    async def _execute(self, sql: str, database: str | None = None) -> None:
        connection = await asyncpg.connect(self._dsn(database), timeout=10)
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    def create(self) -> None:
        asyncio.run(self._execute(f'CREATE DATABASE "{self.name}"'))

    def drop(self) -> None:
        asyncio.run(self._execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))

    def scalar(self, sql: str) -> int:
        async def fetch() -> int:
            connection = await asyncpg.connect(self._dsn(self.name), timeout=10)
            try:
                value: int = await connection.fetchval(sql)
                return value
            finally:
                await connection.close()

        return asyncio.run(fetch())

    def column(self, sql: str, limit: int) -> list[Any]:
        async def fetch() -> list[Any]:
            connection = await asyncpg.connect(self._dsn(self.name), timeout=10)
            try:
                return [row[0] for row in await connection.fetch(sql)][:limit]
            finally:
                await connection.close()

        return asyncio.run(fetch())

    def backend_pids(self) -> list[int]:
        """The server processes of the connections open to this database now (the service's pool)."""

        async def fetch() -> list[int]:
            connection = await asyncpg.connect(self._dsn(self.name), timeout=10)
            try:
                rows = await connection.fetch(
                    "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()", self.name
                )
                return [int(row["pid"]) for row in rows]
            finally:
                await connection.close()

        return asyncio.run(fetch())

    @staticmethod
    def server_version(server_dsn: str) -> str:
        async def fetch() -> str:
            connection = await asyncpg.connect(server_dsn, timeout=5)
            try:
                value: str = await connection.fetchval("SHOW server_version")
                return value
            finally:
                await connection.close()

        return asyncio.run(fetch())


def settled_count(database: Database, table: str) -> int:
    """The row count once it has stopped moving (requests still in flight have committed)."""
    sql = {"inbox_event": "SELECT count(*) FROM inbox_event"}[table]
    last, same = -1, 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        count = database.scalar(sql)
        same = same + 1 if count == last else 0
        if same >= 3:
            return count
        last = count
        time.sleep(0.3)
    return last


def read_through(path: Path) -> None:
    """Read a file once, so that it starts in the page cache.

    L1 and L2 compare index lookups in a small and a big database. Some virtual
    machines (this project's among them) give the page cache back quickly, so the
    big database, seeded minutes earlier, would otherwise be read from the virtual
    disk and the row would measure that disk. Both rows are treated alike.
    """
    with path.open("rb") as file:
        while file.read(1 << 20):
            pass
