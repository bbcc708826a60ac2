"""Contract §9, forwarding: the changes POSTed to the app, signed as Standard Webhooks say, in ``seq``
order, at least once, through refusals, timeouts, restarts and a second replica.

The app is a real HTTP server (:class:`tests.support.receiver.Receiver`) that verifies every POST
with the ``standardwebhooks`` package, as the README tells an app to. Changes are recorded through
the steps intake runs (:class:`presence.db.changes.ChangeRecorder`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import orjson
import pytest
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from presence.live.forward import MAX_DELAY, delay_after, shown_url
from presence.settings import Secret, Settings
from tests.support import payloads
from tests.support.api import Api, make_settings, serving
from tests.support.change_feed import ChangeFeed, presence_change
from tests.support.receiver import WAIT, Receiver, new_secret
from tests.support.server import ServerProcess, free_port, presence_environment

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def forwarding(url: str, receiver: Receiver, **changes: object) -> Settings:
    """Settings that forward to ``receiver``, with a short timeout so that retries come soon (a
    lease long enough that no pause of a loaded machine lets it lapse: these apps stop cleanly)."""
    settings = make_settings(url).replace(
        forward_url=receiver.url,
        forward_secret=Secret(receiver.secret),
        forward_timeout=1.0,
        forward_lease=timedelta(seconds=10),
    )
    return settings.replace(**changes)


async def eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Poll ``check`` until it holds; fail after :data:`WAIT` seconds (a bound on a hang, not a timing)."""
    deadline = time.monotonic() + WAIT
    while not await check():
        assert time.monotonic() < deadline, f"{what} did not happen within {WAIT} s"
        await asyncio.sleep(0.05)


async def until_leased(feed: ChangeFeed) -> str:
    """Wait until a forwarder holds the lease: then it has its cursor. Its holder."""

    async def leased() -> bool:
        lease = await feed.lease()
        return lease.holder is not None and lease.delivered_through is not None

    await eventually(leased, "taking the lease")
    holder = (await feed.lease()).holder
    assert holder is not None
    return holder


async def until_delivered(feed: ChangeFeed, through: int) -> None:
    """Wait until the cursor says every change up to ``through`` was delivered."""

    async def delivered() -> bool:
        return (await feed.lease()).delivered_through == through

    await eventually(delivered, f"delivering up to {through}")


async def metric(client: TestClient, name: str, **labels: str) -> float | None:  # type: ignore[type-arg]
    return (await metric_samples(client)).get((name, tuple(sorted(labels.items()))))


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def metric_samples(client: TestClient) -> Samples:  # type: ignore[type-arg]
    response = await Api(client).get("/metrics")
    assert response.status == 200, await response.text()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(await response.text())
        for sample in family.samples
    }


@contextlib.asynccontextmanager
async def feed_of(url: str) -> AsyncIterator[ChangeFeed]:
    async with ChangeFeed(url) as feed:
        yield feed


async def test_changes_arrive_signed_in_seq_order_from_where_forwarding_started(database_url: str) -> None:
    """Every POST verifies with the secret, carries ``{"changes": [...]}`` in ``seq`` order, at most
    ``forward_batch`` at a time; what was recorded before forwarding first ran is not sent."""
    async with Receiver(new_secret()) as receiver, feed_of(database_url) as feed:
        before = await feed.record([presence_change("early-1"), presence_change("early-2")])
        async with serving(forwarding(database_url, receiver, forward_batch=3)) as client:
            await until_leased(feed)
            assert (await feed.lease()).delivered_through == before
            for n in range(4):
                await feed.record([presence_change(f"u-{n}-{i}") for i in range(n + 1)])
            last = await feed.last_seq()
            await receiver.wait_for_seqs(range(before + 1, last + 1))
            await until_delivered(feed, last)
            samples = await metric_samples(client)
        assert receiver.acknowledged() == list(range(before + 1, last + 1))  # in order, once, nothing earlier
        for post in receiver.posts:
            assert post.payload is not None, "the signature did not verify"
            assert 1 <= len(post.seqs) <= 3
            assert post.headers["webhook-id"] == f"changes_{post.seqs[0]}_{post.seqs[-1]}"
            assert post.headers["Content-Type"] == "application/json"
            assert set(post.payload) == {"changes"}
            assert all(
                change["type"] == "presence" and change["uid"].startswith("u-") for change in post.payload["changes"]
            )
            with pytest.raises(WebhookVerificationError):
                Webhook(new_secret()).verify(post.body, post.headers)  # signed with this secret, not any
        assert samples[("presence_forward_delivered_total", ())] == last - before
        assert samples[("presence_forward_lag_seconds", ())] == 0
        assert (await feed.lease()).delivered_through == last


