"""``POST /hook``: CometChat's webhooks in, an acknowledgement out once committed.

The path of an event: credentials, body, then :func:`presence.intake.accept.accept`
(JSON, validation by the pure core, removal of message content), then the group
committer, which writes the inbox row and the state in one transaction. ``200``
is sent only after that transaction has committed.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from aiohttp import web
from aiohttp.http_exceptions import ContentEncodingError

from presence.core.events import MAX_TRIGGER_LENGTH
from presence.core.parse import KNOWN_TRIGGERS
from presence.db.failures import is_unavailable
from presence.http.auth import require_hook_credentials
from presence.http.body import read_body
from presence.http.errors import ApiError, error_response, too_large
from presence.http.keys import COMMITTER, METRICS, SETTINGS
from presence.http.responses import HookAck, json_answer
from presence.intake.accept import Rejected, accept, outcome
from presence.intake.committer import IntakeRejected, IntakeUnavailable

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Seen:
    """What became of one webhook, as far as it got: what the metrics count and the access log says."""

    trigger: str | None = None
    outcome: str = "rejected"
    status: int = 500
    problem: ApiError | None = None


async def receive_webhook(request: web.Request) -> web.Response:
    started = time.perf_counter()
    metrics = request.app[METRICS]
    seen = _Seen()
    try:
        response = await _receive(request, seen)
        seen.status = response.status
        return response
    except ApiError as error:
        seen.problem, seen.status = error, error.status
        if error.status == 401:
            seen.outcome = "unauthorized"
        elif error.status == 503:
            seen.outcome = "unavailable"
        raise
    except Exception as error:
        # The error middleware answers it, and logs it with its traceback.
        seen.outcome, seen.status = ("unavailable", 503) if is_unavailable(error) else ("error", 500)
        raise
    finally:
        elapsed = time.perf_counter() - started
        metrics.count_event(seen.trigger, seen.outcome)
        metrics.intake_seconds.observe(elapsed)
        if request.app[SETTINGS].hook_access_log:
            _log_webhook(seen, elapsed)


async def _receive(request: web.Request, seen: _Seen) -> web.Response:
    settings, committer = request.app[SETTINGS], request.app[COMMITTER]
    require_hook_credentials(request, settings)
    # Content-Type is not trusted: CometChat sends "Application/json". Counted against the byte limit.
    try:
        raw = await read_body(request, limit=settings.max_body_bytes, within=settings.body_timeout, budget=committer)
    except web.RequestPayloadError as error:
        seen.problem = _unreadable(request, error)
        response = error_response(seen.problem)
        response.force_close()
        return response
    except web.HTTPRequestEntityTooLarge:
        raise too_large(settings.max_body_bytes) from None
    try:
        accepted = accept(raw, received_at=datetime.now(UTC), max_skew_ms=settings.max_clock_skew_ms)
    except Rejected as rejected:
        seen.trigger = rejected.trigger
        raise ApiError(400, rejected.code, rejected.message) from None
    finally:
        committer.release(len(raw))
        del raw  # while the commit is awaited, the inbox row holds what is kept of it
    seen.trigger = accepted.inbox.trigger
    try:
        await committer.submit(accepted, client_gone=lambda: _client_gone(request))
    except IntakeUnavailable as error:
        raise ApiError(503, "unavailable", f"{error}; retry later", {"Retry-After": "1"}) from None
    except IntakeRejected as error:
        raise ApiError(422, "unprocessable_event", str(error)) from None
    seen.outcome = outcome(accepted)
    return json_answer(HookAck(status=seen.outcome))


def _log_webhook(seen: _Seen, elapsed: float) -> None:
    """The access log line of one webhook: never its body or its credentials, only what became of it."""
    trigger, problem = _shown_trigger(seen.trigger), seen.problem
    latency_ms = round(elapsed * 1000, 3)
    context: dict[str, object] = {
        "trigger": trigger,
        "outcome": seen.outcome,
        "status": seen.status,
        "latency_ms": latency_ms,
    }
    answer = f"{seen.outcome} {seen.status}"
    if problem is not None:
        context.update(code=problem.code, reason=problem.message)
        answer += f" {problem.code} ({problem.message})"
    log.info("webhook %s %s in %.1f ms", trigger or "-", answer, latency_ms, extra=context)


def _shown_trigger(trigger: str | None) -> str | None:
    """The trigger as the log shows it: whatever the sender wrote (a refused one may be as long as
    the body), cut short and escaped, so that it stays one short line."""
    if trigger is None or trigger in KNOWN_TRIGGERS:
        return trigger
    cut = trigger[:MAX_TRIGGER_LENGTH]
    shown = cut if cut.isprintable() else ascii(cut)
    return shown + "…" if len(trigger) > MAX_TRIGGER_LENGTH else shown


def _client_gone(request: web.Request) -> bool:
    """Whether the client hung up: its event, not yet committed, need not be (it was never acknowledged)."""
    transport = request.transport
    return transport is None or transport.is_closing()


def _unreadable(request: web.Request, error: web.RequestPayloadError) -> ApiError:
    """``400`` for a body that cannot be read as its headers say: not valid in its
    ``Content-Encoding`` (gzip that is not gzip), or broken chunked framing.

    The parser has given up on the rest of this request's bytes, so the connection cannot carry
    another: the answer must close it. The payload is marked finished, or aiohttp would read it
    again after the answer and log the same failure as an unhandled exception.
    """
    request.content.feed_eof()
    if isinstance(error.__cause__, ContentEncodingError):
        return ApiError(400, "invalid_encoding", "the body is not valid in the encoding its Content-Encoding names")
    return ApiError(400, "invalid_body", "the body does not match the request's framing")
