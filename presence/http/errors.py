"""The one JSON error shape, and the middleware that gives every error that shape."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from aiohttp import web
from aiohttp.typedefs import Handler

from presence.db.failures import is_schema_missing, is_unavailable
from presence.http.keys import METRICS, SETTINGS
from presence.http.responses import Error, ErrorDetail, json_answer

log = logging.getLogger(__name__)

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    503: "unavailable",
}


#: What a query answers while the schema lacks what it needs (``serve --no-migrate`` before ``presence migrate``).
SCHEMA_BEHIND = "the database schema is not at the newest revision; run `presence migrate`"


class ApiError(Exception):
    """An error the caller should see: a status, a stable snake_case code, a message."""

    def __init__(self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})


def too_large(limit: int) -> ApiError:
    return ApiError(413, "payload_too_large", f"the body is larger than {limit} bytes")


def error_response(error: ApiError) -> web.Response:
    body = Error(error=ErrorDetail(code=error.code, message=error.message))
    return json_answer(body, status=error.status, headers=error.headers)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as error:
        return error_response(error)
    except web.HTTPRequestEntityTooLarge:
        return error_response(too_large(request.app[SETTINGS].max_body_bytes))
    except web.HTTPException as error:
        if error.status < 400:
            raise
        code = _CODES.get(error.status, "http_error")
        headers = {k: v for k, v in error.headers.items() if k.lower() in ("allow", "www-authenticate")}
        return error_response(ApiError(error.status, code, error.reason, headers))
    except Exception as error:
        return error_response(_unexpected(request, error))


def _unexpected(request: web.Request, error: Exception) -> ApiError:
    """What a request that failed outside the API's own errors answers: never internals."""
    if is_schema_missing(error):
        log.warning("schema behind the code for %s %s: run `presence migrate`", request.method, request.path)
        return ApiError(503, "not_ready", SCHEMA_BEHIND)
    if is_unavailable(error):
        request.app[METRICS].database_errors.labels(operation="query").inc()
        log.warning("database unavailable for %s %s: %s", request.method, request.path, type(error).__name__)
        return ApiError(503, "unavailable", "the database is unavailable; retry later")
    log.exception("unexpected error", extra={"method": request.method, "path": request.path})
    return ApiError(500, "internal_error", "internal error")