async def test_refusals_are_retried_with_the_same_batch_until_acknowledged(database_url: str) -> None:
    """A 500 and a 503 are retried, the same batch under the same ``webhook-id``; nothing is lost,
    and the failures are counted by status."""
    async with Receiver(new_secret(), answers=[500, 503]) as receiver, feed_of(database_url) as feed:
        async with serving(forwarding(database_url, receiver)) as client:
            await until_leased(feed)
            last = await feed.record([presence_change(f"u-{i}") for i in range(5)])
            await receiver.wait_for_seqs(range(last - 4, last + 1))
            await feed.record([presence_change("after")])
            await receiver.wait_for_seqs([last + 1])
            await until_delivered(feed, last + 1)
            samples = await metric_samples(client)
        first, second, third = receiver.posts[:3]
        assert [post.answered for post in receiver.posts[:3]] == [500, 503, 200]
        assert first.body == second.body == third.body
        assert {post.headers["webhook-id"] for post in (first, second, third)} == {f"changes_{last - 4}_{last}"}
        assert receiver.acknowledged() == list(range(last - 4, last + 2))
        assert samples[("presence_forward_failures_total", (("status", "500"),))] == 1
        assert samples[("presence_forward_failures_total", (("status", "503"),))] == 1


async def test_a_receiver_that_does_not_answer_in_time_is_retried(database_url: str) -> None:
    async with Receiver(new_secret(), answers=["hang"]) as receiver, feed_of(database_url) as feed:
        async with serving(forwarding(database_url, receiver, forward_timeout=0.5)) as client:
            await until_leased(feed)
            last = await feed.record([presence_change("u-1"), presence_change("u-2")])
            await receiver.wait_for_seqs([last - 1, last])
            samples = await metric_samples(client)
        assert receiver.posts[0].answered == "hang"
        assert receiver.posts[1].body == receiver.posts[0].body
        assert samples[("presence_forward_failures_total", (("status", "timeout"),))] >= 1


async def test_a_receiver_that_was_down_gets_everything_when_it_returns(database_url: str) -> None:
    """Nothing listens at the URL at first (connection refused, counted as ``error``); the changes
    recorded meanwhile all arrive, in order, once it listens; the lag says how old the oldest is."""
    secret = new_secret()
    port = free_port()
    down = Receiver(secret, port=port)  # made, not started: its URL is where the app will listen
    async with feed_of(database_url) as feed, serving(forwarding(database_url, down)) as client:
        await until_leased(feed)
        hour_ago = await feed.record([presence_change("u-0")], recorded_at_ms=_ms_ago(3_600_000))
        last = await feed.record([presence_change(f"u-{i}") for i in range(1, 4)])

        async def refused() -> bool:
            return await metric(client, "presence_forward_failures_total", status="error") is not None

        await eventually(refused, "a refused connection")
        assert (await metric_samples(client))[("presence_forward_lag_seconds", ())] >= 3600
        async with Receiver(secret, port=port) as receiver:
            await receiver.wait_for_seqs(range(hour_ago, last + 1))
            assert receiver.acknowledged() == list(range(hour_ago, last + 1))

            async def caught_up() -> bool:
                return await metric(client, "presence_forward_lag_seconds") == 0

            await eventually(caught_up, "catching up")


def _ms_ago(ms: int) -> int:
    return int(time.time() * 1000) - ms


