"""``GET /openapi.json``: the OpenAPI 3.1 document of every endpoint, served without a token.

The document is built from small helpers rather than written as one literal, so
that a response shape, an error answer or a parameter is said once. The tests
keep it true: every response the suite sees is validated against it
(``tests/openapi_check.py``), and schemathesis runs it against a real server
(``tests/test_openapi.py``). Response objects say ``additionalProperties: false``
so that a field added to an answer without being documented fails those tests.
"""

from __future__ import annotations

import functools
from importlib import metadata
from typing import Any, Final

import orjson
from aiohttp import web

from presence.core.events import KNOWN_TRIGGERS, MAX_TRIGGER_LENGTH
from presence.http.api import DEFAULT_LIMIT, MAX_LIMIT, MAX_UIDS_PER_REQUEST, STATUSES

Schema = dict[str, Any]

#: How every time in every answer is written: ISO 8601, UTC, milliseconds, ``Z`` (contract §3).
INSTANT_PATTERN: Final = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$"
#: Message ids are whole numbers, written as strings.
MESSAGE_ID_PATTERN: Final = r"^\d+$"
#: Cursors are URL-safe base64 without padding; opaque to callers.
CURSOR_PATTERN: Final = r"^[A-Za-z0-9_-]+$"
JSON: Final = "application/json"
#: The README's running example; the tests seed these so that examples reach a ``200``.
EXAMPLE_UID: Final = "cometchat-uid-4"
EXAMPLE_SENDER: Final = "cometchat-uid-5"
EXAMPLE_MESSAGE_ID: Final = "57"
EXAMPLE_CONVERSATION_ID: Final = f"{EXAMPLE_UID}_user_{EXAMPLE_SENDER}"


async def get_openapi(_request: web.Request) -> web.Response:
    """The document, as JSON; no token, no database."""
    return web.Response(body=_document_bytes(), content_type=JSON)


