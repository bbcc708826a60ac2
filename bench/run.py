"""The presence benchmark: every row in one go, on one machine, as one markdown table.

    .venv/bin/python bench/run.py [--duration S] [--skip-postgres] [--big-users N]

Starts every server as a subprocess (pinned to core 0 when ``taskset`` and two
cores are there), drives each row with ``wrk`` and ``bench/load.lua`` (pinned
to core 1), in ``--repeat`` interleaved rounds, stops the servers, and prints a
table of requests per second and p50/p99 latency, each as a ratio to the
bare-aiohttp baseline measured in the same run, then the outcome checks (inbox
rows = 200s) and the targets, each PASS or FAIL.
Progress goes to stderr, the report to stdout. Every server process, temporary
file and PostgreSQL database it makes is removed again, also on failure or
Ctrl-C. See docs/benchmarks.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script from a checkout: the repository's root holds the ``bench`` and ``tests`` packages.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import contextlib
import os
import shutil
import signal
import tempfile
from collections.abc import Sequence
from types import FrameType

from bench import workload
from bench.load import Load, pinning
from bench.measure import Bench, measure_in_rounds
from bench.plan import plan
from bench.profiling import Profiler
from bench.progress import log
from bench.report import machine, report

DEFAULT_POSTGRES_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/run.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds measured per row (default 10)")
    parser.add_argument(
        "--repeat", type=int, default=1, help="measure each row this many times and show the median (default 1)"
    )
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up before each row (default 2)")
    parser.add_argument(
        "--grace", type=int, default=3, help="seconds wrk waits for the last answers after sending stops (default 3)"
    )
    parser.add_argument("--connections", type=int, default=64, help="wrk connections (default 64)")
    parser.add_argument(
        "--latency-connections", type=int, default=4, help="connections for the 1k/1M latency rows (default 4)"
    )
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (default 1: wrk has one core)")
    parser.add_argument("--users", type=int, default=workload.DEFAULT_USERS, help="users in the webhook traffic")
    parser.add_argument(
        "--events", type=int, default=workload.DEFAULT_EVENTS, help="webhook bodies in the file, repeats included"
    )
    parser.add_argument("--seed", type=int, default=workload.DEFAULT_SEED)
    parser.add_argument("--small-users", type=int, default=1_000, help="users in the small latency database")
    parser.add_argument("--big-users", type=int, default=1_000_000, help="users in the big latency database")
    parser.add_argument(
        "--small-history", type=int, default=10, help="receipts or superseded sessions behind R1, S1, T1 (default 10)"
    )
    parser.add_argument(
        "--big-history",
        type=int,
        default=100_000,
        help="receipts or superseded sessions behind R2, S2, T2 (default 1e5)",
    )
    parser.add_argument(
        "--only", metavar="ROWS", help="measure only these rows, e.g. B2,Q1,Q2 (Q1 and Q2 bring I1, which fills them)"
    )
    parser.add_argument("--skip-postgres", action="store_true", help="no PostgreSQL rows")
    parser.add_argument("--skip-naive-postgres", action="store_true", help="no naive PostgreSQL row")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("PRESENCE_BENCH_POSTGRES_URL", DEFAULT_POSTGRES_URL),
        help="a PostgreSQL server whose user may create databases (PRESENCE_BENCH_POSTGRES_URL)",
    )
    parser.add_argument("--no-pin", action="store_true", help="do not pin the server and wrk to cores")
    parser.add_argument("--server-core", type=int, default=0)
    parser.add_argument("--client-core", type=int, default=1)
    parser.add_argument("--profile", type=Path, metavar="DIR", help="py-spy each row's server into DIR (perturbs)")
    parser.add_argument("--output", type=Path, help="also write the report to this file")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, databases)")
    parser.add_argument("--require-targets", action="store_true", help="exit 3 when a target is missed")
    return parser.parse_args(argv)


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    wrk = shutil.which("wrk")
    if wrk is None:
        print("bench: wrk is not installed (Debian/Ubuntu: apt-get install -y wrk)", file=sys.stderr)
        return 2
    # Ctrl-C, and SIGINT or SIGTERM even when a shell started the run in the background with SIGINT ignored.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    pin = pinning(args)
    about = machine(args, pin, wrk)
    if pin.client:
        # This script's own work (sampling, counting rows, seeding) stays off the server's core too.
        os.sched_setaffinity(0, {args.client_core})
    workdir = Path(tempfile.mkdtemp(prefix="presence-bench-"))
    with contextlib.ExitStack() as cleanup:
        if args.keep:
            log(f"keeping {workdir}")
        else:
            cleanup.callback(shutil.rmtree, workdir, ignore_errors=True)
        bench = Bench(
            args=args,
            workdir=workdir,
            load=Load(wrk=wrk, pin=pin, threads=args.threads, grace=args.grace),
            profiler=Profiler(args.profile, pin),
            cleanup=cleanup,
        )
        try:
            measure_in_rounds(bench, plan(bench))
        except KeyboardInterrupt:
            log("interrupted: stopping servers, dropping databases")
            return 130
        text, checks_passed, targets_met = report(bench, about)
    print(text)
    if args.output is not None:
        args.output.write_text(text)
    if not checks_passed:
        return 1
    return 3 if args.require_targets and not targets_met else 0


if __name__ == "__main__":
    sys.exit(main())
