"""The application's assembly: one cleanup context per resource, disposed of in reverse, even after a failed start."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path

import pytest
from aiohttp import web
from alembic.util import CommandError

from presence.http.app import create_app
from presence.http.keys import COMMITTER, ENGINE
from tests.support.api import make_settings


def descriptors_of(path: Path) -> list[str]:
    """This process's open descriptors on ``path`` (or its WAL and shared-memory files)."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith(str(path)):
                found.append(target)
    return found


@pytest.fixture
def unknown_revision(tmp_path: Path) -> Path:
    """A database stamped with a revision this code does not know: migrating it fails."""
    path = tmp_path / "from-the-future.db"
    with contextlib.closing(sqlite3.connect(path)) as plain:
        plain.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)")
        plain.execute("INSERT INTO alembic_version VALUES ('ffffffffffff')")
        plain.commit()
    return path


async def test_a_failed_migration_at_start_leaves_no_connection_open(unknown_revision: Path) -> None:
    """As ``web.run_app`` does: start-up fails, then cleanup runs, and the engine it had made is disposed of."""
    app = create_app(make_settings(f"sqlite+aiosqlite:///{unknown_revision}"), migrate=True)
    runner = web.AppRunner(app)
    with pytest.raises(CommandError, match="ffffffffffff"):  # read from the database: it was opened
        await runner.setup()
    await runner.cleanup()
    assert descriptors_of(unknown_revision) == []
    assert COMMITTER not in app  # nothing after the engine was made


async def test_every_resource_is_made_at_start_and_released_at_stop(tmp_path: Path) -> None:
    path = tmp_path / "fresh.db"
    app = create_app(make_settings(f"sqlite+aiosqlite:///{path}"), migrate=True)
    runner = web.AppRunner(app)
    await runner.setup()
    assert ENGINE in app
    assert COMMITTER in app
    assert descriptors_of(path)
    await runner.cleanup()
    assert descriptors_of(path) == []
