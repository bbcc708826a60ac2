"""``bench/bigdb.py`` seeds rows as intake writes them: the seeded users answer as users posted through ``/hook``."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import make_url

from bench import bigdb
from tests.support.api import API_AUTH, make_settings, serving
from tests.support.databases import Databases


async def test_the_seeded_big_database_answers_like_intake_s(sqlite_databases: Databases) -> None:
    url = await sqlite_databases.fresh()
    try:
        path = make_url(url).database
        assert path is not None
        assert bigdb.seed_sqlite(Path(path), 30) == 40  # one live session each, an ended one for every third
        async with serving(make_settings(url)) as client:
            response = await client.get(f"/users/{bigdb.uid(3)}/presence", headers={"Authorization": API_AUTH})
            assert response.status == 200, await response.text()
            body = await response.json()
            assert body["status"] == "online"
            assert [c["platform"] for c in body["connections"]] == [bigdb.PLATFORMS[0]]
            stats = await (await client.get("/stats", headers={"Authorization": API_AUTH})).json()
            assert stats["users_online"] == 30
    finally:
        await sqlite_databases.drop(url)