async def test_a_restart_resumes_after_what_was_delivered(database_url: str) -> None:
    """A new process on the same database sends what was recorded while none ran, and not again
    what the first one delivered (it stopped cleanly: its cursor and its lease are in the database)."""
    async with Receiver(new_secret()) as receiver, feed_of(database_url) as feed:
        async with serving(forwarding(database_url, receiver)):
            first_holder = await until_leased(feed)
            delivered = await feed.record([presence_change(f"a-{i}") for i in range(3)])
            await receiver.wait_for_seqs(range(delivered - 2, delivered + 1))
        assert (await feed.lease()).holder is None  # given up on the way out: the next takes over at once
        while_down = await feed.record([presence_change(f"b-{i}") for i in range(3)])
        async with serving(forwarding(database_url, receiver)):
            assert await until_leased(feed) != first_holder
            await receiver.wait_for_seqs(range(delivered + 1, while_down + 1))
        assert receiver.acknowledged() == list(range(delivered - 2, while_down + 1))


async def test_two_replicas_send_each_change_once(database_url: str) -> None:
    """Two apps on one database: one holds the lease and sends; every change arrives exactly once."""
    async with Receiver(new_secret()) as receiver, feed_of(database_url) as feed:
        async with (
            serving(forwarding(database_url, receiver)) as one,
            serving(forwarding(database_url, receiver)) as two,
        ):
            await until_leased(feed)
            first = await feed.last_seq() + 1
            for n in range(10):
                await feed.record([presence_change(f"u-{n}-{i}") for i in range(3)])
                await asyncio.sleep(0.05)  # spread over several polls of both replicas
            last = await feed.last_seq()
            await receiver.wait_for_seqs(range(first, last + 1))
            await until_delivered(feed, last)
            delivered = [(await metric_samples(app))[("presence_forward_delivered_total", ())] for app in (one, two)]
        assert receiver.acknowledged() == list(range(first, last + 1))
        assert sorted(delivered) == [0, last - first + 1]


async def test_a_failover_resumes_where_the_dead_replica_stopped(database_url: str, tmp_path: Path) -> None:
    """Two ``serve`` processes; the one holding the lease is killed (it cannot give the lease up):
    once its lease expires the other sends everything after what the first had delivered."""
    async with Receiver(new_secret()) as receiver, feed_of(database_url) as feed:
        environment = presence_environment(
            database_url,
            extra={
                "PRESENCE_FORWARD_URL": receiver.url,
                "PRESENCE_FORWARD_SECRET": receiver.secret,
                "PRESENCE_FORWARD_TIMEOUT": "1",
                "PRESENCE_FORWARD_LEASE": "4s",
            },
        )
        with ServerProcess(environment, tmp_path, name="a") as a:
            await asyncio.to_thread(a.start)
            holder = await until_leased(feed)
            delivered = await feed.record([presence_change("a-1"), presence_change("a-2")])
            await receiver.wait_for_seqs([delivered - 1, delivered])
            with ServerProcess(environment, tmp_path, name="b") as b:
                await asyncio.to_thread(b.start)
                assert (await feed.lease()).holder == holder
                await asyncio.to_thread(a.kill)
                after = await feed.record([presence_change(f"b-{i}") for i in range(3)])
                await receiver.wait_for_seqs(range(delivered + 1, after + 1))
                assert (await feed.lease()).holder not in (None, holder)
        acknowledged = receiver.acknowledged()
        assert set(acknowledged) == set(range(delivered - 1, after + 1))
        assert acknowledged == sorted(acknowledged)  # at least once and in order, even across the failover


