"""Measuring: a row's subject (server, requests, checks), warmed up, run under wrk, concluded."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.databases import Database, settled_count
from bench.load import Load, WrkResult
from bench.profiling import Profiler
from bench.progress import log
from bench.rows import Check, Row
from bench.servers import BASELINE_APP, BaselineServer, Server, presence_command, running, server_environment


@dataclass(slots=True)
class Subject:
    """A row and how to measure it: which server, which requests, what to check afterwards."""

    row: Row
    server: Server
    mode: str  # "hook": POST the bodies file in order; "get": GET random paths from the file
    paths: Callable[[], Path]
    #: The server's database: intake rows count its inbox; PostgreSQL backends are watched for CPU.
    database: Database | None = None
    checked: bool = False
    #: Run before each warm-up (L1, L2: read the database file into the page cache).
    prepare: Callable[[], None] | None = None
    runs: list[WrkResult] = field(default_factory=list)
    offset: int = 0
    inbox_added: int = 0


@dataclass(slots=True)
class Bench:
    args: argparse.Namespace
    workdir: Path
    load: Load
    profiler: Profiler
    cleanup: contextlib.ExitStack
    rows: list[Row] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: The servers started, each stopped when the run ends.
    servers: list[Server] = field(default_factory=list)

    def presence_server(self, name: str, database: Database, extra: dict[str, str] | None = None) -> Server:
        environment = server_environment(database.url, extra)
        return Server(name, environment, self.workdir, program=[*self.load.pin.server, *presence_command()])

    def baseline_server(self) -> Server:
        program = [*self.load.pin.server, sys.executable, str(BASELINE_APP)]
        return BaselineServer("baseline", server_environment(None), self.workdir, program=program)

    def start(self, server: Server) -> None:
        """Start ``server`` now, unless it runs already; it is stopped when the run ends, whatever happens."""
        if server not in self.servers:
            self.servers.append(server)
            self.cleanup.enter_context(running(server))

    def measure(self, subject: Subject, attempt: int) -> None:
        """One measured run of ``subject``, after a warm-up; hook runs go on through the file where the last stopped."""
        row, server, path = subject.row, subject.server, subject.paths()
        connections = row.connections
        if subject.prepare is not None:
            subject.prepare()
        if self.args.warmup > 0:
            warm = self.load.run(
                server.url, subject.mode, path, seconds=self.args.warmup, connections=connections, offset=subject.offset
            )
            subject.offset = warm.next_offset
        before = settled_count(subject.database, "inbox_event") if subject.checked and subject.database else 0
        # After the warm-up the service's pool is open: its PostgreSQL backends are there to watch.
        backends = subject.database.backend_pids() if subject.database is not None else []
        name = row.key if attempt == 0 else f"{row.key}-{attempt + 1}"
        with self.profiler.record(name, server, self.args.duration):
            result = self.load.run(
                server.url,
                subject.mode,
                path,
                seconds=self.args.duration,
                connections=connections,
                offset=subject.offset,
                # Intake runs need every answer counted (the inbox check); query runs stop when wrk stops.
                park=subject.mode == "hook",
                watch={"server": [server.pid], "postgres": backends},
            )
        subject.offset = result.next_offset
        if subject.checked and subject.database is not None:
            subject.inbox_added += settled_count(subject.database, "inbox_event") - before
        subject.runs.append(result)
        log(
            f"{row.key} {row.label}: {result.rps:,.0f} req/s, p50 {result.p50_ms:.2f} ms, "
            f"p99 {result.p99_ms:.2f} ms, {result.non2xx} non-2xx"
        )

    def conclude(self, subject: Subject) -> None:
        """The row shows the median run (by req/s); intake rows get their outcome check."""
        row, runs = subject.row, subject.runs
        if not runs:
            return
        row.result = sorted(runs, key=lambda r: r.rps)[len(runs) // 2]
        notes = ["median of " + ", ".join(f"{r.rps:,.0f}" for r in runs) + " req/s"] if len(runs) > 1 else []
        row.peak_rss_mb = subject.server.read_peak_rss()
        if subject.checked:
            self.checks.append(
                Check(
                    row.label,
                    answered_2xx=sum(r.ok for r in runs),
                    inbox_rows=subject.inbox_added,
                    unanswered=sum(r.unanswered for r in runs),
                    socket_errors=sum(r.errors for r in runs),
                    non2xx=sum(r.non2xx for r in runs),
                )
            )
        problems = subject.server.log_problems()
        notes += [f"{n} {level} log lines" for level, n in sorted(problems.items())]
        row.note = "; ".join(notes)


def measure_in_rounds(bench: Bench, subjects: Sequence[Subject]) -> None:
    """Start every server, then measure in rounds: with --repeat N, N rounds over all rows.

    Interleaving the rows, rather than measuring one row N times and then the
    next, spreads a noisy neighbour's bursts over the baseline and the service
    alike, so the ratios stay fair on a shared machine.
    """
    args = bench.args
    for subject in subjects:
        bench.start(subject.server)
    for attempt in range(max(args.repeat, 1)):
        if args.repeat > 1:
            log(f"round {attempt + 1} of {args.repeat}")
        for subject in subjects:
            bench.measure(subject, attempt)
    for subject in subjects:
        bench.conclude(subject)
