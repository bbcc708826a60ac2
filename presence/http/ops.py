"""For the people who run the service: liveness, readiness, metrics."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import func, select

from presence.db.failures import is_unavailable
from presence.db.models import UserPresence
from presence.db.schema import current_revision
from presence.http.auth import require_api_token
from presence.http.errors import ApiError, json_response
from presence.http.keys import COMMITTER, ENGINE, HEAD_REVISION, METRICS, SETTINGS


async def get_healthz(_request: web.Request) -> web.Response:
    """``200`` while the process serves; no token, no database."""
    return json_response({"status": "ok"})


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
    return json_response({"status": "ready", "revision": head})


async def get_metrics(request: web.Request) -> web.Response:
    """Prometheus text format; users online is read from the database at each scrape."""
    require_api_token(request, request.app[SETTINGS])
    metrics = request.app[METRICS]
    try:
        async with request.app[ENGINE].connect() as connection:
            online = await connection.execute(
                select(func.count()).select_from(UserPresence).where(UserPresence.status == "online")
            )
            metrics.users_online.set(online.scalar_one())
    except Exception as error:
        if not is_unavailable(error):
            raise
        metrics.database_errors.labels(operation="query").inc()  # still serve what is known
    return web.Response(body=generate_latest(metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})
