"""Every piece of application state, under a typed key."""

from __future__ import annotations

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from presence.dashboard import Dashboard
from presence.db.inline import Lookups
from presence.intake.committer import Committer
from presence.live.forward import Forwarder
from presence.live.hub import ChangeHub
from presence.metrics import Metrics
from presence.settings import Settings

SETTINGS = web.AppKey("settings", Settings)
#: The query API's engine: its statements are bounded by ``PRESENCE_QUERY_TIMEOUT``.
ENGINE = web.AppKey("engine", AsyncEngine)
#: Intake's (and migrations' and retention's) engine: on PostgreSQL a pool of its own, so that
#: queries never hold a webhook; on SQLite the same engine as :data:`ENGINE`.
INTAKE_ENGINE = web.AppKey("intake_engine", AsyncEngine)
COMMITTER = web.AppKey("committer", Committer)
#: The streams of ``GET /changes/stream``, and the one reader of the change table that feeds them.
HUB = web.AppKey("hub", ChangeHub)
#: The point lookups of ``GET /users/{uid}/presence`` and ``GET /messages/{id}/receipts``.
LOOKUPS = web.AppKey("lookups", Lookups)
#: Signs pagination cursors; the same on every replica (derived from the API tokens).
CURSOR_KEY = web.AppKey("cursor_key", bytes)
METRICS = web.AppKey("metrics", Metrics)
#: The newest Alembic revision this code knows, read once at start-up.
HEAD_REVISION = web.AppKey("head_revision", str)
#: Forwards the changes to the app; only when ``PRESENCE_FORWARD_URL`` is set.
FORWARDER = web.AppKey("forwarder", Forwarder)
#: The dashboard's page and files, read from the package when the app is made.
DASHBOARD = web.AppKey("dashboard", Dashboard)
