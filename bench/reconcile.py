"""One reconciliation pass (contract §10) over N users online, against the stand-in for CometChat's REST API.

    .venv/bin/python bench/reconcile.py [--online 10000] [--stale 100] [--appeared 100] [--database-url URL]

The service holds ``--online`` users online (one legacy ``connected`` each, long ago); CometChat
lists the same users online but for ``--stale`` of them, whom it has offline, and lists
``--appeared`` more the service never saw. One pass is timed, with the requests it sent to
the stand-in (``tests.support.cometchat``, a real HTTP server on this machine: no network
latency, so the time is the service's own cost plus loopback HTTP). Fresh SQLite database in a
temporary directory unless ``--database-url`` names an empty one. Prints a markdown table.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import asyncio
import tempfile
import time
from datetime import UTC, datetime

import orjson

from presence.db.engine import create_engine
from presence.db.schema import upgrade
from presence.intake.accept import accept
from presence.intake.committer import Committer
from presence.jobs.reconcile import run_pass
from presence.settings import Secret, Settings
from tests.support import payloads
from tests.support.cometchat import API_KEY, CometChatStandIn

T0 = 1_763_720_000_000


async def _seed(committer: Committer, uids: list[str]) -> None:
    received = datetime.now(UTC)
    window = 1000
    for start in range(0, len(uids), window):
        bodies = [
            payloads.connection(uid, "connected", T0, payloads.device(f"s-{uid}", connected_at=T0))
            for uid in uids[start : start + window]
        ]
        await asyncio.gather(*(committer.submit(accept(orjson.dumps(body), received_at=received)) for body in bodies))


async def main(online: int, stale: int, appeared: int, database_url: str | None) -> None:
    with tempfile.TemporaryDirectory() as directory:
        url = database_url or f"sqlite+aiosqlite:///{directory}/bench.db"
        async with CometChatStandIn() as cometchat:
            settings = Settings(database_url=url, cometchat_api_url=cometchat.url, cometchat_api_key=Secret(API_KEY))
            here = [f"user-{i:06d}" for i in range(online)]
            cometchat.online(*here[stale:], *(f"new-{i:06d}" for i in range(appeared)))
            cometchat.offline(*here[:stale])
            engine = create_engine(settings)
            try:
                await upgrade(engine)
                committer = Committer.for_settings(engine, settings)
                await committer.start()
                try:
                    print(f"seeding {online} users online ...", file=sys.stderr)
                    await _seed(committer, here)
                    started = time.perf_counter()
                    summary = await run_pass(engine, committer, settings)
                    seconds = time.perf_counter() - started
                finally:
                    await committer.close()
            finally:
                await engine.dispose()
    listings = len(cometchat.listings())
    lookups = len(cometchat.lookups())
    print("| backend | online here | stale | appeared | listing requests | confirmations | requests | time |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    print(
        f"| {settings.database_url.split(':')[0]} | {online} | {stale} | {appeared} | {listings} | {lookups}"
        f" | {summary.requests} | {seconds:.2f} s |"
    )
    print(f"\n{summary.describe()}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--online", type=int, default=10_000)
    parser.add_argument("--stale", type=int, default=100)
    parser.add_argument("--appeared", type=int, default=100)
    parser.add_argument("--database-url", default=None)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.online, arguments.stale, arguments.appeared, arguments.database_url))
