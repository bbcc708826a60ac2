"""What SQLite itself costs per event: the floor under SQLite intake on one core.

    .venv/bin/python bench/floor.py [--events N] [--batch B] [--record]

Runs the benchmark's workload through the service's own pure path (``accept``,
the facts of a batch, ``Writer.statements``), then times only the part the
database does, on the stdlib driver with no event loop and no thread hop:
``BEGIN IMMEDIATE``, one ``executemany`` per table, ``COMMIT``, in batches of
``--batch`` events (about what group commit gathers at 64 connections), on a
migrated SQLite file, on a connection opened as intake's writer opens its own
(``presence.db.engine.open_sqlite_writer``: WAL, ``synchronous=FULL``, its checkpoints).
It prints the CPU time (user + system, fsync included) per event of that part,
and of the pure path before it. ``docs/benchmarks.md`` divides a bare aiohttp
request's CPU time by the sum to bound what intake can reach on one core.
``--record`` derives and stores the change feed's changes as intake does
(``Writer.steps`` with a ``ChangeSink``: the reads before and after the writes,
the numbering); the reads' Python runs inside the timed database part.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script from a checkout: the repository's root holds the ``bench`` package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import asyncio
import gc
import resource
import sqlite3
import tempfile
import time
from datetime import UTC, datetime

from bench import workload
from presence.core.facts import changes_of
from presence.db.driver import Step, execute_sqlite
from presence.db.engine import create_engine, open_sqlite_writer
from presence.db.recording import ChangeSink
from presence.db.schema import upgrade
from presence.db.writes import Writer
from presence.intake.accept import accept
from presence.settings import Settings


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def migrated(path: Path) -> Writer:
    engine = create_engine(Settings(database_url=f"sqlite+aiosqlite:///{path}"))
    try:
        await upgrade(engine)
        return Writer(engine.dialect)
    finally:
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=30_000)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--record", action="store_true", help="record changes, as intake does")
    args = parser.parse_args()

    bodies = workload.generate(events=args.events).bodies
    with tempfile.TemporaryDirectory(prefix="presence-floor-") as directory:
        path = Path(directory) / "floor.db"
        writer = asyncio.run(migrated(path))

        started = cpu_seconds()
        received = datetime.now(UTC)
        batches: list[list[Step]] = []
        for start in range(0, len(bodies), args.batch):
            accepted = [accept(raw, received_at=received) for raw in bodies[start : start + args.batch]]
            changes = changes_of((item.event, item.received_at_ms) for item in accepted)
            sink = ChangeSink(recorded_at_ms=int(received.timestamp() * 1000)) if args.record else None
            batches.append(writer.steps([item.inbox for item in accepted], changes, record=sink))
        pure = cpu_seconds() - started

        # The objects made so far (the workload, every batch's rows) are this script's, not a
        # service's: out of the collector's way, as the service freezes what start-up made. Left
        # in, each full collection during the timed part walked them all (about a tenth of it).
        gc.collect()
        gc.freeze()
        connection = open_sqlite_writer(path, "FULL")  # as intake's writer: its pragmas, WAL
        started, wall = cpu_seconds(), time.perf_counter()
        for steps in batches:
            connection.execute("BEGIN IMMEDIATE")
            execute_sqlite(connection, steps)
            connection.execute("COMMIT")
        database, wall = cpu_seconds() - started, time.perf_counter() - wall
        connection.close()

    count = len(bodies)
    recording = ", changes recorded" if args.record else ""
    print(f"{count:,} events in batches of {args.batch}, SQLite {sqlite3.sqlite_version}, synchronous=FULL{recording}")
    print(f"pure path (accept, facts, statements): {pure / count * 1e6:6.1f} us CPU per event")
    print(
        f"SQLite (executemany, COMMIT, fsync):   {database / count * 1e6:6.1f} us CPU per event "
        f"({wall / count * 1e6:.1f} us wall)"
    )


if __name__ == "__main__":
    main()
