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

import argparse
import asyncio
import bisect
import contextlib
import dataclasses
import functools
import importlib.metadata
import json
import math
import os
import platform
import random
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, Any, Protocol

import asyncpg
import bigdb
import workload

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
LUA = BENCH / "load.lua"
BASELINE_APP = BENCH / "baseline_app.py"

HOOK_USERNAME = "bench"
HOOK_PASSWORD = "bench-password"  # noqa: S105 - a throwaway credential for a local server
API_TOKEN = "bench-token"  # noqa: S105
HOOK_AUTH = "Basic YmVuY2g6YmVuY2gtcGFzc3dvcmQ="  # base64 of HOOK_USERNAME:HOOK_PASSWORD
API_AUTH = f"Bearer {API_TOKEN}"

DEFAULT_POSTGRES_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0
MB = 1_000_000
TIMES = "\N{MULTIPLICATION SIGN}"

# The targets the service is measured against (the issue that asked for this benchmark).
INTAKE_VS_BASELINE = 0.70
INTAKE_VS_NAIVE = 3.0
INTAKE_P99_MS = 50.0
POSTGRES_VS_BASELINE = 0.50
QUERY_VS_BASELINE = 0.60
BIG_VS_SMALL = 1.5
PEAK_RSS_MB = 150.0
#: Above this (percent of one core used by other processes during a row) the report flags the row as disturbed.
NOISY_OTHERS_CPU = 25.0


def read_through(path: Path) -> None:
    """Read a file once, so that it starts in the page cache.

    L1 and L2 compare index lookups in a small and a big database. Some virtual
    machines (this project's among them) give the page cache back quickly, so the
    big database, seeded minutes earlier, would otherwise be read from the virtual
    disk and the row would measure that disk. Both rows are treated alike.
    """
    with path.open("rb") as file:
        while file.read(1 << 20):
            pass


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- wrk


@dataclass(frozen=True, slots=True)
class WrkResult:
    """One wrk run, as ``bench/load.lua`` counted it."""

    ok: int
    non2xx: int
    responses: int
    sent: int
    window_s: float
    next_offset: int
    socket_errors: dict[str, int]
    p50_ms: float
    p99_ms: float
    first_s: float
    last_s: float
    #: CPU use (100 = one core busy) of the server process and of wrk between the first and last answer.
    server_cpu: float | None = None
    wrk_cpu: float | None = None
    #: The PostgreSQL backends serving the server's database (None without PostgreSQL).
    postgres_cpu: float | None = None
    #: This script itself (sampling /proc, waiting for wrk).
    bench_cpu: float | None = None
    machine_cpu: float | None = None

    @property
    def others_cpu(self) -> float | None:
        """What the rest of the machine (not the server, not wrk) used meanwhile, in percent of one core."""
        if self.machine_cpu is None or self.server_cpu is None or self.wrk_cpu is None:
            return None
        ours = self.server_cpu + self.wrk_cpu + (self.postgres_cpu or 0.0) + (self.bench_cpu or 0.0)
        return max(self.machine_cpu - ours, 0.0)

    @property
    def rps(self) -> float:
        """2xx answers per second, between the first and the last answer."""
        return self.ok / self.window_s if self.window_s > 0 else 0.0

    @property
    def unanswered(self) -> int:
        """Requests sent that had no answer when wrk stopped (the grace period was too short)."""
        return self.sent - self.responses

    @property
    def errors(self) -> int:
        return sum(self.socket_errors.values())

    @classmethod
    def parse(cls, output: str) -> WrkResult:
        for line in output.splitlines():
            if line.startswith("BENCH-RESULT "):
                data = json.loads(line.removeprefix("BENCH-RESULT "))
                errors = {k: int(v) for k, v in data["errors"].items() if k != "status"}
                return cls(
                    ok=data["ok"],
                    non2xx=data["non2xx"],
                    responses=data["responses"],
                    sent=data["sent"],
                    window_s=data["window_s"],
                    next_offset=data["next_offset"],
                    socket_errors=errors,
                    p50_ms=data["latency_us"]["p50"] / 1000,
                    p99_ms=data["latency_us"]["p99"] / 1000,
                    first_s=data["first_s"],
                    last_s=data["last_s"],
                )
        raise RuntimeError(f"wrk printed no BENCH-RESULT line:\n{output}")


@dataclass(frozen=True, slots=True)
class Pinning:
    server: list[str]
    client: list[str]

    @property
    def description(self) -> str:
        if not self.server:
            return "not pinned"
        return f"server `{' '.join(self.server)}`, wrk `{' '.join(self.client)}`"


