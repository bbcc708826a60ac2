"""The plan of a run: every row of the report, its workload, database and server, and which rows --only keeps."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from bench import bigdb, histories, workload
from bench.databases import Database, PostgresDatabase, SqliteDatabase, read_through
from bench.measure import Bench, Subject
from bench.progress import log
from bench.rows import Row
from bench.servers import Server, presence_command, server_environment
from tests.support.server import run_presence


def write_paths(path: Path, paths: Sequence[str]) -> Path:
    path.write_text("".join(f"{p}\n" for p in paths))
    return path


ROWS = ("B1", "B2", "B3", "I1", "I2", "I3", "I4", "Q1", "Q2", "L1", "L2", "R1", "R2", "S1", "S2", "T1", "T2")


def selected_rows(only: str | None) -> set[str]:
    """The rows ``--only`` asks for (all by default); Q1 and Q2 query the database I1 fills, so they bring it."""
    if not only:
        return set(ROWS)
    wanted = {key.strip().upper() for key in only.split(",") if key.strip()}
    unknown = wanted - set(ROWS)
    if unknown:
        raise SystemExit(f"bench: unknown rows in --only: {', '.join(sorted(unknown))} (rows: {', '.join(ROWS)})")
    return wanted | ({"I1"} if wanted & {"Q1", "Q2"} else set())


def plan(bench: Bench) -> list[Subject]:
    """Every row of the report, in order; the subjects to measure are the rows --only keeps."""
    args = bench.args
    log(f"generating {args.events:,} webhook bodies over {args.users:,} users (seed {args.seed})")
    traffic = workload.generate(users=args.users, events=args.events, seed=args.seed)
    bodies = bench.workdir / "bodies.jsonl"
    traffic.write(bodies)
    bench.notes.append(f"Workload: {traffic.summary.describe()}.")
    planner = Planner(bench, selected_rows(args.only), bodies)
    base_post, base_get, base_low = planner.baselines(presence_paths_of(traffic.uids))
    intake_db = planner.intake(base_post)
    planner.queries(intake_db, base_get)
    planner.latency(base_low)
    planner.histories(base_low)
    return planner.subjects


@dataclass(slots=True)
class Planner:
    bench: Bench
    wanted: set[str]
    bodies: Path
    subjects: list[Subject] = field(default_factory=list)

    def add(self, row: Row, server: Callable[[], Server], mode: str, paths: Callable[[], Path], **more: Any) -> Row:
        """Report ``row``; measure it (on the server ``server()`` makes) if --only keeps it."""
        self.bench.rows.append(row)
        if row.key not in self.wanted:
            row.skipped = "not in --only"
        else:
            self.subjects.append(Subject(row, server(), mode, paths, **more))
        return row

    def baselines(self, uid_paths: list[str]) -> tuple[Row, Row, Row]:
        """The bare stack, one process for POST and for GET (at 64 and at low concurrency)."""
        bench, connections, low = self.bench, self.bench.args.connections, self.bench.args.latency_connections
        server = functools.cache(bench.baseline_server)
        paths = _fixed(write_paths(bench.workdir / "baseline-paths.txt", uid_paths))
        bare = "bare aiohttp"
        return (
            self.add(
                Row("B1", "baseline POST /hook", bare, connections, service=False), server, "hook", _fixed(self.bodies)
            ),
            self.add(Row("B2", "baseline GET", bare, connections, service=False), server, "get", paths),
            self.add(Row("B3", "baseline GET, low concurrency", bare, low, service=False), server, "get", paths),
        )

    def intake(self, baseline: Row) -> SqliteDatabase:
        """The service as configured and the naive design, on SQLite and on PostgreSQL; returns I1's database."""
        bench, args, connections = self.bench, self.bench.args, self.bench.args.connections
        naive = {"PRESENCE_COMMIT_MAX_BATCH": "1"}
        intake_db = SqliteDatabase(bench.workdir / "intake.db")
        postgres_skip = postgres_unavailable(args) if self.wanted & {"I3", "I4"} else ""
        rows: list[tuple[str, str, Database | None, dict[str, str] | None]] = [
            ("I1", "intake, SQLite", intake_db, None),
            ("I2", "naive intake, SQLite (batch 1)", SqliteDatabase(bench.workdir / "naive.db"), naive),
            ("I3", "intake, PostgreSQL", None, None),
            ("I4", "naive intake, PostgreSQL (batch 1)", None, naive),
        ]
        for key, label, sqlite_db, extra in rows:
            row = Row(key, label, "presence", connections, baseline=baseline)
            database: Database
            if sqlite_db is not None:
                database = sqlite_db
            else:
                skip = postgres_skip or ("--skip-naive-postgres" if extra and args.skip_naive_postgres else "")
                if skip and key in self.wanted:
                    bench.rows.append(row)
                    row.skipped = skip
                    continue
                # A fresh database for each row, dropped when the run ends.
                postgres = PostgresDatabase(args.postgres_url.replace("postgresql+asyncpg://", "postgresql://", 1))
                if key in self.wanted:
                    postgres.create()
                    bench.cleanup.callback(quietly, postgres.drop)
                database = postgres
            server = functools.partial(bench.presence_server, key, database, extra)
            self.add(row, server, "hook", _fixed(self.bodies), database=database, checked=True)
        return intake_db

    def queries(self, intake_db: SqliteDatabase, baseline: Row) -> None:
        """GET presence and receipts on the database I1 fills, picking among the ids stored when they first run."""
        bench, connections = self.bench, self.bench.args.connections
        server = functools.cache(lambda: bench.presence_server("queries", intake_db))
        presence_row = Row("Q1", "GET /users/{uid}/presence", "presence", connections, baseline=baseline)
        receipts_row = Row("Q2", "GET /messages/{id}/receipts", "presence", connections, baseline=baseline)

        @functools.cache
        def stored_uids() -> Path:
            uids = intake_db.column("SELECT uid FROM user_presence", 200_000)
            presence_row.label += f" ({len(uids):,} users)"
            return write_paths(bench.workdir / "uids.txt", presence_paths_of(uids))

        @functools.cache
        def stored_messages() -> Path:
            ids = intake_db.column("SELECT id FROM message", 200_000)
            receipts_row.label += f" ({len(ids):,} messages)"
            return write_paths(bench.workdir / "messages.txt", [f"/messages/{m}/receipts" for m in ids])

        self.add(presence_row, server, "get", stored_uids)
        self.add(receipts_row, server, "get", stored_messages)

    def latency(self, baseline: Row) -> None:
        """The same GET at 1k and at 1M stored users, each database seeded through SQL, not HTTP."""
        bench, args = self.bench, self.bench.args
        for key, users in (("L1", args.small_users), ("L2", args.big_users)):
            seeded = SqliteDatabase(bench.workdir / f"users-{users}.db")
            paths: list[str] = []
            if key in self.wanted:
                migrate(seeded, bench.workdir)
                started = time.monotonic()
                sessions = bigdb.seed_sqlite(seeded.path, users, seed=args.seed)
                elapsed = time.monotonic() - started
                log(f"seeded {users:,} users and {sessions:,} sessions through SQL in {elapsed:.1f} s")
                paths = sample_big_paths(users, args.seed)
            self.add(
                Row(
                    key,
                    f"GET presence, {users:,} stored users",
                    "presence",
                    args.latency_connections,
                    baseline=baseline,
                ),
                functools.partial(bench.presence_server, key, seeded),
                "get",
                _fixed(write_paths(bench.workdir / f"big-{users}.txt", paths)),
                prepare=functools.partial(read_through, seeded.path),
            )

    def histories(self, baseline: Row) -> None:
        """One answer behind a short and a long history: receipts (R), presence (S), stats (T)."""
        bench, args = self.bench, self.bench.args
        small, big = args.small_history, args.big_history
        cases = (
            ("R", "GET /messages/1/receipts, {n:,} receipts of one reader", histories.seed_receipts, None),
            ("S", "GET presence, {n:,} superseded sessions", histories.seed_superseded_sessions, None),
            ("T", "GET /stats, {n:,} superseded sessions", histories.seed_superseded_sessions, "/stats"),
        )
        for letter, label, seed, path in cases:
            for key, count in ((f"{letter}1", small), (f"{letter}2", big)):
                database = SqliteDatabase(bench.workdir / f"history-{key}.db")
                paths: list[str] = []
                if key in self.wanted:
                    migrate(database, bench.workdir)
                    started = time.monotonic()
                    paths = seed(database.path, count)
                    elapsed = time.monotonic() - started
                    log(f"{key}: wrote {count:,} events through the service's writer in {elapsed:.1f} s")
                    if path is not None:
                        paths = [path]
                self.add(
                    Row(key, label.format(n=count), "presence", args.latency_connections, baseline=baseline),
                    functools.partial(bench.presence_server, key, database),
                    "get",
                    _fixed(write_paths(bench.workdir / f"history-{key}.txt", paths * 100)),
                    prepare=functools.partial(read_through, database.path),
                )


