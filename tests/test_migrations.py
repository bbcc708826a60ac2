"""Contract §1: the schema is only ever made by Alembic migrations, and they agree with the models."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import Script, ScriptDirectory
from sqlalchemy import Column, Connection, Integer, MetaData, inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from presence.db.models import Base
from presence.db.schema import alembic_config, current_revision, downgrade, head_revision, upgrade
from tests.support import payloads
from tests.support.api import Api
from tests.support.databases import Databases
from tests.support.server import empty_database
from tests.support.state import dump

Schema = dict[str, dict[str, Any]]


#: Revisions that change one backend's schema only (0010: PostgreSQL's tally trigger; SQLite has one writer).
ONLY_ON = {"0010": "postgresql"}


def revisions_in_order() -> list[Script]:
    scripts = ScriptDirectory.from_config(alembic_config())
    return list(reversed(list(scripts.walk_revisions("base", "heads"))))


def schema_of(connection: Connection) -> Schema:
    """What the migrations made, as reflection sees it: tables, columns, keys, indexes, constraints.

    Alembic's own ``alembic_version`` is left out: it stays, empty, after a downgrade to base.
    """
    inspector = inspect(connection)
    schema: Schema = {}
    for table in sorted(set(inspector.get_table_names()) - {"alembic_version"}):
        schema[table] = {
            "columns": [
                (c["name"], str(c["type"]), c["nullable"], c.get("autoincrement")) for c in inspector.get_columns(table)
            ],
            "primary_key": inspector.get_pk_constraint(table),
            "indexes": sorted(
                (i["name"] or "", tuple(i["column_names"]), bool(i["unique"])) for i in inspector.get_indexes(table)
            ),
            "unique": sorted(
                (u["name"] or "", tuple(u["column_names"])) for u in inspector.get_unique_constraints(table)
            ),
            "checks": sorted((c["name"] or "", c["sqltext"]) for c in inspector.get_check_constraints(table)),
        }
    # Triggers and their functions are schema too (the tallies', read_through's): an exact revert covers them.
    if connection.dialect.name == "postgresql":
        code = connection.execute(
            text(
                "SELECT 'function ' || p.proname, p.prosrc FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
                " WHERE n.nspname = current_schema()"
                " UNION ALL SELECT 'trigger ' || t.tgname, pg_get_triggerdef(t.oid) FROM pg_trigger t"
                " JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = current_schema() AND NOT t.tgisinternal"
            )
        )
    else:
        code = connection.execute(text("SELECT 'trigger ' || name, sql FROM sqlite_master WHERE type = 'trigger'"))
    routines = {str(name): str(source) for name, source in code}
    if routines:
        schema["(triggers and functions)"] = routines
    return schema


async def snapshot(engine: AsyncEngine) -> Schema:
    async with engine.connect() as connection:
        return await connection.run_sync(schema_of)


def differences(connection: Connection, metadata: MetaData) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True, "compare_server_default": True})
    return list(compare_metadata(context, metadata))


async def differences_from(database_url: str, metadata: MetaData) -> list[Any]:
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(lambda sync: differences(sync, metadata))
    finally:
        await engine.dispose()


@pytest.fixture
async def empty_engine(databases: Databases, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    async with empty_database(databases.backend, tmp_path) as url:
        engine = create_async_engine(url)
        try:
            yield engine
        finally:
            await engine.dispose()


def test_the_revisions_form_one_line() -> None:
    """§1: one head, every revision reachable from base; the stairway below walks all of them."""
    scripts = ScriptDirectory.from_config(alembic_config())
    revisions = revisions_in_order()
    assert len(scripts.get_heads()) == 1
    assert revisions, "no migrations were found"
    assert revisions[0].down_revision is None
    assert revisions[-1].revision == head_revision()
    for earlier, later in itertools.pairwise(revisions):
        assert later.down_revision == earlier.revision


async def test_stairway_every_revision_upgrades_downgrades_and_upgrades_again(empty_engine: AsyncEngine) -> None:
    """§1: each migration, from an empty database, applies, reverts exactly, and applies again."""
    assert await snapshot(empty_engine) == {}
    assert await current_revision(empty_engine) is None

    for script in revisions_in_order():
        previous = script.down_revision
        assert previous is None or isinstance(previous, str), "merge revisions need their own stairway"
        before = await snapshot(empty_engine)

        await upgrade(empty_engine, script.revision)
        assert await current_revision(empty_engine) == script.revision
        after = await snapshot(empty_engine)
        if ONLY_ON.get(script.revision, empty_engine.dialect.name) == empty_engine.dialect.name:
            assert after != before, f"revision {script.revision} changed nothing"

        await downgrade(empty_engine, previous or "base")
        assert await current_revision(empty_engine) == previous
        assert await snapshot(empty_engine) == before, f"downgrade of {script.revision} did not undo it"

        await upgrade(empty_engine, script.revision)
        assert await current_revision(empty_engine) == script.revision
        assert await snapshot(empty_engine) == after, f"{script.revision} applied twice differs"

    assert await current_revision(empty_engine) == head_revision()
    await downgrade(empty_engine, "base")
    assert await snapshot(empty_engine) == {}
    assert await current_revision(empty_engine) is None


async def test_the_models_match_the_migrations(database_url: str) -> None:
    """§1: the SQL model and the migrated schema agree: autogenerate finds nothing to do."""
    assert await differences_from(database_url, Base.metadata) == []


async def test_a_model_change_without_a_migration_is_noticed(database_url: str) -> None:
    """§1: the comparison above is not blind: a column the migrations lack is reported."""
    drifted = MetaData(naming_convention=Base.metadata.naming_convention)
    for table in Base.metadata.sorted_tables:
        table.to_metadata(drifted)
    drifted.tables["user_presence"].append_column(Column("mood", Integer, nullable=True))

    found = await differences_from(database_url, drifted)

    assert [(d[0], d[2], d[3].name) for d in found if isinstance(d, tuple)] == [
        ("add_column", "user_presence", "mood")
    ], found


async def test_revision_0002_backfills_what_intake_would_have_written(api: Api, database_url: str) -> None:
    """0002's data migration: watermarks and message retention times, derived from 0001's rows, equal intake's."""
    group = "group_team"
    await api.hook(payloads.message(9, group, "zoe", receiver_type="group", receiver="team", sent_at=1_795_256_100))
    for kind, message_id, reader, at in [
        ("delivered", 10, "amy", 1_795_256_120),
        ("read", 9, "amy", 1_795_256_110),
        ("read", 10, "amy", 1_795_256_130),
        ("read", 10, "bea", 1_795_256_125),
        ("delivered", 10, "bea", 1_795_256_126),
        ("delivered", 99, "bea", 1_795_256_140),
    ]:
        await api.hook(
            payloads.receipt(
                kind, message_id, reader=reader, message_sender="zoe", at=at, receiver="team", receiver_type="group"
            )
        )
    written_by_intake = await dump(database_url)
    assert written_by_intake["receipt_watermark"], "the history must leave watermarks to backfill"

    engine = create_async_engine(database_url)
    try:
        await downgrade(engine, "0001")
        await upgrade(engine)
    finally:
        await engine.dispose()

    backfilled = await dump(database_url)
    # 0003 gives rows it finds the time of the migration as their reception time: compare the rest.
    for table in ("receipt_watermark", "message"):
        assert without_reception(table, backfilled) == without_reception(table, written_by_intake), table