def pinning(args: argparse.Namespace) -> Pinning:
    taskset = shutil.which("taskset")
    cores = os.sched_getaffinity(0)
    if args.no_pin or taskset is None or not {args.server_core, args.client_core} <= cores:
        return Pinning([], [])
    return Pinning([taskset, "-c", str(args.server_core)], [taskset, "-c", str(args.client_core)])


@dataclass(frozen=True, slots=True)
class Load:
    """How wrk is run: the same for every row except the mode, file and connections."""

    wrk: str
    pin: Pinning
    threads: int
    grace: int

    def run(
        self,
        url: str,
        mode: str,
        path: Path,
        *,
        seconds: float,
        connections: int,
        offset: int = 0,
        park: bool = True,
        watch: Mapping[str, Sequence[int]] | None = None,
    ) -> WrkResult:
        """Run wrk; with ``park``, send for ``seconds`` and then wait ``grace`` for every answer."""
        threads = min(self.threads, connections)
        total = math.ceil(seconds) + (self.grace if park else 0)
        send_for = seconds if park else seconds + 3600
        auth = HOOK_AUTH if mode == "hook" else API_AUTH
        command = [
            *self.pin.client,
            self.wrk,
            "-t",
            str(threads),
            "-c",
            str(connections),
            "-d",
            f"{max(total, 1)}s",
            "--timeout",
            f"{total + 30}s",
            "-s",
            str(LUA),
            url,
            "--",
            mode,
            str(path),
            str(send_for),
            str(offset),
            auth,
            str(threads),
        ]
        with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as wrk:  # noqa: S603
            groups = {**(watch or {}), "wrk": [wrk.pid], "bench": [os.getpid()], "machine": [CpuSampler.MACHINE]}
            sampler = CpuSampler(groups)
            sampler.start()
            try:
                stdout, stderr = wrk.communicate(timeout=total + 120)
            except BaseException:
                wrk.kill()  # interrupted: do not wait for the rest of its duration
                raise
            finally:
                sampler.stop()
        if wrk.returncode != 0:
            raise RuntimeError(f"wrk failed ({wrk.returncode}): {stderr.strip() or stdout.strip()}")
        result = WrkResult.parse(stdout)
        return dataclasses.replace(
            result,
            server_cpu=sampler.usage("server", result.first_s, result.last_s),
            wrk_cpu=sampler.usage("wrk", result.first_s, result.last_s),
            postgres_cpu=sampler.usage("postgres", result.first_s, result.last_s),
            bench_cpu=sampler.usage("bench", result.first_s, result.last_s),
            machine_cpu=sampler.usage("machine", result.first_s, result.last_s),
        )


class CpuSampler:
    """Polls the CPU time of a few groups of processes (``/proc/<pid>/stat``, all threads) while wrk runs.

    Pid :data:`MACHINE` stands for every CPU of the machine (``/proc/stat``): its
    busy time less the server's and wrk's is what everything else on a shared
    machine took from the run.
    """

    INTERVAL = 0.2
    MACHINE = 0

    def __init__(self, groups: Mapping[str, Sequence[int]]) -> None:
        self.groups = {name: list(pids) for name, pids in groups.items() if pids}
        self.samples: dict[str, list[tuple[float, float]]] = {name: [] for name in self.groups}
        # A process that ends keeps counting with the CPU time it had, so a group's sum never goes back.
        self._last: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cpu-sampler", daemon=True)
        self._tick = os.sysconf("SC_CLK_TCK")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            for name, pids in self.groups.items():
                now = time.monotonic()
                for pid in pids:
                    seconds = self._cpu_seconds(pid)
                    if seconds is not None:
                        self._last[pid] = seconds
                self.samples[name].append((now, sum(self._last.get(pid, 0.0) for pid in pids)))
            self._stop.wait(self.INTERVAL)

    def _cpu_seconds(self, pid: int) -> float | None:
        if pid == self.MACHINE:
            with contextlib.suppress(OSError, IndexError, ValueError):
                # user nice system idle iowait irq softirq steal (guest time is inside user)
                ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
                return (sum(ticks) - ticks[3] - ticks[4]) / self._tick
            return None
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            return None
        return (int(fields[11]) + int(fields[12])) / self._tick  # utime, stime

    def usage(self, name: str, start: float, end: float) -> float | None:
        """Percent of one core the process used between ``start`` and ``end`` (CLOCK_MONOTONIC seconds)."""
        samples = self.samples.get(name, [])
        if len(samples) < 2:
            return None
        # wrk may exit a moment after its last answer, before the next sample: measure up to the last one.
        start, end = max(start, samples[0][0]), min(end, samples[-1][0])
        if end - start < 1:
            return None
        return 100 * (_at(samples, end) - _at(samples, start)) / (end - start)