async def test_a_cursor_older_than_what_is_kept_goes_on_from_the_oldest_kept(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The service was stopped longer than retention: what was pruned meanwhile is gone for the app,
    which is told in the log; forwarding goes on after it."""
    async with Receiver(new_secret()) as receiver, feed_of(database_url) as feed:
        async with serving(forwarding(database_url, receiver)):
            await until_leased(feed)
        pruned = await feed.record([presence_change(f"old-{i}") for i in range(3)])
        await feed.prune_through(pruned)
        kept = await feed.record([presence_change("kept")])
        async with serving(forwarding(database_url, receiver)):
            await receiver.wait_for_seqs([kept])
            await until_delivered(feed, kept)
        assert receiver.acknowledged() == [kept]
        assert any("were pruned before they could be delivered" in r.getMessage() for r in caplog.records)


async def test_a_stuck_receiver_does_not_hold_up_webhooks_or_queries(database_url: str) -> None:
    """While every POST to the app hangs, ``/hook`` still acknowledges and the queries still answer."""
    async with Receiver(new_secret()) as receiver, feed_of(database_url) as feed:
        receiver.then = "hang"
        settings = forwarding(database_url, receiver, forward_timeout=30.0, forward_lease=timedelta(seconds=90))
        async with serving(settings) as client:
            api = Api(client)
            await until_leased(feed)
            await feed.record([presence_change("waiting")])
            async with asyncio.timeout(WAIT):
                await receiver.hanging.wait()
            for n in range(20):
                session = payloads.device(f"s-{n}")
                await api.hook(
                    payloads.connection(
                        f"stuck-{n}", "connected", 1_700_000_000_000 + n, session, connections=[session]
                    )
                )
            assert (await api.presence("stuck-19")) is not None
            assert not receiver.release.is_set()  # the POST was still hanging all along
            assert len(receiver.posts) == 1


async def test_a_webhook_reaches_the_app_as_a_change(database_url: str) -> None:
    """End to end: a connection posted to ``/hook`` reaches the app as a ``presence`` change."""
    async with Receiver(new_secret()) as receiver, feed_of(database_url) as feed:
        async with serving(forwarding(database_url, receiver)) as client:
            await until_leased(feed)
            session = payloads.device("s-1")
            await Api(client).hook(
                payloads.connection("e2e", "connected", 1_700_000_000_000, session, connections=[session])
            )
            await receiver.wait_until(lambda r: any(p.acknowledged for p in r.posts), limit=10)
        change = receiver.posts[0].payload["changes"][0]
        assert (change["type"], change["uid"], change["presence"]["status"]) == ("presence", "e2e", "online")


async def test_the_readme_receiver_verifies_and_deduplicates(database_url: str, tmp_path: Path) -> None:
    """The README's receiver, run as written (on a free port): it gets a forwarded change, skips the
    same change sent again, and refuses a POST signed with another secret."""
    section = README[README.index("## Forwarding changes to the app") :]
    [code] = re.findall(r"```python\n(.*?)```", section[: section.index("\n## ", 1)], re.S)
    port = free_port()
    script = tmp_path / "receiver.py"
    script.write_text(code.replace("port=8000", f"port={port}"))
    assert f"port={port}" in script.read_text()
    secret = new_secret()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        env={**os.environ, "PRESENCE_FORWARD_SECRET": secret},
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert process.stdout is not None
    try:
        async with asyncio.timeout(WAIT):
            while b"Press CTRL+C" not in await process.stdout.readline():  # aiohttp's last line at start
                pass
        url = f"http://127.0.0.1:{port}/presence-changes"
        settings = make_settings(database_url).replace(forward_url=url, forward_secret=Secret(secret))
        async with feed_of(database_url) as feed, serving(settings):
            await until_leased(feed)
            last = await feed.record([presence_change("readme-user")])
            async with asyncio.timeout(WAIT):
                printed = await process.stdout.readline()
            assert printed.decode().split() == [str(last), "presence", "readme-user"]
            await until_delivered(feed, last)
        body = orjson.dumps({"changes": [{"seq": last, "type": "presence", "uid": "readme-user"}]}).decode()
        async with aiohttp.ClientSession() as session:
            for signer, status in ((Webhook(secret), 204), (Webhook(new_secret()), 401)):
                now = datetime.now(UTC)
                headers = {
                    "webhook-id": "again",
                    "webhook-timestamp": str(int(now.timestamp())),
                    "webhook-signature": signer.sign("again", now, body),
                }
                async with session.post(url, data=body, headers=headers) as response:
                    assert response.status == status
        process.terminate()
        async with asyncio.timeout(WAIT):
            rest = await process.stdout.read()
        assert str(last).encode() not in rest  # the repeat was skipped, the forgery refused
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()


def test_retries_wait_longer_each_time_up_to_a_minute() -> None:
    middle = [delay_after(n, jitter=lambda: 0.5) for n in range(1, 10)]
    assert middle == [1, 2, 4, 8, 16, 32, 60, 60, 60]
    assert delay_after(3, jitter=lambda: 0.0) == 3
    assert delay_after(3, jitter=lambda: 1.0) == 5
    assert delay_after(10_000, jitter=lambda: 1.0) == MAX_DELAY * 1.25


def test_the_logged_url_shows_no_credentials() -> None:
    assert shown_url("https://user:pw@app.example:8443/hooks?token=t") == "https://app.example:8443/hooks"