def without_reception(table: str, tables: dict[str, list[tuple[Any, ...]]]) -> list[tuple[Any, ...]]:
    position = [column.name for column in Base.metadata.tables[table].columns].index("received_at")
    return [row[:position] + row[position + 1 :] for row in tables[table]]


async def test_revision_0005_backfills_the_status_dating_key_as_intake_would_have(api: Api, database_url: str) -> None:
    """0005: every event before it was a legacy one, which dates its status: ``status_updated_key`` = ``status_key``."""
    for uid, kind, at in [("amy", "connected", 1_795_256_130_000), ("bea", "disconnected", 1_795_256_140_000)]:
        session = payloads.device(f"{uid}-1", connected_at=at)
        await api.hook(
            payloads.connection(uid, kind, at, session, connections=[session] if kind == "connected" else [])
        )
    written_by_intake = (await dump(database_url))["user_presence"]
    assert len(written_by_intake) == 2

    engine = create_async_engine(database_url)
    try:
        await downgrade(engine, "0004")
        await upgrade(engine)
    finally:
        await engine.dispose()

    assert (await dump(database_url))["user_presence"] == written_by_intake


async def test_revision_0006_starts_the_change_feed_empty_and_intake_counts_from_1(api: Api, database_url: str) -> None:
    """0006: the change tables, and the one ``change_log`` row at 0; intake numbers from 1 after it."""
    engine = create_async_engine(database_url)
    try:
        await downgrade(engine, "0005")
        assert "change" not in await snapshot(engine)
        await upgrade(engine)
    finally:
        await engine.dispose()
    tables = await dump(database_url)
    assert (tables["change"], tables["change_log"]) == ([], [(1, 0, 0)])
    session = payloads.device("s1", connected_at=1_795_256_130_000)
    await api.hook(payloads.connection("amy", "connected", 1_795_256_130_000, session, connections=[session]))
    tables = await dump(database_url)
    assert [row[0] for row in tables["change"]] == [1]
    assert tables["change_log"] == [(1, 1, 0)]


