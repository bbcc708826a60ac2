"""``GET /openapi.json``: the OpenAPI 3.1 document of every endpoint, served without a token.

The answers' schemas are not written here: ``components/schemas`` is made from
the shapes in :mod:`presence.http.responses` by ``msgspec.json.schema_components``
(JSON Schema 2020-12, as OpenAPI 3.1 uses). What is written here by hand is what
those shapes cannot say: the paths, their parameters, the error answers each
route can give, and CometChat's webhook body. The tests keep it true: every
response the suite sees is validated against it (``tests/support/openapi_check.py``),
and schemathesis runs it against a real server (``tests/test_openapi.py``).
"""

from __future__ import annotations

import functools
from importlib import metadata
from typing import Any, Final

import msgspec
from aiohttp import web

from presence.core.events import MAX_CONVERSATION_LENGTH, MAX_TRIGGER_LENGTH
from presence.core.parse import WEBHOOK_TRIGGERS
from presence.dashboard import ASSETS
from presence.http import responses
from presence.http.api import CHANGE_TYPES, DEFAULT_LIMIT, MAX_LIMIT, MAX_SEQ, MAX_UIDS_PER_REQUEST, STATUSES
from presence.http.responses import CURSOR_PATTERN

Schema = dict[str, Any]

JSON: Final = "application/json"
SCHEMA_REF: Final = "#/components/schemas/{name}"
#: The README's running example; the tests seed these so that examples reach a ``200``.
EXAMPLE_UID: Final = "cometchat-uid-4"
EXAMPLE_SENDER: Final = "cometchat-uid-5"
EXAMPLE_MESSAGE_ID: Final = "57"
EXAMPLE_CONVERSATION_ID: Final = f"{EXAMPLE_UID}_user_{EXAMPLE_SENDER}"
#: Every answer a route gives; the shapes they contain come with them.
SHAPES: Final = (
    responses.Presence,
    responses.PresenceList,
    responses.UserPage,
    responses.SessionPage,
    responses.MessageReceipts,
    responses.GroupMessageReceipts,
    responses.ConversationReceipts,
    responses.MemberPage,
    responses.UnreadPage,
    responses.Stats,
    responses.ChangePage,
    responses.HookAck,
    responses.Healthy,
    responses.Ready,
    responses.Error,
)


async def get_openapi(_request: web.Request) -> web.Response:
    """The document, as JSON; no token, no database."""
    return web.Response(body=_document_bytes(), content_type=JSON)


@functools.cache
def _document_bytes() -> bytes:
    return msgspec.json.encode(openapi_document())


def openapi_document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "presence",
            "version": _version(),
            "summary": "Who is online, on which devices, and which messages were delivered and read.",
            "description": (
                "Receives CometChat's legacy webhooks on `POST /hook` and answers queries about "
                "presence and receipts. Every time in every answer is ISO 8601, UTC, with milliseconds, "
                'ending in `Z`. Every error is `{"error": {"code", "message"}}` with a stable '
                "snake_case `code`."
            ),
        },
        "security": [{"apiBearer": []}],
        "paths": _paths(),
        "components": {
            "securitySchemes": {
                "hookBasic": {
                    "type": "http",
                    "scheme": "basic",
                    "description": "The credentials configured in CometChat's dashboard "
                    "(`PRESENCE_HOOK_USERNAME`, `PRESENCE_HOOK_PASSWORD`).",
                },
                "apiBearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "One of `PRESENCE_API_TOKENS`.",
                },
            },
            "schemas": _schemas(),
            "responses": _shared_responses(),
        },
    }


def _version() -> str:
    try:
        return metadata.version("presence")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "0.0.0"


# --- paths ----------------------------------------------------------------------------------------


