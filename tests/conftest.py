"""Fixtures: a fresh migrated database per test, on every backend, and a client for the app."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from presence.settings import Settings
from tests.support.api import Api, make_settings, serving
from tests.support.databases import (
    POSTGRES_URL_VARIABLE,
    REQUIRE_POSTGRES_VARIABLE,
    Databases,
    PostgresDatabases,
    SqliteDatabases,
    postgres_required,
    postgres_server_url,
    postgres_unreachable_reason,
)
from tests.support.descriptors import sqlite_descriptors


@pytest.fixture(autouse=True)
def _no_sqlite_file_left_open() -> Iterator[None]:
    """Fail a test that leaves a connection to an SQLite file open after its teardown.

    Set up before, so torn down after, every other function-scoped fixture. A descriptor
    that only the cyclic collector would close is a leak too: it stays open as long as
    the collector does not run, holding a file the test may already have deleted.
    """
    before = sqlite_descriptors()
    yield
    left = sorted(target for fd, target in sqlite_descriptors().items() if before.get(fd) != target)
    if left:
        gc.collect()
        collected = not any(target in left for target in sqlite_descriptors().values())
        how = "closed only by the garbage collector" if collected else "still open after a collection"
        pytest.fail(f"the test left SQLite files open ({how}): {', '.join(left)}")


@pytest.fixture(scope="session")
def sqlite_databases(tmp_path_factory: pytest.TempPathFactory) -> Databases:
    databases = SqliteDatabases(Path(tmp_path_factory.mktemp("sqlite")))
    asyncio.run(databases.prepare())
    return databases


@pytest.fixture(scope="session")
def postgres_databases() -> Iterator[Databases]:
    url = postgres_server_url()
    reason = asyncio.run(postgres_unreachable_reason(url))
    if reason is not None:
        message = f"PostgreSQL at {url} is unreachable ({reason}); set {POSTGRES_URL_VARIABLE} to run these tests"
        if postgres_required():
            pytest.fail(f"{message}. {REQUIRE_POSTGRES_VARIABLE} is set, so this is a failure.")
        pytest.skip(message)
    databases = PostgresDatabases(url)
    asyncio.run(databases.prepare())
    yield databases
    asyncio.run(databases.close())


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def databases(request: pytest.FixtureRequest) -> Databases:
    """The template databases of one backend; every test that uses it runs on both."""
    return request.getfixturevalue(f"{request.param}_databases")  # type: ignore[no-any-return]


@pytest.fixture
async def database_url(databases: Databases) -> AsyncIterator[str]:
    url = await databases.fresh()
    yield url
    await databases.drop(url)


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(database_url)


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[TestClient]:  # type: ignore[type-arg]
    # The app is closed here, before its database is dropped: a fixture is torn down
    # before the fixtures it depends on. Through aiohttp_client, set up before the
    # database, it was closed after the drop, on files already unlinked.
    async with serving(settings) as client:
        yield client


@pytest.fixture
def api(client: TestClient) -> Api:  # type: ignore[type-arg]
    return Api(client)
