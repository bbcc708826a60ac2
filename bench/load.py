"""The load: wrk running ``bench/load.lua``, pinned to its core, and the CPU every process used meanwhile."""

from __future__ import annotations

import argparse
import bisect
import contextlib
import dataclasses
import json
import math
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.support.api import API_AUTH, HOOK_AUTH

LUA = Path(__file__).resolve().parent / "load.lua"


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
