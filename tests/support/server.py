"""Real ``presence`` processes for tests: a server on a free port, one-shot commands, empty databases.

:class:`ServerProcess` starts ``python -m presence serve``, polls ``/healthz``
with a deadline, keeps stderr in a file for failure messages, and is always
stopped when its ``with`` block ends, whatever happened inside it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from sqlalchemy.engine import make_url

from tests.support.api import API_TOKEN, HOOK_PASSWORD, HOOK_USERNAME
from tests.support.databases import connect_postgres, postgres_server_url

#: How long a server may take to answer ``/healthz`` (it migrates first).
START_TIMEOUT = 30.0
#: How long a server may take to stop after SIGTERM.
STOP_TIMEOUT = 15.0
#: How long a one-shot command (``migrate``, ``rebuild``, a refusal) may take.
COMMAND_TIMEOUT = 60.0
#: Between two polls of ``/healthz``: a poll interval, never a synchronisation.
POLL_INTERVAL = 0.05

PRESENCE_MODULE: tuple[str, ...] = (sys.executable, "-m", "presence")

_names = itertools.count()


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def presence_environment(
    database_url: str | None, *, credentials: bool = True, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """This process's environment without any ``PRESENCE_*`` variable, then the given ones."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("PRESENCE_")}
    environment["PYTHONUNBUFFERED"] = "1"
    # Tests post events from fixed past dates: retention must not expire them mid-test.
    environment["PRESENCE_INBOX_RETENTION"] = environment["PRESENCE_RECEIPT_RETENTION"] = "36500d"
    if database_url is not None:
        environment["PRESENCE_DATABASE_URL"] = database_url
    if credentials:
        environment["PRESENCE_HOOK_USERNAME"] = HOOK_USERNAME
        environment["PRESENCE_HOOK_PASSWORD"] = HOOK_PASSWORD
        environment["PRESENCE_API_TOKENS"] = API_TOKEN
    environment.update(extra or {})
    return environment


class ServerProcess:
    """One ``presence serve`` process; use it as a context manager so it never outlives the test."""

    def __init__(
        self,
        environment: Mapping[str, str],
        log_directory: Path,
        *,
        args: Sequence[str] = (),
        host: str = "127.0.0.1",
        name: str = "server",
        client_ssl: ssl.SSLContext | None = None,
        program: Sequence[str] = PRESENCE_MODULE,
    ) -> None:
        """``client_ssl``: the server serves HTTPS (``args`` carry ``--tls-cert``, ``--tls-key``) and
        this context, which trusts its certificate, is how ``/healthz`` is polled.

        ``program``: what runs ``serve``, as for :func:`run_presence` (the benchmark puts ``taskset``
        in front, which execs it, so :attr:`pid` stays the server's)."""
        self.environment = dict(environment)
        self.client_ssl = client_ssl
        self.program = tuple(program)
        self.args = tuple(args)
        self.host = host
        self.port = free_port(host)
        self.cwd = log_directory
        serial = next(_names)
        self.stderr_path = log_directory / f"{name}-{serial}.stderr"
        self.stdout_path = log_directory / f"{name}-{serial}.stdout"
        self._process: subprocess.Popen[bytes] | None = None
        self._files: list[IO[bytes]] = []

    @property
    def url(self) -> str:
        scheme = "http" if self.client_ssl is None else "https"
        return f"{scheme}://{self.host}:{self.port}"

    @property
    def command(self) -> list[str]:
        return [*self.program, "serve", "--host", self.host, "--port", str(self.port), *self.args]

    @property
    def pid(self) -> int:
        return self._running().pid

    @property
    def returncode(self) -> int | None:
        return None if self._process is None else self._process.poll()

    def start(self, *, timeout: float = START_TIMEOUT) -> Self:
        """Start the process and return once ``/healthz`` answers ``200``."""
        if self._process is not None:
            raise RuntimeError("this server was already started")
        stderr = self.stderr_path.open("wb")
        stdout = self.stdout_path.open("wb")
        self._files = [stderr, stdout]
        self._process = subprocess.Popen(
            self.command, env=self.environment, cwd=self.cwd, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr
        )
        self.wait_until_healthy(timeout=timeout)
        return self

    def wait_until_healthy(self, *, timeout: float = START_TIMEOUT) -> None:
        process = self._running()
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise AssertionError(
                    f"the server exited with {process.returncode} before it answered\n{self.describe()}"
                )
            if self._healthy():
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"/healthz did not answer within {timeout} s\n{self.describe()}")
            time.sleep(POLL_INTERVAL)

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/healthz", timeout=1, context=self.client_ssl) as response:
                return response.status == 200  # type: ignore[no-any-return]
        except (OSError, urllib.error.URLError):
            return False

    def kill(self) -> None:
        """SIGKILL: no shutdown hook runs, nothing is flushed."""
        process = self._running()
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
        process.wait(timeout=STOP_TIMEOUT)
        self._close_files()

    def terminate(self, *, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM, then wait for the exit; SIGKILL and fail if it does not come."""
        process = self._running()
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            returncode = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"the server did not stop within {timeout} s of SIGTERM\n{self.describe()}") from None
        self._close_files()
        return returncode

    def stderr(self) -> str:
        for file in self._files:
            file.flush()
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def describe(self) -> str:
        return f"command: {' '.join(self.command)}\n--- stderr ---\n{self.stderr()}"

    def _running(self) -> subprocess.Popen[bytes]:
        if self._process is None:
            raise RuntimeError("this server was not started")
        return self._process

    def _close_files(self) -> None:
        for file in self._files:
            file.close()
        self._files = []

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if self._process is not None and self._process.poll() is None:
            self.kill()
        self._close_files()


@dataclass(frozen=True, slots=True)
class Completed:
    returncode: int
    stdout: str
    stderr: str


async def run_presence(
    args: Sequence[str],
    environment: Mapping[str, str],
    cwd: Path,
    *,
    program: Sequence[str] = PRESENCE_MODULE,
    time_limit: float = COMMAND_TIMEOUT,
) -> Completed:
    """Run one ``presence`` command to its end; kill it and fail if it takes longer than ``time_limit``."""
    process = await asyncio.create_subprocess_exec(
        *program,
        *args,
        env=dict(environment),
        cwd=cwd,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(time_limit):
            stdout, stderr = await process.communicate()
    except TimeoutError:
        raise AssertionError(f"presence {' '.join(args)} did not finish within {time_limit} s") from None
    finally:
        if process.returncode is None:  # timed out or cancelled: never leave it running
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return Completed(process.returncode, stdout.decode(errors="replace"), stderr.decode(errors="replace"))


@contextlib.asynccontextmanager
async def empty_database(backend: str, directory: Path) -> AsyncIterator[str]:
    """The URL of a database without a single table (not even Alembic's), dropped afterwards."""
    if backend == "sqlite":
        path = directory / f"empty-{uuid.uuid4().hex[:8]}.db"
        try:
            yield f"sqlite+aiosqlite:///{path}"
        finally:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)  # noqa: ASYNC240 - a local unlink, instant
        return
    server = make_url(postgres_server_url())
    name = f"presence_empty_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin = await connect_postgres(server)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield server.set(database=name).render_as_string(hide_password=False)
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()
