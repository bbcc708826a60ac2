"""The application factory: settings in, an aiohttp application out.

Nothing is built at import time. Each resource (the engine, with the schema
migrated first when asked; the group committer; the inline lookups; retention;
the change streams' hub, forwarding when configured) lives in a ``cleanup_ctx``
generator of its own, made when the application starts and disposed of when it
stops, in reverse order: reconciliation, forwarding and retention stop, the committer commits what
is queued, and the engine is disposed of last. The change streams end earlier, at
``on_shutdown``: aiohttp waits for the requests in progress before it runs the
cleanups, and a stream is a request that never ends by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from presence import dashboard
from presence.db.engine import create_engine, needs_own_intake_engine
from presence.db.failures import classify, describe
from presence.db.inline import Lookups
from presence.db.schema import current_revision, head_revision, upgrade
from presence.http import api, ops, stream
from presence.http.auth import api_token_middleware
from presence.http.cursors import cursor_key
from presence.http.dashboard import get_dashboard, get_dashboard_asset
from presence.http.errors import error_middleware
from presence.http.hook import receive_webhook
from presence.http.keys import (
    COMMITTER,
    CURSOR_KEY,
    DASHBOARD,
    ENGINE,
    FORWARDER,
    HEAD_REVISION,
    HUB,
    INTAKE_ENGINE,
    LOOKUPS,
    METRICS,
    SETTINGS,
)
from presence.http.openapi import get_openapi
from presence.intake.committer import Committer
from presence.jobs import reconcile, retention
from presence.live.forward import Forwarder
from presence.live.hub import ChangeHub
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
    app[DASHBOARD] = dashboard.load()
    # One context per resource, in the order they depend on each other: aiohttp disposes of
    # them in reverse, and of those already made when a later one fails to start.
    app.cleanup_ctx.extend([_database(migrate=migrate), _committer, _lookups, _retention, _hub])
    app.on_shutdown.append(_end_streams)
    if settings.forward_url is not None:
        app.cleanup_ctx.append(_forwarding)
    if settings.reconcile_interval is not None:
        app.cleanup_ctx.append(_reconciliation)
    app.router.add_post("/hook", receive_webhook)
    app.router.add_get("/users/{uid}/presence", api.get_presence)
    app.router.add_get("/users/{uid}/sessions", api.get_sessions)
    app.router.add_get("/users/{uid}/unread", api.get_unread)
    app.router.add_get("/users", api.list_users)
    app.router.add_get("/presence", api.get_presences)
    app.router.add_get("/messages/{message_id}/receipts", api.get_message_receipts)
    app.router.add_get("/conversations/{conversation_id}/receipts", api.get_conversation_receipts)
    app.router.add_get("/conversations/{conversation_id}/members", api.get_members)
    app.router.add_get("/stats", api.get_stats)
    app.router.add_get("/changes", api.get_changes)
    app.router.add_get("/changes/stream", stream.stream_changes)
    app.router.add_get("/healthz", ops.get_healthz)
    app.router.add_get("/readyz", ops.get_readyz)
    app.router.add_get("/metrics", ops.get_metrics)
    app.router.add_get("/openapi.json", get_openapi)
    app.router.add_get("/dashboard", get_dashboard)
    app.router.add_get("/dashboard/{asset}", get_dashboard_asset)
    return app


def _database(*, migrate: bool) -> Callable[[web.Application], AsyncIterator[None]]:
    """The engines (the schema migrated first, when asked), disposed of last.

    On PostgreSQL intake has a pool of its own: queries may take every connection of theirs
    (each bounded by ``PRESENCE_QUERY_TIMEOUT``) and a webhook still commits at once.
    """

    async def database(app: web.Application) -> AsyncIterator[None]:
        settings = app[SETTINGS]
        own_intake = needs_own_intake_engine(settings)
        engine = create_engine(settings, role="queries" if own_intake else "general")
        intake = create_engine(settings, role="intake") if own_intake else engine
        database = engine.url.render_as_string(hide_password=True)
        try:
            if migrate:
                migration = await upgrade(intake)  # never under the queries' statement timeout
                log.info("database %s: %s", database, migration.describe(), extra={"database": database})
            else:
                log.info("database %s: not migrated (--no-migrate)", database, extra={"database": database})
                await _warn_if_schema_behind(intake, app[HEAD_REVISION])
            app[ENGINE] = engine
            app[INTAKE_ENGINE] = intake
            yield
            webhooks = app[METRICS].webhooks
            log.info("stopped after %d webhooks", webhooks, extra={"webhooks": webhooks})
        finally:
            if intake is not engine:
                await intake.dispose()
            await engine.dispose()

    return database


async def _warn_if_schema_behind(engine: AsyncEngine, head: str) -> None:
    """``serve --no-migrate``: say at start whether the schema is behind (queries answer 503 ``not_ready`` then).

    A database that cannot be read now is only warned about: ``/readyz`` says so until it can.
    """
    try:
        revision = await current_revision(engine)
    except Exception as error:
        if classify(error) is None:
            raise
        log.warning("cannot read the schema's revision at start: %s", describe(error))
        return
    if revision != head:
        log.warning(
            "the schema is at revision %s, not the newest %s: run `presence migrate`;"
            " until then the query API answers 503 not_ready",
            revision or "none (no table made yet)",
            head,
        )


async def _committer(app: web.Application) -> AsyncIterator[None]:
    """Group commit for ``/hook``: what is queued when the app stops is committed, or answered 503."""
    committer = Committer.for_settings(app[INTAKE_ENGINE], app[SETTINGS], app[METRICS])
    await committer.start()
    app[COMMITTER] = committer
    try:
        yield
    finally:
        await committer.close()


async def _lookups(app: web.Application) -> AsyncIterator[None]:
    lookups = Lookups(app[ENGINE], budget=app[SETTINGS].inline_read_budget, metrics=app[METRICS])
    app[LOOKUPS] = lookups
    try:
        yield
    finally:
        lookups.close()


async def _retention(app: web.Application) -> AsyncIterator[None]:
    """Retention passes in the background; stopping lets the batch in progress commit, never cancels a query."""
    stop = asyncio.Event()
    passes = asyncio.create_task(
        retention.run_forever(app[INTAKE_ENGINE], app[SETTINGS], app[METRICS], stop), name="presence-retention"
    )
    try:
        yield
    finally:
        stop.set()
        await passes


async def _hub(app: web.Application) -> AsyncIterator[None]:
    """The change streams' hub: its tail runs only while a stream is open."""
    settings = app[SETTINGS]
    hub = ChangeHub(
        app[ENGINE],
        queue_limit=settings.stream_queue,
        metrics=app[METRICS],
        connect_timeout=settings.db_connect_timeout,
        command_timeout=settings.db_command_timeout,
    )
    app[HUB] = hub
    # Woken in-process by each commit that recorded changes; other replicas' by NOTIFY, or the 1 s re-read.
    stop_waking = app[COMMITTER].on_changes(hub.wake)
    try:
        yield
    finally:
        stop_waking()
        await hub.close()