def _paths() -> dict[str, Any]:
    return {
        "/hook": {"post": _hook_operation()},
        "/users/{uid}/presence": {
            "get": _query(
                "getPresence",
                "A user's presence: status, last seen, live connections.",
                _answer(responses.Presence, "The user's presence."),
                parameters=[_path_parameter("uid", "The CometChat uid.", EXAMPLE_UID)],
                not_found="No connection event has named this uid.",
            )
        },
        "/users/{uid}/sessions": {
            "get": _query(
                "getSessions",
                "A user's connection history, newest connection first, a page at a time.",
                _answer(responses.SessionPage, "A page of the user's sessions."),
                parameters=[
                    _path_parameter("uid", "The CometChat uid.", EXAMPLE_UID),
                    _limit_parameter(),
                    _cursor_parameter(),
                ],
                bad_parameter=True,
                not_found="No connection event has named this uid.",
            )
        },
        "/users/{uid}/unread": {
            "get": _query(
                "getUnread",
                "A user's conversations with unread counts, newest conversation first, a page at a time.",
                _answer(responses.UnreadPage, "A page of the user's conversations, and the unread total."),
                parameters=[
                    _path_parameter("uid", "The CometChat uid.", EXAMPLE_UID),
                    _limit_parameter(),
                    _cursor_parameter(),
                ],
                bad_parameter=True,
            )
        },
        "/users": {
            "get": _query(
                "listUsers",
                "Users matching the filters, in uid order, a page at a time.",
                _answer(responses.UserPage, "A page of users."),
                parameters=[
                    _query_parameter(
                        "status", {"type": "string", "enum": list(STATUSES)}, "Only users with this status."
                    ),
                    _query_parameter(
                        "platform",
                        {"type": "string", "minLength": 1, "maxLength": 255, "examples": ["web"]},
                        "Only users with a live connection on this platform.",
                    ),
                    _limit_parameter(),
                    _cursor_parameter(),
                ],
                bad_parameter=True,
            )
        },
        "/presence": {
            "get": _query(
                "getPresences",
                f"Presence of 1 to {MAX_UIDS_PER_REQUEST} users at once; known users in the order asked.",
                _answer(responses.PresenceList, "The known users, and the uids never seen."),
                parameters=[_uids_parameter()],
                bad_parameter=True,
            )
        },
        "/messages/{message_id}/receipts": {
            "get": _query(
                "getMessageReceipts",
                "Who has received and read a message (receipts are watermarks).",
                _json_response(
                    "The message's readers and their times; for a group message, also who has not read it.",
                    {"anyOf": [_ref("MessageReceipts"), _ref("GroupMessageReceipts")]},
                ),
                parameters=[
                    _path_parameter("message_id", "CometChat's message id, a whole number.", EXAMPLE_MESSAGE_ID)
                ],
                not_found="No `after_message` and no receipt has named this message id.",
            )
        },
        "/conversations/{conversation_id}/receipts": {
            "get": _query(
                "getConversationReceipts",
                "Each reader's delivery and read watermarks in a conversation.",
                _answer(responses.ConversationReceipts, "The conversation's readers, sorted by uid."),
                parameters=[
                    _path_parameter(
                        "conversation_id",
                        "CometChat's conversation id (`a_user_b` or `group_<guid>`).",
                        EXAMPLE_CONVERSATION_ID,
                    )
                ],
                not_found="No message or receipt has named this conversation.",
            )
        },
        "/conversations/{conversation_id}/members": {
            "get": _query(
                "getMembers",
                "A conversation's members (one-to-one parties; a group's members by membership events and"
                " activity) in uid order, a page at a time.",
                _answer(responses.MemberPage, "A page of the conversation's members, and CometChat's count."),
                parameters=[
                    _path_parameter(
                        "conversation_id",
                        "CometChat's conversation id (`a_user_b` or `group_<guid>`).",
                        EXAMPLE_CONVERSATION_ID,
                    ),
                    _limit_parameter(),
                    _cursor_parameter(),
                ],
                bad_parameter=True,
                not_found="No message, receipt or membership event has named this conversation.",
            )
        },
        "/stats": {
            "get": _query(
                "getStats",
                "Users online and live connections, by platform.",
                _answer(responses.Stats, "Counts over every user."),
            )
        },
        "/changes": {"get": _changes_operation()},
        "/changes/stream": {"get": _stream_operation()},
        "/metrics": {"get": _metrics_operation()},
        "/healthz": {
            "get": _open_operation(
                "getHealthz",
                "`200` while the process serves; does not touch the database.",
                {"200": _answer(responses.Healthy, "The process serves.")},
            )
        },
        "/readyz": {
            "get": _open_operation(
                "getReadyz",
                "`200` when webhooks can be accepted now: the database answers, its schema is at the newest "
                "revision, and the last commit succeeded (after a failed one, a probing commit does).",
                {
                    "200": _answer(responses.Ready, "Ready to serve."),
                    "503": _error_response(
                        "The database cannot be reached, its schema is behind, or webhooks cannot be committed; "
                        "the message says why.",
                        "not_ready",
                    ),
                },
            )
        },
        "/openapi.json": {
            "get": _open_operation(
                "getOpenapi",
                "This document.",
                {"200": _json_response("The OpenAPI 3.1 document.", {"type": "object"})},
            )
        },
        "/dashboard": {"get": _dashboard_page_operation()},
        "/dashboard/{asset}": {"get": _dashboard_asset_operation()},
    }


