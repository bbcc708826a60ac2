"""py-spy: a server recorded through a measured run (``--profile DIR``), and its samples summed up."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bench.load import Pinning
from bench.servers import Server


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