async def _end_streams(app: web.Application) -> None:
    """Every open stream ends its response now, so that stopping waits for no stream."""
    if HUB in app:
        await app[HUB].close()


async def _forwarding(app: web.Application) -> AsyncIterator[None]:
    """Forwarding to the app in the background, on a database connection of its own (PostgreSQL).

    On SQLite it shares the engine of the queries: its statements are short and never wait for the app.
    """
    settings = app[SETTINGS]
    engine = create_engine(settings, role="forward") if needs_own_intake_engine(settings) else app[ENGINE]
    forwarder = Forwarder(engine, settings, app[METRICS])
    app[FORWARDER] = forwarder
    forwarder.start()
    # Woken in-process by each commit that recorded changes, rather than at its next poll.
    stop_waking = app[COMMITTER].on_changes(lambda _last_seq: forwarder.wake())
    try:
        yield
    finally:
        stop_waking()
        await forwarder.close()
        if engine is not app[ENGINE]:
            await engine.dispose()


async def _reconciliation(app: web.Application) -> AsyncIterator[None]:
    """Background reconciliation passes (contract §10); their corrections go through the committer.

    Stopping cancels a pass in progress: what it had not recorded yet is left for the next one.
    """
    stop = asyncio.Event()
    passes = asyncio.create_task(
        reconcile.run_forever(app[INTAKE_ENGINE], app[COMMITTER], app[SETTINGS], app[METRICS], stop),
        name="presence-reconcile",
    )
    try:
        yield
    finally:
        stop.set()
        passes.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await passes