def _hook_operation() -> dict[str, Any]:
    return {
        "operationId": "receiveWebhook",
        "summary": "A CometChat webhook; `200` once the event is committed.",
        "description": (
            "The `Content-Type` is not trusted: the body is parsed as JSON whatever it says. Known triggers: "
            + ", ".join(f"`{t}`" for t in sorted(WEBHOOK_TRIGGERS))
            + ". Any other trigger is acknowledged as `ignored` and kept."
        ),
        "tags": ["intake"],
        "security": [{"hookBasic": []}],
        "requestBody": {
            "required": True,
            "content": {JSON: {"schema": _ref("WebhookBody"), "examples": _hook_examples()}},
        },
        "responses": {
            "200": _answer(responses.HookAck, "Committed (`accepted`), or kept without acting on it (`ignored`)."),
            "400": _error_response(
                "Not JSON (`invalid_json`), not an object or nested too deep (`invalid_body`), or a known "
                "trigger with a missing or mistyped field, or the service's own `presence_reconcile` "
                "(`invalid_event`); a body that is not valid in the "
                "encoding its `Content-Encoding` names (`invalid_encoding`). Nothing is stored.",
                "invalid_json",
                "invalid_body",
                "invalid_event",
                "invalid_encoding",
            ),
            "401": _error_response(
                "Missing or wrong Basic credentials.",
                "unauthorized",
                headers={"WWW-Authenticate": _header('Always `Basic realm="presence"`.', required=True)},
            ),
            "413": _error_response("The body is larger than `PRESENCE_MAX_BODY_BYTES`.", "payload_too_large"),
            "422": _error_response(
                "The database refused this event alone; retrying will not help.", "unprocessable_event"
            ),
            "503": _error_response(
                "The database cannot be reached, or too many events are waiting; retry.",
                "unavailable",
                headers={"Retry-After": _header("Seconds to wait before retrying.", required=False)},
            ),
        },
    }


