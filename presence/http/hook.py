"""``POST /hook``: CometChat's webhooks in, an acknowledgement out once committed.

The path of an event: credentials, body, JSON, :func:`parse_event` (the pure
core decides it is well-formed), :func:`without_content` (what the inbox keeps),
then the group committer, which writes the inbox row and the state in one
transaction. ``200`` is sent only after that transaction has committed.
"""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
from aiohttp import web

from presence.core.events import InvalidEvent, MessageSent, UnknownTrigger, parse_event
from presence.core.inbox import TooDeep, without_content
from presence.db.writes import InboxRow
from presence.http.auth import require_hook_credentials
from presence.http.errors import ApiError, json_response
from presence.http.keys import COMMITTER, SETTINGS
from presence.intake.committer import Accepted, IntakeRejected, IntakeUnavailable


async def receive_webhook(request: web.Request) -> web.Response:
    require_hook_credentials(request, request.app[SETTINGS])
    raw = await request.read()  # Content-Type is not trusted: CometChat sends "Application/json".
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ApiError(400, "invalid_json", "the body is not valid JSON in UTF-8") from None
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_body", "the body must be a JSON object")
    try:
        event = parse_event(body)
        kept = without_content(body)
    except InvalidEvent as error:
        raise ApiError(400, "invalid_event", str(error)) from None
    except TooDeep as error:
        raise ApiError(400, "invalid_body", str(error)) from None
    inbox = InboxRow(received_at=datetime.now(UTC), trigger=body["trigger"], body=orjson.dumps(kept).decode())
    try:
        await request.app[COMMITTER].submit(Accepted(event, inbox))
    except IntakeUnavailable as error:
        raise ApiError(503, "unavailable", f"{error}; retry later", {"Retry-After": "1"}) from None
    except IntakeRejected as error:
        raise ApiError(422, "unprocessable_event", str(error)) from None
    ignored = isinstance(event, UnknownTrigger) or (isinstance(event, MessageSent) and not event.tracked)
    return json_response({"status": "ignored" if ignored else "accepted"})
