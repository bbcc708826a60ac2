"""The servers of a run: each a subprocess on a free port, pinned to the server's core, always stopped."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO

from bench.load import API_TOKEN, HOOK_PASSWORD, HOOK_USERNAME, Pinning
from bench.progress import log

START_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0
MB = 1_000_000


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


def stop_all(servers: Sequence[Server]) -> None:
    for server in servers:
        with contextlib.suppress(Exception):
            server.stop()