def _stream_operation() -> dict[str, Any]:
    change_filters = [
        _query_parameter("uid", {"type": "string", "minLength": 1, "maxLength": 255}, "Only the changes of this user."),
        _query_parameter("type", {"type": "string", "enum": list(CHANGE_TYPES)}, "Only the changes of this type."),
        _query_parameter(
            "conversation_id",
            {"type": "string", "minLength": 1, "maxLength": MAX_CONVERSATION_LENGTH},
            "Only the changes of this conversation.",
        ),
        _query_parameter(
            "after",
            {"type": "integer", "minimum": 0, "maximum": MAX_SEQ},
            "Resume after this `seq` (`Last-Event-ID` overrides it).",
        ),
        {
            "name": "Last-Event-ID",
            "in": "header",
            "required": False,
            "description": "Resume after this `seq`: the `id` of the last event received.",
            "schema": {"type": "string", "pattern": "^[0-9]{1,19}$"},
        },
    ]
    return {
        "operationId": "streamChanges",
        "summary": "The changes as Server-Sent Events, from now on or after a `seq`.",
        "description": (
            "Each change is an event with `id: <seq>`, `event: <type>` and `data: <the change as JSON>`, in `seq` "
            "order; a comment line (`: ping`) at least every `PRESENCE_STREAM_HEARTBEAT` seconds. Without "
            "`Last-Event-ID` or `after`, the stream starts with the changes committed after it opened. The bearer "
            "token is taken only from the `Authorization` header. A client that reads more slowly than changes "
            "come is disconnected; it resumes with `Last-Event-ID`."
        ),
        "tags": ["query"],
        "parameters": change_filters,
        "responses": {
            "200": {
                "description": "The stream; it ends when the service stops.",
                "content": {"text/event-stream": {"schema": {"type": "string"}}},
            },
            "400": {"$ref": "#/components/responses/InvalidParameter"},
            "401": {"$ref": "#/components/responses/Unauthorized"},
            "410": _error_response(
                "The cursor is older than what is kept: read the current state, then follow on.", "cursor_expired"
            ),
            "503": {"$ref": "#/components/responses/Unavailable"},
        },
    }


def _metrics_operation() -> dict[str, Any]:
    return {
        "operationId": "getMetrics",
        "summary": "Prometheus text format: events, intake latency, commit batches, database errors, users online.",
        "tags": ["operations"],
        "responses": {
            "200": {
                "description": "The metrics, in the exposition format of the installed `prometheus-client`.",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            },
            "401": {"$ref": "#/components/responses/Unauthorized"},
        },
    }


def _dashboard_headers() -> dict[str, Any]:
    """What every answer of the dashboard's routes carries (``presence.http.dashboard.SECURITY_HEADERS``)."""
    return {
        "Content-Security-Policy": _header(
            "Scripts, styles, images and requests from this service only.", required=True
        ),
        "X-Content-Type-Options": _header("Always `nosniff`.", required=True),
        "Referrer-Policy": _header("Always `no-referrer`.", required=True),
        "ETag": _header("A digest of the file; send it back as `If-None-Match`.", required=True),
    }


def _dashboard_page_operation() -> dict[str, Any]:
    return {
        "operationId": "getDashboard",
        "summary": "The operators' page (open it in a browser); it asks for an API token and reads this API with it.",
        "tags": ["dashboard"],
        "security": [],
        "responses": {
            "200": {
                "description": "The page.",
                "headers": _dashboard_headers(),
                "content": {"text/html": {"schema": {"type": "string"}}},
            },
            "304": {"description": "Not modified: `If-None-Match` named the page's `ETag`."},
        },
    }


def _dashboard_asset_operation() -> dict[str, Any]:
    media_types = sorted(set(ASSETS.values()))
    return {
        "operationId": "getDashboardAsset",
        "summary": "A script, style sheet, icon or licence of the dashboard, as `GET /dashboard` loads it.",
        "tags": ["dashboard"],
        "security": [],
        "parameters": [
            {
                "name": "asset",
                "in": "path",
                "required": True,
                "description": "The file's name.",
                "schema": {"type": "string", "enum": list(ASSETS)},
            }
        ],
        "responses": {
            "200": {
                "description": "The file.",
                "headers": _dashboard_headers(),
                "content": {media_type: {"schema": {"type": "string"}} for media_type in media_types},
            },
            "304": {"description": "Not modified: `If-None-Match` named the file's `ETag`."},
            "404": _error_response("The dashboard has no file of that name.", "not_found"),
        },
    }


