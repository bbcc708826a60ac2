"""Contract §7: health, readiness, and metrics."""

from __future__ import annotations

from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.ext.asyncio import create_async_engine

from presence.db.schema import downgrade, head_revision
from presence.http.app import create_app
from tests.support import payloads
from tests.support.api import Api, make_settings
from tests.support.typing import AiohttpClient

AT = 1_795_256_130_000


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def _metrics(api: Api) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = await api.get("/metrics")
    assert response.status == 200, await response.text()
    assert response.content_type == "text/plain"
    return _samples(await response.text())


async def test_healthz_and_readyz_need_no_token(api: Api) -> None:
    """§7: /healthz 200 while serving; /readyz 200 with the database up and the schema at head."""
    for path in ("/healthz", "/readyz"):
        response = await api.get(path, authorization=None)
        assert response.status == 200, await response.text()
    assert (await (await api.get("/readyz")).json()) == {"status": "ready", "revision": head_revision()}


async def test_readyz_is_503_when_the_schema_is_behind(api: Api, database_url: str) -> None:
    """§7: a database below the newest revision is not ready; the answer says what to run."""
    engine = create_async_engine(database_url)
    try:
        await downgrade(engine, "0001")
    finally:
        await engine.dispose()
    response = await api.get("/readyz", authorization=None)
    body = await response.json()
    assert response.status == 503
    assert body["error"]["code"] == "not_ready"
    assert "presence migrate" in body["error"]["message"]
    assert (await api.get("/healthz", authorization=None)).status == 200


async def test_readyz_is_503_when_the_database_is_unreachable(aiohttp_client: AiohttpClient, tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'missing' / 'x.db'}"
    api = Api(await aiohttp_client(create_app(make_settings(url))))
    response = await api.get("/readyz", authorization=None)
    assert response.status == 503
    assert (await response.json())["error"]["code"] == "not_ready"


async def test_metrics_need_a_token(api: Api) -> None:
    response = await api.get("/metrics", authorization=None)
    assert response.status == 401


async def test_metrics_count_events_by_trigger_and_outcome(api: Api) -> None:
    """§7: events by trigger and outcome, intake latency, commit batch sizes, users online."""
    session = payloads.device("s1", connected_at=AT)
    await api.hook(payloads.connection("u1", "connected", AT, session, connections=[session]))
    await api.hook(payloads.connection("u2", "connected", AT, session, connections=[session]))
    await api.hook(payloads.message(7, "u1_user_u2", "u1", category="action"))
    await api.hook({"trigger": "after_group_created", "data": {}})
    assert (await api.post_hook({"trigger": "message_read_receipt", "data": {}})).status == 400
    assert (await api.post_hook(b"not json")).status == 400
    assert (await api.post_hook({"trigger": "x"}, authorization=None)).status == 401

    samples = await _metrics(api)

    def events(trigger: str, outcome: str) -> float:
        return samples.get(("presence_events_total", (("outcome", outcome), ("trigger", trigger))), 0.0)

    assert events("after_connection_status_changed", "accepted") == 2
    assert events("after_message", "ignored") == 1
    assert events("other", "ignored") == 1  # an unknown trigger does not become a label
    assert events("message_read_receipt", "rejected") == 1
    assert events("other", "rejected") == 1
    assert events("other", "unauthorized") == 1
    assert samples[("presence_intake_seconds_count", ())] == 7
    assert samples[("presence_commit_batch_size_sum", ())] == 4  # every committed event, in some batches
    assert samples[("presence_users_online", ())] == 2


async def test_metrics_count_database_errors(aiohttp_client: AiohttpClient, tmp_path: Path) -> None:
    """§7: a commit that fails (database unreachable) is counted."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'missing' / 'x.db'}"
    api = Api(await aiohttp_client(create_app(make_settings(url))))
    session = payloads.device("s1", connected_at=AT)
    assert (await api.post_hook(payloads.connection("u1", "connected", AT, session))).status == 503
    samples = await _metrics(api)
    assert samples[("presence_database_errors_total", (("operation", "commit"),))] >= 1
    assert (
        samples[("presence_events_total", (("outcome", "unavailable"), ("trigger", "after_connection_status_changed")))]
        == 1
    )
