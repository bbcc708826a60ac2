"""The limit of the stack: a bare aiohttp app that does what ``presence serve`` cannot avoid doing.

It runs in a process like the service's: the same Python and aiohttp, the same
event loop (``web.run_app`` with asyncio's default policy, as ``presence serve``
uses today), no access log, the same 1 MiB body limit. ``POST /hook`` reads the
body, parses it with orjson and answers ``200`` with the service's
acknowledgement, touching no database. The two query routes answer a small
fixed JSON document, so routing and response costs match the service's.

If ``presence serve`` ever changes its event loop (uvloop, say), change it here
too: the baseline must stay "the same process, minus the work".

    .venv/bin/python bench/baseline_app.py --port 8081
"""

from __future__ import annotations

import argparse

import orjson
from aiohttp import web

MAX_BODY_BYTES = 1024 * 1024

_ACCEPTED = orjson.dumps({"status": "accepted"})
_OK = orjson.dumps({"status": "ok"})
_PRESENCE = orjson.dumps(
    {
        "uid": "bench-user-1",
        "status": "online",
        "status_updated_at": "2026-11-21T10:15:30.123Z",
        "last_seen_at": "2026-11-21T10:15:30.123Z",
        "connections": [
            {"session_id": "s-1", "device_id": "d-1", "platform": "web", "connected_at": "2026-11-21T10:15:30.120Z"}
        ],
    }
)
_RECEIPTS = orjson.dumps(
    {
        "message_id": "57",
        "conversation_id": "bench-user-1_user_bench-user-2",
        "sender": "bench-user-2",
        "receipts": [{"uid": "bench-user-1", "delivered_at": "2026-11-21T10:15:31.000Z", "read_at": None}],
        "delivered_count": 1,
        "read_count": 0,
    }
)


def _json(body: bytes, status: int = 200) -> web.Response:
    return web.Response(body=body, status=status, content_type="application/json")


async def hook(request: web.Request) -> web.Response:
    raw = await request.read()
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return _json(b'{"error":{"code":"invalid_json","message":"not JSON"}}', status=400)
    if not isinstance(body, dict):
        return _json(b'{"error":{"code":"invalid_body","message":"not an object"}}', status=400)
    return _json(_ACCEPTED)


async def presence(_request: web.Request) -> web.Response:
    return _json(_PRESENCE)


async def receipts(_request: web.Request) -> web.Response:
    return _json(_RECEIPTS)


async def healthz(_request: web.Request) -> web.Response:
    return _json(_OK)


def create_app() -> web.Application:
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app.router.add_post("/hook", hook)
    app.router.add_get("/users/{uid}/presence", presence)
    app.router.add_get("/messages/{message_id}/receipts", receipts)
    app.router.add_get("/healthz", healthz)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description="bare aiohttp baseline for the presence benchmark")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    args = parser.parse_args()
    web.run_app(create_app(), host=args.host, port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