def _query(
    operation_id: str,
    summary: str,
    ok: dict[str, Any],
    *,
    parameters: list[dict[str, Any]] | None = None,
    bad_parameter: bool = False,
    not_found: str | None = None,
) -> dict[str, Any]:
    """A query-API operation: bearer token, JSON answer, the error answers it can give."""
    answers: dict[str, Any] = {"200": ok}
    if bad_parameter:
        answers["400"] = {"$ref": "#/components/responses/InvalidParameter"}
    answers["401"] = {"$ref": "#/components/responses/Unauthorized"}
    if not_found is not None:
        answers["404"] = _error_response(not_found, "not_found")
    answers["503"] = {"$ref": "#/components/responses/Unavailable"}
    operation: dict[str, Any] = {"operationId": operation_id, "summary": summary, "tags": ["query"]}
    if parameters:
        operation["parameters"] = parameters
    operation["responses"] = answers
    return operation


def _changes_operation() -> dict[str, Any]:
    operation = _query(
        "getChanges",
        "Changes of what the query API answers, after a cursor, in `seq` (commit) order (contract §9).",
        _answer(responses.ChangePage, "The matching changes after `after`, and the cursor to ask from next."),
        parameters=change_parameters(),
        bad_parameter=True,
    )
    operation["responses"]["410"] = _error_response(
        "`after` is below what retention kept: read the current state again, then follow on from the "
        "`next_after` of a page read before it.",
        "cursor_expired",
    )
    return operation


def change_parameters(*, after: bool = True) -> list[dict[str, Any]]:
    """The filters of ``/changes`` (and ``after``, the cursor)."""
    parameters = [
        _query_parameter(
            "uid",
            {"type": "string", "minLength": 1, "maxLength": 255, "examples": [EXAMPLE_UID]},
            "Only the changes about this user: its presence, and receipts it gave.",
        ),
        _query_parameter("type", {"type": "string", "enum": list(CHANGE_TYPES)}, "Only changes of this type."),
        _query_parameter(
            "conversation_id",
            {"type": "string", "minLength": 1, "maxLength": MAX_CONVERSATION_LENGTH},
            "Only the receipt and group receipt changes of this conversation.",
        ),
    ]
    if after:
        parameters.insert(
            0,
            _query_parameter(
                "after",
                {"type": "integer", "minimum": 0, "maximum": MAX_SEQ, "default": 0},
                "The changes with a greater `seq`: `next_after` of the previous page; 0 for the oldest kept.",
            ),
        )
        parameters.insert(1, _limit_parameter())
    return parameters


def _open_operation(operation_id: str, summary: str, answers: dict[str, Any]) -> dict[str, Any]:
    """An operation that needs no credentials."""
    return {
        "operationId": operation_id,
        "summary": summary,
        "tags": ["operations"],
        "security": [],
        "responses": answers,
    }


# --- parameters -----------------------------------------------------------------------------------


def _path_parameter(name: str, description: str, example: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string", "minLength": 1},
        "example": example,
    }


def _query_parameter(name: str, schema: Schema, description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description, "schema": schema}


