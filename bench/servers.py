"""The servers of a run: the test suite's :class:`ServerProcess`, pinned to the server's core, stopped with SIGTERM.

Each runs on a free port of 127.0.0.1 with the test suite's environment
(:func:`server_environment`), is polled on ``/healthz`` until it answers, and
has its peak memory read just before it is stopped.
"""

from __future__ import annotations

import contextlib
import sys
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from bench.progress import log
from tests.support.server import ServerProcess, presence_environment

#: A server migrates its database before it answers ``/healthz``.
START_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0
MB = 1_000_000
BASELINE_APP = Path(__file__).resolve().parent / "baseline_app.py"


def presence_command() -> list[str]:
    """The virtual environment's ``presence`` script, as an operator runs it (``python -m presence`` without one)."""
    script = Path(sys.executable).parent / "presence"
    return [str(script)] if script.exists() else [sys.executable, "-m", "presence"]


def server_environment(database_url: str | None, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The test suite's environment (its credentials, which ``bench/load.lua`` sends), logging warnings and up."""
    return presence_environment(database_url, extra={"PRESENCE_LOG_LEVEL": "WARNING", **(extra or {})})


class Server(ServerProcess):
    """One ``presence serve`` of the run; ``program`` starts with the pinning command, which execs the server."""

    def __init__(self, name: str, environment: Mapping[str, str], workdir: Path, *, program: Sequence[str]) -> None:
        super().__init__(environment, workdir, name=name, program=program)
        self.name = name
        self.peak_rss_mb: float | None = None

    def read_peak_rss(self) -> float | None:
        """The process's peak resident set so far (VmHWM), in MB."""
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    self.peak_rss_mb = int(line.split()[1]) * 1024 / MB
        return self.peak_rss_mb

    def stop(self) -> None:
        """SIGTERM, once the peak memory is read; SIGKILL if it has not stopped within :data:`STOP_TIMEOUT`."""
        if self.returncode is None:
            self.read_peak_rss()
        try:
            self.terminate(timeout=STOP_TIMEOUT)
        except AssertionError:
            log(f"{self.name} did not stop within {STOP_TIMEOUT:.0f} s of SIGTERM: killed")

    def log_problems(self) -> Counter[str]:
        """How many WARNING / ERROR lines the server logged (it runs at PRESENCE_LOG_LEVEL=WARNING)."""
        counts: Counter[str] = Counter()
        for path in (self.stderr_path, self.stdout_path):
            with contextlib.suppress(OSError):
                for line in path.read_text(errors="replace").splitlines():
                    for level in ("WARNING", "ERROR", "CRITICAL"):
                        if f" {level} " in line:
                            counts[level] += 1
        return counts


class BaselineServer(Server):
    """``bench/baseline_app.py``, started, pinned and stopped as the service is; it takes no ``serve``."""

    @property
    def command(self) -> list[str]:
        return [*self.program, "--host", self.host, "--port", str(self.port)]


@contextlib.contextmanager
def running(server: Server) -> Iterator[Server]:
    log(f"starting {server.name} on port {server.port}")
    with server:  # ServerProcess kills it on the way out if it never came up
        server.start(timeout=START_TIMEOUT)
        try:
            yield server
        finally:
            server.stop()