def _fixed(path: Path) -> Callable[[], Path]:
    return lambda: path


def presence_paths_of(uids: Sequence[str]) -> list[str]:
    return [f"/users/{u}/presence" for u in uids]


def sample_big_paths(users: int, seed: int, count: int = 100_000) -> list[str]:
    """Uniformly random stored users (so the 1M database is read all over, not in one corner)."""
    rng = random.Random(seed)  # noqa: S311 - seeded test data, not secrets
    return presence_paths_of([bigdb.uid(rng.randrange(users)) for _ in range(min(count, users * 20))])


def migrate(database: Database, workdir: Path) -> None:
    environment = server_environment(database.url)
    done = asyncio.run(run_presence(["migrate"], environment, workdir, program=presence_command(), time_limit=120))
    if done.returncode != 0:
        raise RuntimeError(f"presence migrate failed: {done.stderr.strip()}")


def postgres_unavailable(args: argparse.Namespace) -> str:
    """Why the PostgreSQL rows are skipped, or "" when they run."""
    if args.skip_postgres:
        return "--skip-postgres"
    dsn = args.postgres_url.replace("postgresql+asyncpg://", "postgresql://", 1)
    try:
        PostgresDatabase.server_version(dsn)
    except (OSError, asyncpg.PostgresError, TimeoutError) as error:
        return f"PostgreSQL unreachable at {args.postgres_url}: {error}"
    return ""


def quietly(action: Callable[[], None]) -> None:
    """Run a clean-up step that may already have been done, or may fail for the reason being handled."""
    with contextlib.suppress(Exception):
        action()
