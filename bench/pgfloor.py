"""What a PostgreSQL commit costs per event: round trips, the service's CPU, PostgreSQL's CPU.

    .venv/bin/python bench/pgfloor.py [--events N] [--batch B] [--concurrency C] [--postgres-url URL]

Runs the benchmark's workload through the service's own pure path (``accept``, the facts of
a batch, ``Writer.steps`` recording changes), then commits the batches through intake's own
:class:`presence.db.transactions.EngineTransactions` on a fresh, migrated database, with up to
``--concurrency`` transactions in flight (intake's ``PRESENCE_COMMIT_CONCURRENCY``). It prints,
per event and per batch: the statements sent (asyncpg calls, ``BEGIN`` and ``COMMIT`` included)
and the executions PostgreSQL ran (an ``executemany`` runs one per row), the CPU time of this
process (the committing part alone) and of PostgreSQL's backends of the database (from
``/proc``), and wall time. CPU times hold on a busy machine where wall time does not.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script from a checkout: the repository's root holds the ``bench`` package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import asyncio
import os
import resource
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import asyncpg

from bench import workload
from bench.databases import PostgresDatabase
from presence.core.facts import changes_of
from presence.db.engine import create_engine
from presence.db.recording import ChangeSink
from presence.db.schema import upgrade
from presence.db.transactions import EngineTransactions
from presence.db.writes import Writer
from presence.intake.accept import accept
from presence.settings import Settings


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def system_seconds() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_stime


def process_cpu_seconds(pid: int) -> float:
    """User and system time of another process (a PostgreSQL backend on this machine); 0 once gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Counts:
    """asyncpg calls (statements sent) and the executions they ask of PostgreSQL."""

    def __init__(self) -> None:
        self.calls = 0
        self.executions = 0
        #: Wall time and calls by the statement's first words (with ``--by-statement``).
        self.by_statement: dict[str, list[float]] = {}


@contextmanager
def counting(counts: Counts) -> Iterator[None]:
    """Count every ``execute``/``executemany``/``fetch`` of asyncpg while inside."""
    originals: dict[str, Callable[..., Coroutine[Any, Any, Any]]] = {}

    def wrap(name: str, executions: Callable[[tuple[Any, ...]], int]) -> None:
        original = getattr(asyncpg.Connection, name)
        originals[name] = original

        async def counted(self: asyncpg.Connection, *args: Any, **kwargs: Any) -> Any:
            counts.calls += 1
            counts.executions += executions(args)
            started = time.perf_counter()
            try:
                return await original(self, *args, **kwargs)
            finally:
                key = " ".join(str(args[0]).split())[:90]
                spent = counts.by_statement.setdefault(key, [0.0, 0, 0])
                spent[0] += time.perf_counter() - started
                spent[1] += 1
                spent[2] += executions(args)

        setattr(asyncpg.Connection, name, counted)

    wrap("execute", lambda _args: 1)
    wrap("fetch", lambda _args: 1)
    wrap("fetchrow", lambda _args: 1)
    wrap("executemany", lambda args: len(args[1]))
    try:
        yield
    finally:
        for name, original in originals.items():
            setattr(asyncpg.Connection, name, original)


async def measure(url: str, bodies: list[bytes], batch: int, concurrency: int, *, by_statement: bool) -> None:
    settings = Settings(database_url=url, commit_concurrency=concurrency)
    engine = create_engine(settings, role="intake")
    try:
        await upgrade(engine)
        writer = Writer(engine.dialect)
        transactions = EngineTransactions(engine, timeout=30.0)
        received = datetime.now(UTC)
        batches = [
            [accept(raw, received_at=received) for raw in bodies[start : start + batch]]
            for start in range(0, len(bodies), batch)
        ]
        # Warm the pool (and asyncpg's statement caches) on the first batches, then measure the rest.
        warm, batches = batches[: 2 * concurrency], batches[2 * concurrency :]
        slots = asyncio.Semaphore(concurrency)

        async def commit(items: list[Any]) -> None:
            async with slots:
                changes = changes_of((item.event, item.received_at_ms) for item in items)
                sink = ChangeSink(recorded_at_ms=time.time_ns() // 1_000_000)
                await transactions.run(writer.steps([item.inbox for item in items], changes, record=sink))

        await asyncio.gather(*(commit(items) for items in warm))
        async with engine.connect() as connection:
            pids = [
                int(pid)
                for (pid,) in (
                    await connection.exec_driver_sql(
                        "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                    )
                ).all()
            ]
        counts = Counts()
        events = sum(len(items) for items in batches)
        backend_before = sum(process_cpu_seconds(pid) for pid in pids)
        wall, cpu, system = time.perf_counter(), cpu_seconds(), system_seconds()
        with counting(counts):
            await asyncio.gather(*(commit(items) for items in batches))
        wall, cpu, system = time.perf_counter() - wall, cpu_seconds() - cpu, system_seconds() - system
        backend = sum(process_cpu_seconds(pid) for pid in pids) - backend_before
        await transactions.close()
    finally:
        await engine.dispose()
    n = len(batches)
    print(f"{events} events in {n} batches of {batch}, {concurrency} in flight")
    print(f"  statements sent: {counts.calls / n:.1f} per batch; executions: {counts.executions / n:.1f} per batch")
    print(
        f"  service CPU: {cpu / events * 1e6:.1f} µs per event"
        f" ({cpu / n * 1e3:.2f} ms per batch, {system / cpu:.0%} of it system time)"
    )
    print(
        f"  PostgreSQL backends' CPU: {backend / events * 1e6:.1f} µs per event ({backend / n * 1e3:.2f} ms per batch)"
    )
    print(
        f"  wall: {wall / events * 1e6:.1f} µs per event"
        f" ({wall / n * 1e3:.2f} ms per batch, {events / wall:.0f} events/s)"
    )
    if by_statement:
        for key, (spent, calls, runs) in sorted(counts.by_statement.items(), key=lambda item: -item[1][0]):
            print(f"  {spent / n * 1e3:6.3f} ms/batch {calls / n:5.2f} calls {runs / n:6.1f} runs  {key}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=30_000)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        help="a setting of the database for the run, e.g. 'log_min_duration_statement = 0'",
    )
    parser.add_argument("--by-statement", action="store_true", help="wall time of each statement (concurrency 1 best)")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("PRESENCE_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
    )
    args = parser.parse_args()
    bodies = workload.generate(events=args.events).bodies
    database = PostgresDatabase(args.postgres_url)
    database.create()
    try:
        for setting in args.set:
            asyncio.run(database._execute(f"ALTER DATABASE {database.name} SET {setting}"))
        asyncio.run(measure(database.url, bodies, args.batch, args.concurrency, by_statement=args.by_statement))
    finally:
        database.drop()


if __name__ == "__main__":
    main()