def _limit_parameter() -> dict[str, Any]:
    return _query_parameter(
        "limit",
        {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
        "Items per page.",
    )


def _cursor_parameter() -> dict[str, Any]:
    return _query_parameter(
        "cursor",
        {"type": "string", "pattern": CURSOR_PATTERN},
        "`next_cursor` of the previous page, unchanged; valid only for the same query.",
    )


def _uids_parameter() -> dict[str, Any]:
    return {
        "name": "uid",
        "in": "query",
        "required": True,
        "description": f"A uid; repeat it for each user (1 to {MAX_UIDS_PER_REQUEST} distinct uids).",
        "style": "form",
        "explode": True,
        "schema": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": MAX_UIDS_PER_REQUEST},
        "example": [EXAMPLE_UID, "nobody"],
    }


# --- responses ------------------------------------------------------------------------------------


def _shared_responses() -> dict[str, Any]:
    return {
        "InvalidParameter": _error_response(
            "A query parameter is not valid; the message names it.", "invalid_parameter"
        ),
        "Unauthorized": _error_response(
            "Missing or wrong bearer token.",
            "unauthorized",
            headers={"WWW-Authenticate": _header('Always `Bearer realm="presence"`.', required=True)},
        ),
        "Unavailable": _error_response("The database cannot be reached; retry later.", "unavailable"),
    }


def _json_response(description: str, schema: Schema) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _answer(shape: type[responses.Shape], description: str) -> dict[str, Any]:
    return _json_response(description, _ref(shape.__name__))


def _error_response(description: str, *codes: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    """The error shape, with the codes this answer can carry."""
    schema = {
        "allOf": [
            _ref("Error"),
            {"properties": {"error": {"properties": {"code": {"enum": list(codes)}}}}},
        ]
    }
    response = _json_response(description, schema)
    if headers:
        response["headers"] = headers
    return response


def _header(description: str, *, required: bool) -> dict[str, Any]:
    return {"description": description, "required": required, "schema": {"type": "string"}}


# --- schemas --------------------------------------------------------------------------------------


def _schemas() -> dict[str, Schema]:
    _, components = msgspec.json.schema_components(SHAPES, ref_template=SCHEMA_REF)
    return {**components, "WebhookBody": _webhook_body()}


def _webhook_body() -> Schema:
    """CometChat's webhook body, described loosely: the service checks the fields of each known trigger."""
    return {
        "type": "object",
        "description": (
            "One CometChat webhook. A known trigger with a missing or mistyped field is a `400 invalid_event` "
            "naming the field; message content is never stored."
        ),
        "required": ["trigger"],
        "properties": {
            "trigger": {
                "type": "string",
                "minLength": 1,
                "maxLength": MAX_TRIGGER_LENGTH,
                "examples": sorted(WEBHOOK_TRIGGERS),
            },
            "appId": {"type": "string"},
            "data": {"type": "object"},
        },
        "additionalProperties": True,
    }


def _hook_examples() -> dict[str, Any]:
    """The README's running example: a connection, a message, and its read receipt."""
    session = {"connected_at": 1795256130120, "cometchat_device_id": "d-1", "session_id": "s-1", "platform": "web"}
    connection = {
        "trigger": "after_connection_status_changed",
        "appId": "167*****1529",
        "data": {
            "user": {
                "uid": EXAMPLE_UID,
                "status": "online",
                "status_updated": True,
                "status_updated_at": 1795256130123,
            },
            "event": {"type": "connected", "at": 1795256130123, "event_for": session},
            "connections": [session],
        },
    }
    message = {
        "trigger": "after_message",
        "appId": "167*****1529",
        "data": {
            "id": EXAMPLE_MESSAGE_ID,
            "conversationId": EXAMPLE_CONVERSATION_ID,
            "sender": EXAMPLE_SENDER,
            "receiverType": "user",
            "receiver": EXAMPLE_UID,
            "category": "message",
            "type": "text",
            "sentAt": 1795256131,
        },
    }
    read = {
        "trigger": "message_read_receipt",
        "appId": "167*****1529",
        "data": {
            "messageId": EXAMPLE_MESSAGE_ID,
            "receiptType": "read",
            "readAt": 1795256140,
            "messageSender": EXAMPLE_SENDER,
            "receiptSender": EXAMPLE_UID,
            "receiptReceiver": EXAMPLE_SENDER,
            "receiverType": "user",
        },
    }
    return {
        "connection": {"summary": "A user connects a session.", "value": connection},
        "message": {"summary": "A message is sent (its content is never stored).", "value": message},
        "readReceipt": {"summary": "The receiver reads it.", "value": read},
    }


def _ref(name: str) -> Schema:
    return {"$ref": SCHEMA_REF.format(name=name)}
