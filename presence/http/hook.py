"""``POST /hook``: CometChat's webhooks in, an acknowledgement out once committed.

The path of an event: credentials, body, then :func:`presence.intake.accept.accept`
(JSON, validation by the pure core, removal of message content), then the group
committer, which writes the inbox row and the state in one transaction. ``200``
is sent only after that transaction has committed.
"""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web

from presence.http.auth import require_hook_credentials
from presence.http.errors import ApiError, json_response
from presence.http.keys import COMMITTER, SETTINGS
from presence.intake.accept import Rejected, accept, outcome
from presence.intake.committer import IntakeRejected, IntakeUnavailable


async def receive_webhook(request: web.Request) -> web.Response:
    require_hook_credentials(request, request.app[SETTINGS])
    raw = await request.read()  # Content-Type is not trusted: CometChat sends "Application/json".
    try:
        accepted = accept(raw, received_at=datetime.now(UTC))
    except Rejected as rejected:
        raise ApiError(400, rejected.code, rejected.message) from None
    try:
        await request.app[COMMITTER].submit(accepted)
    except IntakeUnavailable as error:
        raise ApiError(503, "unavailable", f"{error}; retry later", {"Retry-After": "1"}) from None
    except IntakeRejected as error:
        raise ApiError(422, "unprocessable_event", str(error)) from None
    return json_response({"status": outcome(accepted)})