def _at(samples: list[tuple[float, float]], moment: float) -> float:
    """The sampled value at ``moment``, interpolated between the two samples around it."""
    index = bisect.bisect_left(samples, (moment, -1.0))
    (t0, v0), (t1, v1) = samples[max(index - 1, 0)], samples[min(index, len(samples) - 1)]
    return v0 if t1 == t0 else v0 + (v1 - v0) * (moment - t0) / (t1 - t0)


# ----------------------------------------------------------------------- servers


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def presence_command() -> list[str]:
    script = Path(sys.executable).parent / "presence"
    return [str(script)] if script.exists() else [sys.executable, "-m", "presence"]


def presence_environment(database_url: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("PRESENCE_")}
    environment.update(
        PYTHONUNBUFFERED="1",
        PRESENCE_DATABASE_URL=database_url,
        PRESENCE_HOOK_USERNAME=HOOK_USERNAME,
        PRESENCE_HOOK_PASSWORD=HOOK_PASSWORD,
        PRESENCE_API_TOKENS=API_TOKEN,
        PRESENCE_LOG_LEVEL="WARNING",
    )
    environment.update(extra or {})
    return environment


class Server:
    """One server process on a free port; :meth:`stop` always ends it."""

    def __init__(self, name: str, argv: Sequence[str], environment: dict[str, str], workdir: Path, pin: Pinning):
        self.name = name
        self.port = free_port()
        self.argv = [*pin.server, *argv, "--port", str(self.port)]
        self.environment = environment
        self.workdir = workdir
        self.log_path = workdir / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.peak_rss_mb: float | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> Server:
        self._log = self.log_path.open("wb")
        # taskset execs the server, so the pid is the server's own.
        self.process = subprocess.Popen(  # noqa: S603
            self.argv,
            env=self.environment,
            cwd=self.workdir,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=1) as answer:  # noqa: S310
                    if answer.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not answer /healthz within {START_TIMEOUT:.0f} s:\n{self.log_tail()}")

    def read_peak_rss(self) -> float | None:
        """The process's peak resident set so far (VmHWM), in MB."""
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    self.peak_rss_mb = int(line.split()[1]) * 1024 / MB
        return self.peak_rss_mb

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.read_peak_rss()
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._log is not None:
            self._log.close()

    def log_tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def log_problems(self) -> Counter[str]:
        """How many WARNING / ERROR lines the server logged (it runs at PRESENCE_LOG_LEVEL=WARNING)."""
        counts: Counter[str] = Counter()
        with contextlib.suppress(OSError):
            for line in self.log_path.read_text(errors="replace").splitlines():
                for level in ("WARNING", "ERROR", "CRITICAL"):
                    if f" {level} " in line:
                        counts[level] += 1
        return counts


@contextlib.contextmanager
def running(server: Server) -> Iterator[Server]:
    log(f"starting {server.name} on port {server.port}")
    try:
        yield server.start()
    finally:
        server.stop()


# --------------------------------------------------------------------- databases


class Database(Protocol):
    url: str

    def scalar(self, sql: str) -> int: ...

    def column(self, sql: str, limit: int) -> list[Any]: ...

    def backend_pids(self) -> list[int]: ...


@dataclass(slots=True)
class SqliteDatabase:
    path: Path
    url: str = ""

    def __post_init__(self) -> None:
        self.url = f"sqlite+aiosqlite:///{self.path}"

    def scalar(self, sql: str) -> int:
        with contextlib.closing(sqlite3.connect(self.path, timeout=30)) as connection:
            value: int = connection.execute(sql).fetchone()[0]
            return value

    def column(self, sql: str, limit: int) -> list[Any]:
        with contextlib.closing(sqlite3.connect(self.path, timeout=30)) as connection:
            return [row[0] for row in connection.execute(sql).fetchmany(limit)]

    def backend_pids(self) -> list[int]:
        return []  # SQLite runs inside the server process


