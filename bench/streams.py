"""The change streams' costs: intake with and without open streams, and a change's trip across replicas.

    .venv/bin/python bench/streams.py [--streams 1000] [--duration 10] [--rounds 3] [--samples 60] [--via recorder]

Two ``presence serve`` replicas, A and B, on one fresh PostgreSQL database. A is pinned to the
server core; B, wrk and this script (which holds the streams) to the client core.

- **Intake with streams**: wrk posts the benchmark's webhook traffic to A, in interleaved rounds,
  with no stream open and with ``--streams`` streams open on A (each following one uid of the
  traffic, as an app following its users does; ``--unfiltered`` follows everything instead). Each
  stream's events are read as they come. The ratio of the two rates, in the same run, is the cost
  of the streams to intake (the target: at least 0.90).
- **Across replicas**: one stream on A; a change is committed elsewhere and the time until its event
  arrives on A is measured, ``--samples`` times at irregular intervals (so as not to ride the
  one-second fallback). ``--via hook`` posts a webhook to B (needs intake to record changes);
  ``--via recorder`` commits the change with ``ChangeRecorder`` on a connection of this script, as
  B's intake does, ``NOTIFY`` included. The clock starts when the commit (or B's ``200``) returns.

Prints a markdown report to stdout; progress to stderr. See docs/benchmarks.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import asyncio
import contextlib
import os
import random
import shutil
import statistics
import tempfile
import time
from collections.abc import Sequence

import aiohttp
import orjson

from bench import workload
from bench.databases import PostgresDatabase
from bench.load import Load, WrkResult, pinning
from bench.progress import log
from bench.servers import Server, presence_command, running, server_environment
from presence.http.serving import raise_open_file_limit
from tests.support.api import API_AUTH, HOOK_AUTH
from tests.support.changes import change_writer, presence_change

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
#: The traffic's size: at 5,000 webhooks/s, 3 rounds of 10 s of both rows post 300,000. Past the end
#: of its bodies wrk starts again from the first, whose events are applied already: they change
#: nothing, so the streams would have nothing to carry (the run says so if it happens).
STREAMS_EVENTS = 400_000


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/streams.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--streams", type=int, default=1000, help="streams open on A in the second row")
    parser.add_argument("--unfiltered", action="store_true", help="streams follow every change, not one uid each")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of wrk per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of both rows; the median is shown")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections")
    parser.add_argument("--samples", type=int, default=60, help="changes timed across replicas")
    parser.add_argument("--via", choices=("recorder", "hook"), default="hook", help="how the timed change is made")
    parser.add_argument("--users", type=int, default=workload.DEFAULT_USERS)
    parser.add_argument(
        "--events",
        type=int,
        default=STREAMS_EVENTS,
        help="webhook bodies in the traffic: enough that no round replays what an earlier one applied",
    )
    parser.add_argument("--postgres-url", default=os.environ.get("PRESENCE_BENCH_POSTGRES_URL", DEFAULT_POSTGRES_URL))
    parser.add_argument("--no-pin", action="store_true")
    parser.add_argument("--server-core", type=int, default=0)
    parser.add_argument("--client-core", type=int, default=1)
    return parser.parse_args(argv)


class Streams:
    """``count`` open streams on one server, each read as its events come."""

    def __init__(self, base_url: str, queries: Sequence[str]) -> None:
        self._base_url = base_url
        self._queries = queries
        self._session: aiohttp.ClientSession | None = None
        self._readers: list[asyncio.Task[None]] = []
        self.events = 0

    async def open(self) -> None:
        connector = aiohttp.TCPConnector(limit=0)
        self._session = aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None))
        responses = await asyncio.gather(
            *(
                self._session.get(f"{self._base_url}/changes/stream{query}", headers={"Authorization": API_AUTH})
                for query in self._queries
            )
        )
        for response in responses:
            assert response.status == 200, response.status
            self._readers.append(asyncio.create_task(self._read(response)))

    async def _read(self, response: aiohttp.ClientResponse) -> None:
        with contextlib.suppress(aiohttp.ClientError, asyncio.CancelledError):
            async for line in response.content:
                if line.startswith(b"id: "):
                    self.events += 1

    async def close(self) -> None:
        for reader in self._readers:
            reader.cancel()
        await asyncio.gather(*self._readers, return_exceptions=True)
        self._readers = []
        if self._session is not None:
            await self._session.close()


async def subscribers(base_url: str) -> int:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{base_url}/metrics", headers={"Authorization": API_AUTH}) as response,
    ):
        for line in (await response.text()).splitlines():
            if line.startswith("presence_stream_subscribers "):
                return int(float(line.split()[-1]))
    return 0


async def until_subscribers(base_url: str, count: int) -> None:
    """Wait until the server counts ``count`` open streams (polled over HTTP, as an operator would)."""
    while await subscribers(base_url) != count:  # noqa: ASYNC110 - another process's state
        await asyncio.sleep(0.1)


async def intake_rows(
    args: argparse.Namespace, load: Load, a: Server, bodies: Path, uids: Sequence[str]
) -> dict[str, list[WrkResult]]:
    results: dict[str, list[WrkResult]] = {"0 streams": [], f"{args.streams} streams": []}
    rng = random.Random(13)  # noqa: S311 - which uids the streams follow, not secrets
    log("warming up")
    warmup = await asyncio.to_thread(
        load.run, a.url, "hook", bodies, seconds=2, connections=args.connections
    )  # fmt: skip
    offset = warmup.next_offset
    for round_ in range(1, args.rounds + 1):
        for row, measured in results.items():
            streams = None
            if row != "0 streams":
                queries = ["" if args.unfiltered else f"?uid={uid}" for uid in rng.sample(list(uids), args.streams)]
                streams = Streams(a.url, queries)
                await streams.open()
                await until_subscribers(a.url, args.streams)
            log(f"round {round_}: intake with {row}")
            watch = {"server": [a.pid]}
            result = await asyncio.to_thread(
                load.run, a.url, "hook", bodies, seconds=args.duration, connections=args.connections,
                offset=offset, watch=watch,
            )  # fmt: skip
            if result.next_offset < offset:
                log(
                    "  warning: the traffic ran past its last body; what follows replays events already"
                    " applied, which record no change: run again with a larger --events"
                )
            offset = result.next_offset
            measured.append(result)
            if streams is not None:
                log(f"  the streams read {streams.events} events")
                await streams.close()
                await until_subscribers(a.url, 0)
    return results


async def latency(args: argparse.Namespace, a: Server, b: Server, database_url: str) -> list[float]:
    """Seconds from a change's commit elsewhere to its event on A's stream, ``args.samples`` times."""
    rng = random.Random(17)  # noqa: S311 - pauses between timed changes, not secrets
    delays: list[float] = []
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as session,
        change_writer(database_url) as writer,
    ):
        response = await session.get(f"{a.url}/changes/stream?uid=latency-probe", headers={"Authorization": API_AUTH})
        assert response.status == 200
        for sample in range(args.samples):
            await asyncio.sleep(rng.uniform(0.05, 0.4))
            status = "online" if sample % 2 == 0 else "offline"
            if args.via == "recorder":
                await writer.record(presence_change("latency-probe", status))
            else:
                at = workload.START_MS + 10_000_000 + sample * 1000
                body = {
                    "trigger": "user_connection_status_changed",
                    "appId": workload.APP_ID,
                    "data": {
                        "timestamp": at,
                        "user": {"uid": "latency-probe", "status": status},
                        "status": status,
                        "currentConnection": {
                            "action": "connected" if status == "online" else "disconnected",
                            "platform": "web",
                            "connectedAt": workload.START_MS + 10_000_000,
                        },
                        "userPresenceChanged": True,
                    },
                }
                async with session.post(
                    f"{b.url}/hook", data=orjson.dumps(body), headers={"Authorization": HOOK_AUTH}
                ) as posted:
                    assert posted.status == 200, await posted.text()
            committed = time.perf_counter()
            async with asyncio.timeout(10):
                while True:
                    line = await response.content.readline()
                    assert line, "the stream ended"
                    if line.startswith(b"id: "):
                        break
            delays.append(time.perf_counter() - committed)
        response.close()
    return delays


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def cpu_per_webhook(result: WrkResult) -> float | None:
    """The server's CPU seconds per webhook answered: what the streams add to each, whatever the load around."""
    if result.server_cpu is None or not result.rps:
        return None
    return result.server_cpu / 100 / result.rps


