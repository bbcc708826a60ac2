"""Intake never waits behind queries, and a query that runs too long is answered 503.

The query side is saturated the way slow queries would saturate it: every pooled connection of
the API blocked inside a real query (``GET /conversations/{id}/receipts``, held up by a lock that
another connection keeps on ``receipt_watermark``, a table connection events never write). A
webhook must still commit promptly, and the blocked queries end at ``PRESENCE_QUERY_TIMEOUT``
with a ``503``.

PostgreSQL only: on SQLite, commits have a writer thread and connection of their own, and a WAL
reader never waits for a lock, so neither side can hold the other there.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from presence.http.app import create_app
from presence.settings import Settings, SettingsError
from tests.support import payloads
from tests.support.api import Api, make_settings
from tests.support.databases import Databases

AT = 1_795_256_130_000
#: More blocked queries than the API's pool has connections, overflow included.
QUERIES = 8


@pytest.mark.postgres
async def test_webhooks_commit_promptly_while_slow_queries_hold_every_pooled_connection(
    postgres_databases: Databases,
) -> None:
    url = await postgres_databases.fresh()
    settings = make_settings(url).replace(db_pool_size=2, db_max_overflow=1, db_pool_timeout=4.0, query_timeout=2.0)
    locker = create_async_engine(url)
    try:
        async with TestClient(TestServer(create_app(settings))) as client:
            api = Api(client)
            await api.hook(payloads.message(10, "a_user_b", "a", receiver="b", sent_at=AT // 1000))
            async with locker.connect() as holder:
                await holder.execute(text("LOCK TABLE receipt_watermark IN ACCESS EXCLUSIVE MODE"))
                started = time.monotonic()
                queries = [asyncio.create_task(api.get("/conversations/a_user_b/receipts")) for _ in range(QUERIES)]
                await asyncio.sleep(0.3)  # every query has its connection, or waits for one
                session = payloads.device("s1", connected_at=AT)
                hook_started = time.monotonic()
                await api.hook(payloads.connection("u1", "connected", AT, session, connections=[session]))
                hook_seconds = time.monotonic() - hook_started
                assert not any(query.done() for query in queries), "the queries were not held by the lock"
                answers = await asyncio.gather(*queries)
                await holder.rollback()
            elapsed = time.monotonic() - started
            assert hook_seconds < 1.0, f"the webhook waited {hook_seconds:.2f} s behind the queries"
            for answer in answers:
                assert answer.status == 503, await answer.text()
                assert (await answer.json())["error"]["code"] == "unavailable"
            assert elapsed < 2.0 + settings.db_pool_timeout + 1.0
            presence = await api.presence("u1")
            assert presence is not None
            assert [c["session_id"] for c in presence["connections"]] == ["s1"]
            # Once the lock is gone, the same query answers.
            assert (await api.get("/conversations/a_user_b/receipts")).status == 200
    finally:
        await locker.dispose()
        await postgres_databases.drop(url)


@pytest.mark.parametrize(("raw", "seconds"), [(None, 5.0), ("0", 0.0), ("0.5", 0.5), ("30", 30.0)])
def test_the_query_timeout_is_a_setting(raw: str | None, seconds: float) -> None:
    environ = {} if raw is None else {"PRESENCE_QUERY_TIMEOUT": raw}
    assert Settings.from_env(environ).query_timeout == seconds


@pytest.mark.parametrize("raw", ["-1", "soon", "inf"])
def test_a_bad_query_timeout_is_refused_in_one_line(raw: str) -> None:
    with pytest.raises(SettingsError, match="PRESENCE_QUERY_TIMEOUT must be "):
        Settings.from_env({"PRESENCE_QUERY_TIMEOUT": raw})