@dataclass(slots=True)
class PostgresDatabase:
    """A database of its own on the PostgreSQL server, made by :meth:`create` and dropped by :meth:`drop`."""

    server_dsn: str
    name: str = field(default_factory=lambda: f"presence_bench_{os.getpid()}_{secrets.token_hex(3)}")
    url: str = ""

    def __post_init__(self) -> None:
        base = self.server_dsn.rsplit("/", 1)[0]
        self.url = f"{base}/{self.name}".replace("postgresql://", "postgresql+asyncpg://", 1)

    def _dsn(self, database: str | None = None) -> str:
        if database is None:
            return self.server_dsn
        return f"{self.server_dsn.rsplit('/', 1)[0]}/{database}"

    async def _execute(self, sql: str, database: str | None = None) -> None:
        connection = await asyncpg.connect(self._dsn(database), timeout=10)
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    def create(self) -> None:
        asyncio.run(self._execute(f'CREATE DATABASE "{self.name}"'))

    def drop(self) -> None:
        asyncio.run(self._execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))

    def scalar(self, sql: str) -> int:
        async def fetch() -> int:
            connection = await asyncpg.connect(self._dsn(self.name), timeout=10)
            try:
                value: int = await connection.fetchval(sql)
                return value
            finally:
                await connection.close()

        return asyncio.run(fetch())

    def column(self, sql: str, limit: int) -> list[Any]:
        async def fetch() -> list[Any]:
            connection = await asyncpg.connect(self._dsn(self.name), timeout=10)
            try:
                return [row[0] for row in await connection.fetch(sql)][:limit]
            finally:
                await connection.close()

        return asyncio.run(fetch())

    def backend_pids(self) -> list[int]:
        """The server processes of the connections open to this database now (the service's pool)."""

        async def fetch() -> list[int]:
            connection = await asyncpg.connect(self._dsn(self.name), timeout=10)
            try:
                rows = await connection.fetch(
                    "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()", self.name
                )
                return [int(row["pid"]) for row in rows]
            finally:
                await connection.close()

        return asyncio.run(fetch())

    @staticmethod
    def server_version(server_dsn: str) -> str:
        async def fetch() -> str:
            connection = await asyncpg.connect(server_dsn, timeout=5)
            try:
                value: str = await connection.fetchval("SHOW server_version")
                return value
            finally:
                await connection.close()

        return asyncio.run(fetch())


def settled_count(database: Database, table: str) -> int:
    """The row count once it has stopped moving (requests still in flight have committed)."""
    sql = {"inbox_event": "SELECT count(*) FROM inbox_event"}[table]
    last, same = -1, 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        count = database.scalar(sql)
        same = same + 1 if count == last else 0
        if same >= 3:
            return count
        last = count
        time.sleep(0.3)
    return last


# -------------------------------------------------------------------------- rows


@dataclass(slots=True)
class Row:
    key: str
    label: str
    server: str
    connections: int
    result: WrkResult | None = None
    baseline: Row | None = None
    peak_rss_mb: float | None = None
    service: bool = True
    note: str = ""
    skipped: str = ""


@dataclass(frozen=True, slots=True)
class Check:
    """An outcome check: after an intake run, one inbox row per 2xx answer."""

    row: str
    answered_2xx: int
    inbox_rows: int
    unanswered: int
    socket_errors: int
    non2xx: int

    @property
    def passed(self) -> bool:
        return self.answered_2xx == self.inbox_rows and self.unanswered == 0 and self.socket_errors == 0

    def describe(self) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        detail = f"inbox rows added {self.inbox_rows} = 2xx answers {self.answered_2xx}"
        if self.answered_2xx != self.inbox_rows:
            detail = f"inbox rows added {self.inbox_rows} ≠ 2xx answers {self.answered_2xx}"
        extra = [f"{self.non2xx} non-2xx"] if self.non2xx else []
        if self.unanswered:
            extra.append(f"{self.unanswered} requests unanswered when wrk stopped (raise --grace)")
        if self.socket_errors:
            extra.append(f"{self.socket_errors} socket errors")
        return f"**{verdict}** {self.row}: {detail}" + (f" ({'; '.join(extra)})" if extra else "")


