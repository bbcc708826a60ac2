"""Fixtures: a fresh migrated database per test, on every backend, and a client for the app."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient
from sqlalchemy import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

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

#: The SQLite files of the module-scoped databases alive now: their app holds them open across tests.
_module_sqlite_files: set[str] = set()


@pytest.fixture(autouse=True)
def _no_sqlite_file_left_open() -> Iterator[None]:
    """Fail a test that leaves a connection to an SQLite file open after its teardown.

    Set up before, so torn down after, every other function-scoped fixture. A descriptor
    that only the cyclic collector would close is a leak too: it stays open as long as
    the collector does not run, holding a file the test may already have deleted.
    """
    before = sqlite_descriptors()
    yield
    left = sorted(
        target
        for fd, target in sqlite_descriptors().items()
        if before.get(fd) != target and not target.startswith(tuple(_module_sqlite_files))
    )
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


# --- shared by a module's tests -------------------------------------------------------------------
# For the many cases of one refusal (a body spoiled a field at a time) that each post one request
# and check that nothing changed: one database and one app per backend for the module, not one per
# case. Such a test is marked ``@pytest.mark.asyncio(loop_scope="module")`` to run in the module's
# event loop, where these live; it compares the database before and after its own request, so a
# case that wrongly changed something still fails, itself.


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def module_databases(request: pytest.FixtureRequest) -> Databases:
    """:func:`databases`, for a module's shared database."""
    return request.getfixturevalue(f"{request.param}_databases")  # type: ignore[no-any-return]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def module_database_url(module_databases: Databases) -> AsyncIterator[str]:
    databases = module_databases
    url = await databases.fresh()
    path = make_url(url).database if url.startswith("sqlite") else None
    if path:
        _module_sqlite_files.add(path)
    yield url
    await databases.drop(url)
    if path:
        _module_sqlite_files.discard(path)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def module_api(module_database_url: str) -> AsyncIterator[Api]:
    async with serving(make_settings(module_database_url)) as client:
        yield Api(client)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def module_engine(module_database_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on the module's database, for the tests' own reads (``dump``)."""
    engine = create_async_engine(module_database_url)
    yield engine
    await engine.dispose()
