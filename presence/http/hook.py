"""``POST /hook``: CometChat's webhooks in, an acknowledgement out once committed.

The path of an event: credentials, body, then :func:`presence.intake.accept.accept`
(JSON, validation by the pure core, removal of message content), then the group
committer, which writes the inbox row and the state in one transaction. ``200``
is sent only after that transaction has committed.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from aiohttp import web
from aiohttp.http_exceptions import ContentEncodingError

from presence.http.auth import require_hook_credentials
from presence.http.body import read_body
from presence.http.errors import ApiError, error_response
from presence.http.keys import COMMITTER, METRICS, SETTINGS
from presence.http.responses import HookAck, json_answer
from presence.intake.accept import Rejected, accept, outcome
from presence.intake.committer import IntakeRejected, IntakeUnavailable


async def receive_webhook(request: web.Request) -> web.Response:
    started = time.perf_counter()
    metrics = request.app[METRICS]
    trigger: str | None = None
    result = "rejected"
    try:
        try:
            require_hook_credentials(request, request.app[SETTINGS])
        except ApiError:
            result = "unauthorized"
            raise
        settings, committer = request.app[SETTINGS], request.app[COMMITTER]
        # Content-Type is not trusted: CometChat sends "Application/json". Counted against the byte limit.
        try:
            raw = await read_body(
                request, limit=settings.max_body_bytes, within=settings.body_timeout, budget=committer
            )
        except web.RequestPayloadError as error:
            return _unreadable(request, error)
        try:
            accepted = accept(raw, received_at=datetime.now(UTC), max_skew_ms=settings.max_clock_skew_ms)
        except Rejected as rejected:
            trigger = rejected.trigger
            raise ApiError(400, rejected.code, rejected.message) from None
        finally:
            committer.release(len(raw))
            del raw  # while the commit is awaited, the inbox row holds what is kept of it
        trigger = accepted.inbox.trigger
        try:
            await committer.submit(accepted, client_gone=lambda: _client_gone(request))
        except IntakeUnavailable as error:
            result = "unavailable"
            raise ApiError(503, "unavailable", f"{error}; retry later", {"Retry-After": "1"}) from None
        except IntakeRejected as error:
            raise ApiError(422, "unprocessable_event", str(error)) from None
        result = outcome(accepted)
        return json_answer(HookAck(status=result))
    finally:
        metrics.count_event(trigger, result)
        metrics.intake_seconds.observe(time.perf_counter() - started)


def _client_gone(request: web.Request) -> bool:
    """Whether the client hung up: its event, not yet committed, need not be (it was never acknowledged)."""
    transport = request.transport
    return transport is None or transport.is_closing()


def _unreadable(request: web.Request, error: web.RequestPayloadError) -> web.Response:
    """``400`` for a body that cannot be read as its headers say: not valid in its
    ``Content-Encoding`` (gzip that is not gzip), or broken chunked framing.

    The parser has given up on the rest of this request's bytes, so the connection cannot carry
    another: the answer closes it. The payload is marked finished, or aiohttp would read it
    again after the answer and log the same failure as an unhandled exception.
    """
    request.content.feed_eof()
    if isinstance(error.__cause__, ContentEncodingError):
        problem = ApiError(400, "invalid_encoding", "the body is not valid in the encoding its Content-Encoding names")
    else:
        problem = ApiError(400, "invalid_body", "the body does not match the request's framing")
    response = error_response(problem)
    response.force_close()
    return response
