"""Contract §11 at scale: unread counts, members and ``unread_by`` of a big conversation against a small one.

Each case is asked of a small world and of a big one, and the ratio of their median times is
what §11 is about ("about the time of a small one"):

- ``unread, no watermark``: ``GET /users/{uid}/unread`` of a reader who never read a one-to-one
  conversation of 10 (small) or 10^5 (big) messages, every one unread;
- ``unread, watermark halfway``: the same reader having read the first half;
- ``unread, sparse ids``: 10^5 messages whose ids are 1000 apart (a conversation among many: ids
  are the app's), so the count reaches the upper tally levels;
- ``members, first page`` / ``members, middle page``: ``GET /conversations/{id}/members`` of a group
  of 10 or 10^4 members (pages of 100);
- ``unread_by, nobody read``: what a group message's receipts add (``unread_by``) when no member read it;
- ``unread_by, all but 5 read``: when every member but the last 5 read it (the anti-join reads
  every member's watermark: the worst case of this query);
- ``unread, group member``: ``GET /users/{uid}/unread`` of a member of that group.

The worlds are written through the service's own writer (``presence.db.writes.Writer``), so the
triggers that keep ``message_tally`` run as in intake; the queries are the handlers' own
(``presence.db.conversations``), timed on one connection, ``--repeat`` times each.

    .venv/bin/python -m bench.conversations [--postgres URL] [--repeat 30]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from presence.core.events import MembershipChanged, MessageSent, ReceiptMarked
from presence.core.facts import Changes
from presence.db import conversations
from presence.db.engine import create_engine
from presence.db.schema import upgrade
from presence.db.writes import Writer
from presence.settings import Settings

START_MS = 1_795_000_000_000
#: Messages a transaction: about an intake group commit's (on PostgreSQL a transaction that updates
#: one tally row many times steps over every version it left; see ``conversations.suspend_tallies``).
BATCH = 200
READER = "reader"
SENDER = "sender"


@dataclass(frozen=True, slots=True)
class World:
    """How big each thing is: the one-to-one conversations' messages and the group's members."""

    messages: int
    members: int


SMALL = World(messages=10, members=10)
BIG = World(messages=100_000, members=10_000)


async def write(engine: AsyncEngine, events: list[MessageSent | ReceiptMarked | MembershipChanged]) -> None:
    writer = Writer(engine.dialect)
    for start in range(0, len(events), BATCH):
        changes = Changes()
        for event in events[start : start + BATCH]:
            changes.add(event, START_MS)
        async with engine.begin() as connection:
            await writer.apply(connection, changes)


def world_events(world: World) -> list[MessageSent | ReceiptMarked | MembershipChanged]:
    events: list[MessageSent | ReceiptMarked | MembershipChanged] = []
    # Message ids are the app's, one sequence for every conversation: each conversation has its own range.
    for name, first, step in (("dense", 0, 1), ("half", 200_000, 1), ("sparse", 10_000_000, 1000)):
        conversation = f"{READER}-{name}_user_{SENDER}"
        for n in range(1, world.messages + 1):
            events.append(MessageSent(first + n * step, conversation, SENDER, START_MS + n, tracked=True))
        if name == "half":
            half = first + world.messages // 2
            events.append(ReceiptMarked("read", half, conversation, f"{READER}-{name}", SENDER, START_MS + half))
    guid = "crowd"
    members = tuple(f"member-{n:05d}" for n in range(world.members))
    events.append(MembershipChanged(guid, "added", START_MS, members, len(members)))
    offset = 10**9  # ids of their own, above the one-to-one conversations'
    events.append(MessageSent(offset + 1, f"group_{guid}", members[0], START_MS + 10, tracked=True))
    events.append(MessageSent(offset + 2, f"group_{guid}", members[0], START_MS + 20, tracked=True))
    for member in members[1:-5]:
        events.append(ReceiptMarked("read", offset + 1, f"group_{guid}", member, members[0], START_MS + 30))
    return events


async def median_ms(
    connection: AsyncConnection, ask: Callable[[AsyncConnection], Awaitable[object]], repeat: int
) -> float:
    await ask(connection)  # warm the caches
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        await ask(connection)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def cases(world: World) -> dict[str, Callable[[AsyncConnection], Awaitable[object]]]:
    offset = 10**9
    middle = f"member-{world.members // 2:05d}"

    async def unread_by(connection: AsyncConnection, message_id: int) -> object:
        # What the receipts handler adds for a group message (the §4 part lists every reader: its
        # cost is that of the readers, 10^4 here, as before §11).
        return await conversations.unread_by(connection, message_id, "group_crowd", "member-00000")

    return {
        "unread, no watermark": lambda c: conversations.unread_of(c, f"{READER}-dense", before=None, limit=101),
        "unread, watermark halfway": lambda c: conversations.unread_of(c, f"{READER}-half", before=None, limit=101),
        "unread, sparse ids": lambda c: conversations.unread_of(c, f"{READER}-sparse", before=None, limit=101),
        "members, first page": lambda c: conversations.members_of(c, "group_crowd", after=None, limit=101),
        "members, middle page": lambda c: conversations.members_of(c, "group_crowd", after=middle, limit=101),
        "unread_by, nobody read": lambda c: unread_by(c, offset + 2),
        "unread_by, all but 5 read": lambda c: unread_by(c, offset + 1),
        "unread, group member": lambda c: conversations.unread_of(c, middle, before=None, limit=101),
    }


async def measure(url: str, world: World, repeat: int) -> dict[str, float]:
    engine = create_engine(Settings(database_url=url, db_command_timeout=600))
    try:
        await upgrade(engine)
        started = time.perf_counter()
        await write(engine, world_events(world))
        print(f"  wrote the {world} world in {time.perf_counter() - started:.1f} s")
        if engine.dialect.name == "postgresql":
            async with engine.connect() as connection:  # as autovacuum would soon: plans from statistics
                await connection.execute(text("ANALYZE"))
                await connection.commit()
        async with engine.connect() as connection:
            return {name: await median_ms(connection, ask, repeat) for name, ask in cases(world).items()}
    finally:
        await engine.dispose()


async def sanity(url: str, world: World) -> None:
    """The big world answers what it should, so the times are of the right answers."""
    engine = create_engine(Settings(database_url=url))
    try:
        async with engine.connect() as connection:
            dense = await conversations.unread_of(connection, f"{READER}-dense", before=None, limit=10)
            half = await conversations.unread_of(connection, f"{READER}-half", before=None, limit=10)
            sparse = await conversations.unread_of(connection, f"{READER}-sparse", before=None, limit=10)
            assert dense.total_unread == world.messages, dense
            assert half.total_unread == world.messages - world.messages // 2, half
            assert sparse.total_unread == world.messages, sparse
            unread = await conversations.unread_by(connection, 10**9 + 1, "group_crowd", "member-00000")
            assert unread.uids == [f"member-{n:05d}" for n in range(world.members - 5, world.members)], unread
    finally:
        await engine.dispose()


async def on_postgres(server: str, world: World, repeat: int) -> dict[str, float]:
    name = f"presence_bench_conversations_{world.messages}"
    admin = server.replace("postgresql+asyncpg://", "postgresql://", 1)
    connection = await asyncpg.connect(admin)
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    url = f"{server.rsplit('/', 1)[0]}/{name}"
    try:
        times = await measure(url, world, repeat)
        await sanity(url, world)
        return times
    finally:
        connection = await asyncpg.connect(admin)
        try:
            await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await connection.close()


async def on_sqlite(directory: Path, world: World, repeat: int) -> dict[str, float]:
    url = f"sqlite+aiosqlite:///{directory / f'conversations-{world.messages}.db'}"
    times = await measure(url, world, repeat)
    await sanity(url, world)
    return times


def report(backend: str, small: dict[str, float], big: dict[str, float]) -> None:
    print(f"\n{backend}: median ms, small world {SMALL} against big world {BIG}")
    print(f"  {'case':28} {'small':>8} {'big':>8} {'ratio':>7}")
    for name, small_ms in small.items():
        print(f"  {name:28} {small_ms:8.2f} {big[name]:8.2f} {big[name] / small_ms:6.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--postgres", help="a PostgreSQL server URL (postgresql+asyncpg://…/postgres) to measure on too"
    )
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="presence-conversations-") as directory:
        small = asyncio.run(on_sqlite(Path(directory), SMALL, args.repeat))
        big = asyncio.run(on_sqlite(Path(directory), BIG, args.repeat))
        report("SQLite", small, big)
    if args.postgres:
        small = asyncio.run(on_postgres(args.postgres, SMALL, args.repeat))
        big = asyncio.run(on_postgres(args.postgres, BIG, args.repeat))
        report("PostgreSQL", small, big)


if __name__ == "__main__":
    main()