@functools.cache
def _document_bytes() -> bytes:
    return orjson.dumps(openapi_document())


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
                _ref_response("Presence", "The user's presence."),
                parameters=[_path_parameter("uid", "The CometChat uid.", EXAMPLE_UID)],
                not_found="No connection event has named this uid.",
            )
        },
        "/users/{uid}/sessions": {
            "get": _query(
                "getSessions",
                "A user's connection history, newest connection first, a page at a time.",
                _ref_response("SessionPage", "A page of the user's sessions."),
                parameters=[
                    _path_parameter("uid", "The CometChat uid.", EXAMPLE_UID),
                    _limit_parameter(),
                    _cursor_parameter(),
                ],
                bad_parameter=True,
                not_found="No connection event has named this uid.",
            )
        },
        "/users": {
            "get": _query(
                "listUsers",
                "Users matching the filters, in uid order, a page at a time.",
                _ref_response("UserPage", "A page of users."),
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
                _ref_response("PresenceList", "The known users, and the uids never seen."),
                parameters=[_uids_parameter()],
                bad_parameter=True,
            )
        },
        "/messages/{message_id}/receipts": {
            "get": _query(
                "getMessageReceipts",
                "Who has received and read a message (receipts are watermarks).",
                _ref_response("MessageReceipts", "The message's readers and their times."),
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
                _ref_response("ConversationReceipts", "The conversation's readers, sorted by uid."),
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
        "/stats": {
            "get": _query(
                "getStats",
                "Users online and live connections, by platform.",
                _ref_response("Stats", "Counts over every user."),
            )
        },
        "/metrics": {"get": _metrics_operation()},
        "/healthz": {
            "get": _open_operation(
                "getHealthz",
                "`200` while the process serves; does not touch the database.",
                {"200": _json_response("The process serves.", _status_schema("ok"))},
            )
        },
        "/readyz": {
            "get": _open_operation(
                "getReadyz",
                "`200` when webhooks can be accepted now: the database answers, its schema is at the newest "
                "revision, and the last commit succeeded (after a failed one, a probing commit does).",
                {
                    "200": _json_response("Ready to serve.", _ready_schema()),
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
    }


def _hook_operation() -> dict[str, Any]:
    return {
        "operationId": "receiveWebhook",
        "summary": "A CometChat webhook; `200` once the event is committed.",
        "description": (
            "The `Content-Type` is not trusted: the body is parsed as JSON whatever it says. Known triggers: "
            + ", ".join(f"`{t}`" for t in sorted(KNOWN_TRIGGERS))
            + ". Any other trigger is acknowledged as `ignored` and kept."
        ),
        "tags": ["intake"],
        "security": [{"hookBasic": []}],
        "requestBody": {
            "required": True,
            "content": {JSON: {"schema": _ref("WebhookBody"), "examples": _hook_examples()}},
        },
        "responses": {
            "200": _ref_response("HookAck", "Committed (`accepted`), or kept without acting on it (`ignored`)."),
            "400": _error_response(
                "Not JSON (`invalid_json`), not an object or nested too deep (`invalid_body`), or a known "
                "trigger with a missing or mistyped field (`invalid_event`); a body that is not valid in the "
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
    responses: dict[str, Any] = {"200": ok}
    if bad_parameter:
        responses["400"] = {"$ref": "#/components/responses/InvalidParameter"}
    responses["401"] = {"$ref": "#/components/responses/Unauthorized"}
    if not_found is not None:
        responses["404"] = _error_response(not_found, "not_found")
    responses["503"] = {"$ref": "#/components/responses/Unavailable"}
    operation: dict[str, Any] = {"operationId": operation_id, "summary": summary, "tags": ["query"]}
    if parameters:
        operation["parameters"] = parameters
    operation["responses"] = responses
    return operation


def _open_operation(operation_id: str, summary: str, responses: dict[str, Any]) -> dict[str, Any]:
    """An operation that needs no credentials."""
    return {
        "operationId": operation_id,
        "summary": summary,
        "tags": ["operations"],
        "security": [],
        "responses": responses,
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


def _ref_response(schema_name: str, description: str) -> dict[str, Any]:
    return _json_response(description, _ref(schema_name))


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
    return {
        "Instant": {
            "type": "string",
            "format": "date-time",
            "pattern": INSTANT_PATTERN,
            "description": "ISO 8601, UTC, millisecond precision, ending in `Z`.",
            "examples": ["2026-11-21T10:15:30.123Z"],
        },
        "Connection": _object(
            "A live connection of a user.",
            session_id={"type": "string"},
            device_id=_nullable_string(),
            platform=_nullable_string(),
            connected_at=_nullable_instant(),
        ),
        "Presence": _object(
            "A user's presence, from the newest connection event for that user.",
            uid={"type": "string"},
            status={"type": "string", "description": "`data.user.status` of the newest connection event."},
            status_updated_at=_nullable_instant(),
            last_seen_at=_ref("Instant"),
            connections=_array(_ref("Connection"), "Live connections, by `connected_at`, then `session_id`."),
        ),
        "PresenceList": _object(
            "Known users in the order asked, and the uids never seen.",
            users=_array(_ref("Presence")),
            unknown=_array({"type": "string"}),
        ),
        "UserPage": _object(
            "A page of users in uid order.",
            users=_array(_ref("Presence")),
            next_cursor=_next_cursor(),
        ),
        "Session": _object(
            "One connection of a user's history.",
            session_id={"type": "string"},
            device_id=_nullable_string(),
            platform=_nullable_string(),
            connected_at=_nullable_instant(),
            disconnected_at=_nullable_instant(),
        ),
        "SessionPage": _object(
            "A page of a user's sessions, newest connection first.",
            sessions=_array(_ref("Session")),
            next_cursor=_next_cursor(),
        ),
        "Receipt": _object(
            "One reader of a message.",
            uid={"type": "string"},
            delivered_at=_nullable_instant(),
            read_at=_nullable_instant(),
        ),
        "MessageReceipts": _object(
            "A message's readers, sorted by uid; its sender is never listed.",
            message_id={"type": "string", "pattern": MESSAGE_ID_PATTERN},
            conversation_id={"type": "string"},
            sender=_nullable_string(),
            receipts=_array(_ref("Receipt")),
            delivered_count=_count(),
            read_count=_count(),
        ),
        "ReaderWatermark": _object(
            "The highest message id a reader has delivered and read in a conversation, and when.",
            uid={"type": "string"},
            delivered_up_to={"type": ["string", "null"], "pattern": MESSAGE_ID_PATTERN},
            delivered_at=_nullable_instant(),
            read_up_to={"type": ["string", "null"], "pattern": MESSAGE_ID_PATTERN},
            read_at=_nullable_instant(),
        ),
        "ConversationReceipts": _object(
            "Each reader's watermarks in a conversation, sorted by uid.",
            conversation_id={"type": "string"},
            readers=_array(_ref("ReaderWatermark")),
        ),
        "Stats": _object(
            "Counts over every user.",
            users_online=_count(),
            connections=_count(),
            connections_by_platform={
                "type": "object",
                "description": "Live connections by platform; `unknown` for sessions whose platform was never sent.",
                "additionalProperties": _count(),
            },
        ),
        "HookAck": _object(
            "The event was committed, or kept without being acted on.",
            status={"type": "string", "enum": ["accepted", "ignored"]},
        ),
        "WebhookBody": _webhook_body(),
        "Error": _object(
            "Every error answer.",
            error=_object(
                None,
                code={"type": "string", "pattern": r"^[a-z][a-z0-9_]*$", "description": "Stable, snake_case."},
                message={"type": "string"},
            ),
        ),
    }


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
                "examples": sorted(KNOWN_TRIGGERS),
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


def _ready_schema() -> Schema:
    return _object(
        None,
        status={"type": "string", "enum": ["ready"]},
        revision={"type": "string", "description": "The schema's Alembic revision (the newest)."},
    )


def _status_schema(value: str) -> Schema:
    return _object(None, status={"type": "string", "enum": [value]})


def _object(description: str | None, **properties: Schema) -> Schema:
    """A closed object whose every property is always present (``null`` where it says so)."""
    schema: Schema = {"type": "object"}
    if description is not None:
        schema["description"] = description
    schema["required"] = list(properties)
    schema["properties"] = properties
    schema["additionalProperties"] = False
    return schema


def _array(items: Schema, description: str | None = None) -> Schema:
    schema: Schema = {"type": "array", "items": items}
    if description is not None:
        schema["description"] = description
    return schema


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable_string() -> Schema:
    return {"type": ["string", "null"]}


def _nullable_instant() -> Schema:
    return {"type": ["string", "null"], "format": "date-time", "pattern": INSTANT_PATTERN}


def _next_cursor() -> Schema:
    return {
        "type": ["string", "null"],
        "pattern": CURSOR_PATTERN,
        "description": "Pass it as `cursor` for the next page; `null` on the last page.",
    }


def _count() -> Schema:
    return {"type": "integer", "minimum": 0}
