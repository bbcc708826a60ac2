"""For the people who run the service: liveness, readiness, metrics."""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from presence.db import forwarding, reads
from presence.db.failures import is_unavailable
from presence.db.schema import current_revision
from presence.http import api
from presence.http.errors import ApiError
from presence.http.keys import COMMITTER, ENGINE, HEAD_REVISION, METRICS, SETTINGS
from presence.http.responses import Healthy, Ready, json_answer


async def get_healthz(_request: web.Request) -> web.Response:
    """``200`` while the process serves; no token, no database."""
    return json_answer(Healthy(status="ok"))


async def get_readyz(request: web.Request) -> web.Response:
    """``200`` when the service can accept webhooks now; else ``503`` with why.

    The database answers, its schema is at the newest revision, and the last commit of
    webhooks succeeded (or, after a failure, a probing commit does).
    """
    head = request.app[HEAD_REVISION]
    try:
        revision = await current_revision(request.app[ENGINE])
    except Exception as error:
        if not is_unavailable(error):
            raise
        raise ApiError(503, "not_ready", "the database cannot be reached") from None
    if revision != head:
        raise ApiError(503, "not_ready", f"the schema is at revision {revision}, not {head}; run `presence migrate`")
    unready = await request.app[COMMITTER].unready()
    if unready is not None:
        raise ApiError(503, "not_ready", f"webhooks cannot be committed now ({unready})")
    return json_answer(Ready(status="ready", revision=head))


async def get_metrics(request: web.Request) -> web.Response:
    """Prometheus text format; users online and forwarding's lag are read from the database at each scrape."""
    metrics = request.app[METRICS]
    try:
        async with request.app[ENGINE].connect() as connection:
            metrics.users_online.set(await reads.users_online(connection, api.ttl_floor(request)))
            if request.app[SETTINGS].forward_url is not None:
                # Read from the database, so every replica tells it, and it grows while a POST hangs.
                oldest = await forwarding.oldest_undelivered(connection)
                lag = 0.0 if oldest is None else (datetime.now(UTC) - oldest).total_seconds()
                metrics.forward_lag.set(max(0.0, lag))
    except Exception as error:
        if not is_unavailable(error):
            raise
        metrics.database_errors.labels(operation="query").inc()  # still serve what is known
    return web.Response(body=generate_latest(metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})
