"""Every piece of application state, under a typed key."""

from __future__ import annotations

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from presence.intake.committer import Committer
from presence.settings import Settings

SETTINGS = web.AppKey("settings", Settings)
ENGINE = web.AppKey("engine", AsyncEngine)
COMMITTER = web.AppKey("committer", Committer)
#: Signs pagination cursors; the same on every replica (derived from the API tokens).
CURSOR_KEY = web.AppKey("cursor_key", bytes)