def report(args: argparse.Namespace, rows: dict[str, list[WrkResult]], delays: list[float], about: str) -> str:
    lines = [f"Streams benchmark: {about}", ""]
    lines.append("| Row | webhooks/s (median) | runs | p50 | p99 | server CPU | server CPU per webhook |")
    lines.append("| --- | --- | --- | --- | --- | --- | --- |")
    medians, costs = {}, {}
    for row, results in rows.items():
        rates = [result.rps for result in results]
        medians[row] = statistics.median(rates)
        p50 = statistics.median(result.p50_ms for result in results)
        p99 = statistics.median(result.p99_ms for result in results)
        cpu = [result.server_cpu for result in results if result.server_cpu is not None]
        per = [cost for cost in map(cpu_per_webhook, results) if cost is not None]
        costs[row] = statistics.median(per) if per else 0.0
        lines.append(
            f"| intake, {row} | {medians[row]:.0f} | {', '.join(f'{rate:.0f}' for rate in rates)} "
            f"| {p50:.1f} ms | {p99:.1f} ms | {statistics.median(cpu) if cpu else 0:.0f}% | {costs[row] * 1e6:.0f} µs |"
        )
    zero, many = medians["0 streams"], medians[f"{args.streams} streams"]
    ratio = many / zero if zero else 0.0
    lines += ["", f"Intake with {args.streams} streams / without: **{ratio:.3f}** (target at least 0.90: "
              f"{'PASS' if ratio >= 0.9 else 'FAIL'})"]  # fmt: skip
    cost_zero, cost_many = costs["0 streams"], costs[f"{args.streams} streams"]
    if cost_zero and cost_many:
        lines.append(
            f"Server CPU per webhook without streams / with: **{cost_zero / cost_many:.3f}** (the same cost as a"
            " ratio that a busy machine disturbs less: the rate falls with the load around, the CPU per webhook less)"
        )
    if delays:
        ordered = sorted(delays)
        p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
        lines += [
            "",
            f"Across replicas (via {args.via}, {len(delays)} changes): p50 {_ms(statistics.median(delays))},"
            f" p99 {_ms(p99)}, max {_ms(ordered[-1])} (target: within 1 s: {'PASS' if ordered[-1] < 1 else 'FAIL'})",
        ]
    return "\n".join(lines)


