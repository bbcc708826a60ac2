"""The application factory: settings in, an aiohttp application out.

Nothing is built at import time. The engine and the group committer live in a
``cleanup_ctx`` generator, made when the application starts (after the schema
is migrated, when asked) and disposed of when it stops, committed work first.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from presence.db.engine import create_engine
from presence.db.inline import Lookups
from presence.db.schema import head_revision, upgrade
from presence.http import api, ops
from presence.http.auth import api_token_middleware
from presence.http.cursors import cursor_key
from presence.http.errors import error_middleware
from presence.http.hook import receive_webhook
from presence.http.keys import COMMITTER, CURSOR_KEY, ENGINE, HEAD_REVISION, LOOKUPS, METRICS, SETTINGS
from presence.http.openapi import get_openapi
from presence.intake.committer import Committer
from presence.jobs import retention
from presence.metrics import Metrics
from presence.settings import Settings

log = logging.getLogger(__name__)

#: Longest request line: 500 uids of 255 characters, each as "uid=…&", fit in it.
MAX_REQUEST_LINE = 256 * 1024
MAX_HEADER_FIELD = 16 * 1024


def create_app(settings: Settings, *, migrate: bool = False) -> web.Application:
    app = web.Application(
        client_max_size=settings.max_body_bytes,
        middlewares=[error_middleware, api_token_middleware],
        # GET /presence takes up to 500 uids of up to 255 characters in its query string.
        handler_args={"max_line_size": MAX_REQUEST_LINE, "max_field_size": MAX_HEADER_FIELD},
    )
    app[SETTINGS] = settings
    app[CURSOR_KEY] = cursor_key(settings)
    app[METRICS] = Metrics()
    app[HEAD_REVISION] = head_revision() or ""
    app.cleanup_ctx.append(_storage(migrate=migrate))
    app.router.add_post("/hook", receive_webhook)
    app.router.add_get("/users/{uid}/presence", api.get_presence)
    app.router.add_get("/users/{uid}/sessions", api.get_sessions)
    app.router.add_get("/users", api.list_users)
    app.router.add_get("/presence", api.get_presences)
    app.router.add_get("/messages/{message_id}/receipts", api.get_message_receipts)
    app.router.add_get("/conversations/{conversation_id}/receipts", api.get_conversation_receipts)
    app.router.add_get("/stats", api.get_stats)
    app.router.add_get("/healthz", ops.get_healthz)
    app.router.add_get("/readyz", ops.get_readyz)
    app.router.add_get("/metrics", ops.get_metrics)
    app.router.add_get("/openapi.json", get_openapi)
    return app


def _storage(*, migrate: bool) -> Callable[[web.Application], AsyncIterator[None]]:
    async def storage(app: web.Application) -> AsyncIterator[None]:
        settings = app[SETTINGS]
        engine = create_engine(settings)
        if migrate:
            await upgrade(engine)
            log.info("schema is at the newest revision")
        committer = Committer.for_settings(engine, settings, app[METRICS])
        await committer.start()
        app[ENGINE] = engine
        app[COMMITTER] = committer
        lookups = Lookups(engine, budget=settings.inline_read_budget, metrics=app[METRICS])
        app[LOOKUPS] = lookups
        stop_retention = asyncio.Event()
        expiring = asyncio.create_task(
            retention.run_forever(engine, settings, app[METRICS], stop_retention), name="presence-retention"
        )
        try:
            yield
        finally:
            stop_retention.set()  # the batch in progress commits; no query is cancelled mid-flight
            await expiring
            await committer.close()
            lookups.close()
            await engine.dispose()

    return storage