@dataclass(slots=True)
class Profiler:
    """py-spy, recording a server during a measured run when ``--profile DIR`` is given."""

    directory: Path | None
    pin: Pinning
    reports: list[tuple[str, Path, Path]] = field(default_factory=list)

    @property
    def executable(self) -> str | None:
        local = Path(sys.executable).parent / "py-spy"
        return str(local) if local.exists() else shutil.which("py-spy")

    @contextlib.contextmanager
    def record(self, name: str, server: Server, seconds: float) -> Iterator[None]:
        spy = self.executable
        if self.directory is None or spy is None:
            yield
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        svg, raw = self.directory / f"{name}.svg", self.directory / f"{name}.txt"
        common = [spy, "record", "--pid", str(server.pid), "--duration", str(int(seconds)), "--nonblocking"]
        processes = [
            subprocess.Popen(  # noqa: S603
                [*self.pin.client, *common, "--format", kind, "-o", str(out)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for kind, out in (("flamegraph", svg), ("raw", raw))
        ]
        try:
            yield
        except BaseException:
            for process in processes:
                process.kill()
            raise
        finally:
            for process in processes:
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        if raw.exists():
            self.reports.append((name, svg, raw))


@dataclass(frozen=True, slots=True)
class ProfileSummary:
    """py-spy's samples of the event-loop thread (shares in percent), and what the database threads did."""

    loop_samples: int
    own: list[tuple[str, float]]
    packages: list[tuple[str, float]]
    service: list[tuple[str, float]]
    worker_busy: int
    worker_waiting: int
    #: Samples of the SQLite writer thread in a transaction (``presence/db/transactions.py``).
    writer_busy: int = 0


_WORKER = "_connection_worker_thread (aiosqlite/core.py"
_WRITER = "SqliteTransactions._transaction (presence/db/transactions.py"
_EXECUTOR = "_worker (concurrent/futures/thread.py"


def summarise_profile(raw: Path, count: int = 12) -> ProfileSummary:
    """Read py-spy's collapsed stacks (``--format raw``: ``frame;frame;... samples`` a line).

    aiosqlite runs each SQLite call on a thread of its own; those samples are
    counted apart (busy in a call, or waiting for the next one) so the shares
    of the event loop, the one thread that serves HTTP, are not diluted by them.
    """
    own: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    service: Counter[str] = Counter()
    loop = busy = waiting = writing = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, samples = line.rpartition(" ")
        frames = [frame for frame in stack.split(";") if frame and not frame.startswith(("process ", "thread "))]
        if not frames or not samples.isdigit():
            continue
        weight = int(samples)
        if any(frame.startswith(_WORKER) for frame in frames):
            # Line 59 is `tx.get()`: the thread waits for work. Anything else runs a call (SQLite's C code included).
            waiting_for_work = frames[-1].startswith(_WORKER) and frames[-1].endswith(":59)")
            waiting += weight if waiting_for_work else 0
            busy += 0 if waiting_for_work else weight
            continue
        if any(frame.startswith(_WRITER) for frame in frames):
            writing += weight  # the SQLite writer thread, in a transaction (SQLite's C code and fsync included)
            continue
        if any(frame.startswith(_EXECUTOR) for frame in frames):
            continue  # the writer thread waiting for the next transaction
        loop += weight
        function, file = _frame(frames[-1])
        own[f"{function} ({file})"] += weight
        package = file.split("/", 1)[0].removesuffix(".py")
        packages[package if file.endswith(".py") else "other"] += weight
        # Inclusive time in the service's own code, less the entry points every sample passes through.
        names = {f"{f} ({p})" for f, p in map(_frame, frames) if p.startswith("presence/") and p != "presence/cli.py"}
        for name in names:
            service[name] += weight

    def shares(counter: Counter[str], limit: int = count) -> list[tuple[str, float]]:
        return [(name, 100 * n / loop) for name, n in counter.most_common(limit)] if loop else []

    return ProfileSummary(loop, shares(own), shares(packages, 8), shares(service), busy, waiting, writing)


def _frame(frame: str) -> tuple[str, str]:
    """``"function (path/file.py:123)"`` as ``("function", "path/file.py")``; py-spy shortens the paths."""
    function, _, where = frame.partition(" (")
    return function, where.rsplit(":", 1)[0].rstrip(")")


# ----------------------------------------------------------------------- the run


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
    servers: list[Server] = field(default_factory=list)

    def server(self, name: str, argv: Sequence[str], environment: dict[str, str]) -> Server:
        server = Server(name, argv, environment, self.workdir, self.load.pin)
        self.servers.append(server)
        return server

    def presence_server(self, name: str, database: Database, extra: dict[str, str] | None = None) -> Server:
        return self.server(name, [*presence_command(), "serve"], presence_environment(database.url, extra))

    def start(self, server: Server) -> None:
        """Start ``server`` now; it is stopped when the run ends, whatever happens."""
        if server.process is None:
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


def write_paths(path: Path, paths: Sequence[str]) -> Path:
    path.write_text("".join(f"{p}\n" for p in paths))
    return path


ROWS = ("B1", "B2", "B3", "I1", "I2", "I3", "I4", "Q1", "Q2", "L1", "L2")


def selected_rows(only: str | None) -> set[str]:
    """The rows ``--only`` asks for (all by default); Q1 and Q2 query the database I1 fills, so they bring it."""
    if not only:
        return set(ROWS)
    wanted = {key.strip().upper() for key in only.split(",") if key.strip()}
    unknown = wanted - set(ROWS)
    if unknown:
        raise SystemExit(f"bench: unknown rows in --only: {', '.join(sorted(unknown))} (rows: {', '.join(ROWS)})")
    return wanted | ({"I1"} if wanted & {"Q1", "Q2"} else set())


def run(bench: Bench) -> None:
    """Prepare every row, start every server, then measure in rounds: with --repeat N, N rounds over all rows.

    Interleaving the rows, rather than measuring one row N times and then the
    next, spreads a noisy neighbour's bursts over the baseline and the service
    alike, so the ratios stay fair on a shared machine.
    """
    args = bench.args
    subjects = plan(bench)
    for subject in subjects:
        bench.start(subject.server)
    for attempt in range(max(args.repeat, 1)):
        if args.repeat > 1:
            log(f"round {attempt + 1} of {args.repeat}")
        for subject in subjects:
            bench.measure(subject, attempt)
    for subject in subjects:
        bench.conclude(subject)


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
        server = functools.cache(
            lambda: bench.server("baseline", [sys.executable, str(BASELINE_APP)], presence_environment("unused"))
        )
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


def _fixed(path: Path) -> Callable[[], Path]:
    return lambda: path


def presence_paths_of(uids: Sequence[str]) -> list[str]:
    return [f"/users/{u}/presence" for u in uids]


def sample_big_paths(users: int, seed: int, count: int = 100_000) -> list[str]:
    """Uniformly random stored users (so the 1M database is read all over, not in one corner)."""
    rng = random.Random(seed)  # noqa: S311 - seeded test data, not secrets
    return presence_paths_of([bigdb.uid(rng.randrange(users)) for _ in range(min(count, users * 20))])


def migrate(database: Database, workdir: Path) -> None:
    done = subprocess.run(  # noqa: S603
        [*presence_command(), "migrate"],
        env=presence_environment(database.url),
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
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


# ------------------------------------------------------------------------ report


def machine(args: argparse.Namespace, pin: Pinning, wrk: str) -> list[tuple[str, str]]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = "unknown"
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    wrk_version = subprocess.run([wrk, "--version"], capture_output=True, text=True, check=False)  # noqa: S603
    postgres = "skipped"
    if not args.skip_postgres:
        with contextlib.suppress(OSError, asyncpg.PostgresError, TimeoutError):
            dsn = args.postgres_url.replace("postgresql+asyncpg://", "postgresql://", 1)
            postgres = PostgresDatabase.server_version(dsn)

    def version(package: str) -> str:
        try:
            return importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            return "?"

    return [
        ("presence", source_version()),
        ("nproc", str(len(os.sched_getaffinity(0)))),
        ("CPU", cpu),
        ("memory", memory),
        ("kernel", platform.release()),
        ("Python", platform.python_version()),
        (
            "packages",
            f"aiohttp {version('aiohttp')}, SQLAlchemy {version('sqlalchemy')}, aiosqlite {version('aiosqlite')}, "
            f"asyncpg {version('asyncpg')}, orjson {version('orjson')}",
        ),
        ("SQLite", sqlite3.sqlite_version),
        ("PostgreSQL", postgres),
        ("wrk", (wrk_version.stdout or wrk_version.stderr).split("Copyright")[0].strip()),
        ("pinning", pin.description),
        (
            "load",
            f"{args.duration:g} s per row ({'median of ' + str(args.repeat) + ' runs, ' if args.repeat > 1 else ''}"
            f"after {args.warmup:g} s warm-up), {args.threads} wrk thread(s), "
            f"{args.connections} connections ({args.latency_connections} for the latency rows)",
        ),
    ]


def source_version() -> str:
    """The commit measured, and whether the working tree had changes on top of it."""
    git = shutil.which("git")
    if git is None:
        return "unknown (no git)"
    head = subprocess.run([git, "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=False)  # noqa: S603
    if head.returncode != 0:
        return "unknown (not a git checkout)"
    status = subprocess.run(  # noqa: S603
        [git, "status", "--porcelain", "--", "presence", "migrations", "pyproject.toml"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    dirty = " with uncommitted changes to the service" if status.stdout.strip() else ""
    return f"commit {head.stdout.strip()}{dirty}"


def ratio(value: float, reference: WrkResult | None, field: str) -> str:
    base = getattr(reference, field) if reference is not None else 0.0
    return f"{value / base:.2f}{TIMES}" if base > 0 else "n/a"


def percent(value: float | None, missing: str = "?") -> str:
    return missing if value is None else f"{value:.0f}"


def table(rows: Sequence[Row]) -> list[str]:
    lines = [
        f"| Row | What | Server | Conns | req/s | {TIMES} base | p50 ms | {TIMES} base | p99 ms | {TIMES} base "
        "| non-2xx | peak RSS MB | CPU % server | postgres | wrk | others |",
        "| --- | --- | --- |" + " ---: |" * 13,
    ]
    for row in rows:
        if row.result is None:
            reason = row.skipped or "not run"
            lines.append(
                f"| {row.key} | {row.label} | {row.server} | {row.connections} | skipped: {reason} |" + " |" * 11
            )
            continue
        result = row.result
        # Baseline rows are their own reference; a service row whose baseline did not run has no ratios.
        base = result if row.baseline is None else row.baseline.result
        rss = f"{row.peak_rss_mb:.0f}" if row.peak_rss_mb is not None else "?"
        non2xx = str(result.non2xx) + (f" ({result.errors} socket errors)" if result.errors else "")
        label = row.label + (f" — {row.note}" if row.note else "")
        lines.append(
            f"| {row.key} | {label} | {row.server} | {row.connections} | {result.rps:,.0f} | "
            f"{ratio(result.rps, base, 'rps')} | {result.p50_ms:.2f} | {ratio(result.p50_ms, base, 'p50_ms')} | "
            f"{result.p99_ms:.2f} | {ratio(result.p99_ms, base, 'p99_ms')} | {non2xx} | {rss} | "
            f"{percent(result.server_cpu)} | {percent(result.postgres_cpu, '')} | {percent(result.wrk_cpu)} | "
            f"{percent(result.others_cpu)} |"
        )
    return lines


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    measured: str
    passed: bool | None  # None: could not be measured in this run

    def describe(self) -> str:
        verdict = "SKIP" if self.passed is None else ("PASS" if self.passed else "FAIL")
        return f"| {self.name} | {self.measured} | **{verdict}** |"


def targets(rows: Sequence[Row]) -> list[Target]:
    found = {row.key: row.result for row in rows}

    def rps(key: str) -> float | None:
        result = found.get(key)
        return result.rps if result is not None else None

    def compare(name: str, value: float | None, reference: float | None, bound: float, above: bool) -> Target:
        if value is None or reference is None or reference <= 0:
            return Target(name, "not measured", None)
        share = value / reference
        return Target(name, f"{share:.2f}{TIMES}", share >= bound if above else share <= bound)

    out = [
        compare(
            f"SQLite intake req/s ≥ {INTAKE_VS_BASELINE:.0%} of baseline POST (I1 / B1)",
            rps("I1"),
            rps("B1"),
            INTAKE_VS_BASELINE,
            above=True,
        ),
        compare(
            f"SQLite intake req/s ≥ {INTAKE_VS_NAIVE:g}{TIMES} naive (I1 / I2)",
            rps("I1"),
            rps("I2"),
            INTAKE_VS_NAIVE,
            True,
        ),
    ]
    intake = next((row for row in rows if row.key == "I1"), None)
    name = f"SQLite intake p99 < {INTAKE_P99_MS:g} ms at {intake.connections if intake else 64} connections (I1)"
    if intake is None or intake.result is None:
        out.append(Target(name, "not measured", None))
    else:
        p99 = intake.result.p99_ms
        out.append(Target(name, f"{p99:.1f} ms", p99 < INTAKE_P99_MS))
    out += [
        compare(
            f"PostgreSQL intake req/s ≥ {POSTGRES_VS_BASELINE:.0%} of baseline POST (I3 / B1)",
            rps("I3"),
            rps("B1"),
            POSTGRES_VS_BASELINE,
            above=True,
        ),
        compare(
            f"GET presence req/s ≥ {QUERY_VS_BASELINE:.0%} of baseline GET (Q1 / B2)",
            rps("Q1"),
            rps("B2"),
            QUERY_VS_BASELINE,
            above=True,
        ),
        compare(
            f"GET receipts req/s ≥ {QUERY_VS_BASELINE:.0%} of baseline GET (Q2 / B2)",
            rps("Q2"),
            rps("B2"),
            QUERY_VS_BASELINE,
            above=True,
        ),
    ]
    small, big = found.get("L1"), found.get("L2")
    for percentile in ("p50", "p99"):
        name = f"GET presence {percentile} at the big database ≤ {BIG_VS_SMALL:g}{TIMES} at the small one (L2 / L1)"
        if small is None or big is None:
            out.append(Target(name, "not measured", None))
            continue
        value, reference = getattr(big, f"{percentile}_ms"), getattr(small, f"{percentile}_ms")
        out.append(
            Target(
                name,
                f"{value:.2f} ms / {reference:.2f} ms = {value / reference:.2f}{TIMES}",
                value / reference <= BIG_VS_SMALL,
            )
        )
    service_rss = [(row.peak_rss_mb, row.key) for row in rows if row.service and row.peak_rss_mb is not None]
    if service_rss:
        peak, where = max(service_rss)
        out.append(
            Target(
                f"peak RSS < {PEAK_RSS_MB:g} MB, every presence process",
                f"max {peak:.0f} MB ({where})",
                peak < PEAK_RSS_MB,
            )
        )
    return out


def profile_section(name: str, svg: Path, raw: Path) -> list[str]:
    summary = summarise_profile(raw)
    lines = ["", f"### Where the time goes: {name} (py-spy; flame graph `{svg}`)", ""]
    lines.append(
        f"Event-loop thread, {summary.loop_samples} samples; on top of the stack by package: "
        + ", ".join(f"{package} {share:.0f}%" for package, share in summary.packages)
        + "."
    )
    if summary.writer_busy:
        lines.append(f"SQLite writer thread: {summary.writer_busy} samples in a transaction.")
    if summary.worker_busy or summary.worker_waiting:
        lines.append(
            f"aiosqlite threads: {summary.worker_busy} samples running a database call, "
            f"{summary.worker_waiting} waiting for the next one."
        )
    lines += ["", "| self % | function (on top of the stack) | total % | in the service's code (inclusive) |"]
    lines.append("| ---: | --- | ---: | --- |")
    for index in range(max(len(summary.own), len(summary.service))):
        own, share = summary.own[index] if index < len(summary.own) else ("", 0.0)
        mine, total = summary.service[index] if index < len(summary.service) else ("", 0.0)
        lines.append(
            f"| {share:.1f} | `{own}` | {total:.1f} | `{mine}` |" if mine else f"| {share:.1f} | `{own}` | | |"
        )
    return lines


def report(bench: Bench, about: list[tuple[str, str]]) -> tuple[str, bool, bool]:
    lines = ["## presence benchmark", "", "| Machine | |", "| --- | --- |"]
    lines += [f"| {name} | {value} |" for name, value in about]
    lines += ["", *table(bench.rows), ""]
    lines += ["### Outcome checks", ""]
    lines += [f"- {check.describe()}" for check in bench.checks] or ["- no intake row ran"]
    lines += ["", "### Targets", "", "| Target | Measured | |", "| --- | --- | --- |"]
    found = targets(bench.rows)
    lines += [target.describe() for target in found]
    noisy = [
        f"{row.key} ({row.result.others_cpu:.0f}%)"
        for row in bench.rows
        if row.result is not None and (row.result.others_cpu or 0) > NOISY_OTHERS_CPU
    ]
    if noisy:
        lines += [
            "",
            f"**Noise:** other processes used more than {NOISY_OTHERS_CPU:g}% of a core during "
            + ", ".join(noisy)
            + "; those figures understate what this machine can do. Re-run when it is quiet"
            + ("." if bench.args.repeat > 1 else ", or with --repeat 3."),
        ]
    lines += ["", *bench.notes]
    for name, svg, raw in bench.profiler.reports:
        lines += profile_section(name, svg, raw)
    checks_passed = all(check.passed for check in bench.checks)
    targets_met = all(target.passed is not False for target in found)
    return "\n".join(lines) + "\n", checks_passed, targets_met


# -------------------------------------------------------------------------- main


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
        cleanup.callback(_stop_all, bench.servers)
        try:
            run(bench)
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


def quietly(action: Callable[[], None]) -> None:
    """Run a clean-up step that may already have been done, or may fail for the reason being handled."""
    with contextlib.suppress(Exception):
        action()


def _stop_all(servers: Sequence[Server]) -> None:
    for server in servers:
        with contextlib.suppress(Exception):
            server.stop()


if __name__ == "__main__":
    sys.exit(main())
