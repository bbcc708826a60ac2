"""Every piece of application state, under a typed key."""

from __future__ import annotations

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from presence.db.inline import Lookups
from presence.intake.committer import Committer
from presence.metrics import Metrics
from presence.settings import Settings

SETTINGS = web.AppKey("settings", Settings)
ENGINE = web.AppKey("engine", AsyncEngine)
COMMITTER = web.AppKey("committer", Committer)
#: The point lookups of ``GET /users/{uid}/presence`` and ``GET /messages/{id}/receipts``.
LOOKUPS = web.AppKey("lookups", Lookups)
#: Signs pagination cursors; the same on every replica (derived from the API tokens).
CURSOR_KEY = web.AppKey("cursor_key", bytes)
METRICS = web.AppKey("metrics", Metrics)
#: The newest Alembic revision this code knows, read once at start-up.
HEAD_REVISION = web.AppKey("head_revision", str)
