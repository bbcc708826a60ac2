"""The query API: what the app's own backend asks. Every route needs a bearer token."""

from __future__ import annotations

from aiohttp import web

from presence.core.events import MAX_MESSAGE_ID, is_storable_id
from presence.db import reads
from presence.http.auth import require_api_token
from presence.http.errors import ApiError, json_response
from presence.http.keys import ENGINE, SETTINGS
from presence.http.views import presence_json, receipts_json


async def get_presence(request: web.Request) -> web.Response:
    require_api_token(request, request.app[SETTINGS])
    uid = request.match_info["uid"]
    presence = None
    if is_storable_id(uid):
        async with request.app[ENGINE].connect() as connection:
            presence = await reads.presence_of(connection, uid)
    if presence is None:
        raise ApiError(404, "not_found", f"no connection event has been seen for user {uid!r}")
    return json_response(presence_json(presence))


async def get_message_receipts(request: web.Request) -> web.Response:
    require_api_token(request, request.app[SETTINGS])
    raw_id = request.match_info["message_id"]
    message_id = int(raw_id) if raw_id.isascii() and raw_id.isdigit() and len(raw_id) <= 19 else None
    message = None
    if message_id is not None and message_id <= MAX_MESSAGE_ID:
        async with request.app[ENGINE].connect() as connection:
            message = await reads.receipts_of(connection, message_id)
    if message is None:
        raise ApiError(404, "not_found", f"no message or receipt has named message {raw_id!r}")
    return json_response(receipts_json(message))


async def get_healthz(_request: web.Request) -> web.Response:
    return json_response({"status": "ok"})