async def test_revision_0008_backfills_tallies_and_participants_as_intake_would_have(
    api: Api, database_url: str
) -> None:
    """0008: the tallies and participants it derives from the rows stored before it equal intake's.

    (Every party here sent or read: one named only as a receiver appears after a rebuild.)
    """
    for body in [
        payloads.message(1, "alice_user_zed", "zed", receiver="alice"),
        payloads.message_sent(64, "alice_user_zed", "zed", receiver="alice"),
        payloads.message_sent(70, "alice_user_zed", "alice", receiver="zed"),
        payloads.message_deleted(70, "alice_user_zed", "alice", deleted_at=1_700_000_100),
        payloads.receipt("read", 64, reader="alice", message_sender="zed", at=1_700_000_050, receiver="zed"),
        payloads.message(4096, "group_team", "bob", receiver="team", receiver_type="group"),
        payloads.receipt(
            "read", 4096, reader="carol", message_sender=None, at=1_700_000_060, receiver="team", receiver_type="group"
        ),
    ]:
        await api.hook(body)
    written_by_intake = await dump(database_url)
    assert written_by_intake["message_tally"], "the history must leave tallies to backfill"
    previous = ScriptDirectory.from_config(alembic_config()).get_revision("0008").down_revision
    assert isinstance(previous, str)

    engine = create_async_engine(database_url)
    try:
        await downgrade(engine, previous)
        assert "message_tally" not in await snapshot(engine)
        await upgrade(engine)
    finally:
        await engine.dispose()

    backfilled = await dump(database_url)
    for table in ("message_tally", "conversation_participant"):
        assert backfilled[table] == written_by_intake[table], table


async def test_revision_0009_fills_read_through_as_its_triggers_keep_it(api: Api, database_url: str) -> None:
    """0009: each member's and participant's read_through is its read watermark (or -1), whether the
    triggers kept it through intake (a member row before or after its watermark) or the upgrade filled it."""
    for body in [
        payloads.receipt(
            "read", 4096, reader="carol", message_sender=None, at=1_700_000_060, receiver="team", receiver_type="group"
        ),
        payloads.membership("group_member_joined", "team", ["bob", "carol", "dave"], updated_at=1_700_000_000),
        payloads.message(4096, "group_team", "erin", receiver="team", receiver_type="group"),
        payloads.message(4097, "group_team", "erin", receiver="team", receiver_type="group"),
        payloads.receipt(
            "read", 4097, reader="erin", message_sender=None, at=1_700_000_070, receiver="team", receiver_type="group"
        ),
        payloads.receipt(
            "read", 4097, reader="bob", message_sender=None, at=1_700_000_080, receiver="team", receiver_type="group"
        ),
    ]:
        await api.hook(body)
    written_by_intake = await dump(database_url)
    read_through = {(row[1], row[-1]) for row in written_by_intake["group_member"]}
    assert read_through == {("bob", 4097), ("carol", 4096), ("dave", -1)}
    participants = {(row[1], row[-1]) for row in written_by_intake["conversation_participant"]}
    assert ("erin", 4097) in participants

    engine = create_async_engine(database_url)
    try:
        await downgrade(engine, "0008")
        assert "read_through" not in {c[0] for c in (await snapshot(engine))["group_member"]["columns"]}
        await upgrade(engine)
    finally:
        await engine.dispose()

    backfilled = await dump(database_url)
    for table in ("group_member", "conversation_participant"):
        assert backfilled[table] == written_by_intake[table], table