async def run(args: argparse.Namespace) -> str:
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("bench: wrk is not installed (Debian/Ubuntu: apt-get install -y wrk)")
    raise_open_file_limit()
    pin = pinning(args)
    if pin.client:
        os.sched_setaffinity(0, {args.client_core})
    load = Load(wrk=wrk, pin=pin, threads=1, grace=3)
    workdir = Path(tempfile.mkdtemp(prefix="presence-streams-bench-"))
    database = PostgresDatabase(args.postgres_url)
    await asyncio.to_thread(database.create)
    try:
        traffic = workload.generate(users=args.users, events=args.events)
        bodies = workdir / "bodies.jsonl"
        traffic.write(bodies)
        environment = server_environment(database.url)
        a = Server("a", environment, workdir, program=[*pin.server, *presence_command()])
        b = Server("b", environment, workdir, program=[*pin.client, *presence_command()])
        with running(a), running(b):
            rows = await intake_rows(args, load, a, bodies, traffic.uids)
            log(f"timing {args.samples} changes across replicas (via {args.via})")
            delays = await latency(args, a, b, database.url)
        about = (
            f"{args.streams} {'unfiltered' if args.unfiltered else 'one-uid'} streams, {args.rounds} rounds of"
            f" {args.duration:g} s, {args.connections} wrk connections, PostgreSQL, {pin.description}"
        )
        return report(args, rows, delays, about)
    finally:
        await asyncio.to_thread(database.drop)
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    print(asyncio.run(run(parse_args(argv))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
