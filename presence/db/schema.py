"""The schema, made only by the Alembic migrations, driven from inside the event loop.

The migrations run on a connection we hand to Alembic (``config.attributes``),
so ``serve``, ``migrate`` and the tests all migrate in their own event loop. On
PostgreSQL a transaction-scoped advisory lock serialises replicas that start at
once against an empty database: one migrates, the others wait and find it done.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncEngine

import presence

#: pg_advisory_xact_lock key: the bytes of "presence" as an integer.
MIGRATION_LOCK_KEY: Final = int.from_bytes(b"presence", "big") & 0x7FFF_FFFF_FFFF_FFFF


def migrations_directory() -> Path:
    """Where the revisions are: inside an installed wheel, or at the top of a checkout."""
    package = Path(presence.__file__).resolve().parent
    for candidate in (package / "migrations", package.parent / "migrations"):
        if (candidate / "env.py").is_file():
            return candidate
    raise FileNotFoundError("the Alembic migrations are not installed with this package")


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_directory()))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


@dataclass(frozen=True, slots=True)
class Migration:
    """What :func:`upgrade` did: the revision it found (``None``: an empty database) and the one it left."""

    before: str | None
    after: str | None

    def describe(self) -> str:
        if self.before == self.after:
            return f"schema is current at revision {self.after}"
        if self.before is None:
            return f"created the schema at revision {self.after}"
        return f"upgraded the schema from revision {self.before} to {self.after}"


async def upgrade(engine: AsyncEngine, revision: str = "head") -> Migration:
    async with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            await connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        return await connection.run_sync(lambda sync: _upgrade(sync, revision))


def _upgrade(connection: Connection, revision: str) -> Migration:
    # Read under the lock, in the migration's transaction: what this process found, not a neighbour.
    before = MigrationContext.configure(connection).get_current_revision()
    command.upgrade(alembic_config(connection), revision)
    return Migration(before, MigrationContext.configure(connection).get_current_revision())


async def downgrade(engine: AsyncEngine, revision: str) -> None:
    async with engine.begin() as connection:
        await connection.run_sync(lambda sync: command.downgrade(alembic_config(sync), revision))


async def current_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as connection:
        return await connection.run_sync(lambda sync: MigrationContext.configure(sync).get_current_revision())
