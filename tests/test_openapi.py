"""Contract §7: ``GET /openapi.json`` describes every endpoint, and the service keeps to it.

Three ways the document is kept true: it is a valid OpenAPI 3.1 document served
without a token; its operations are exactly the app's routes; and schemathesis,
run against a real ``presence serve`` on a seeded database, finds no ``5xx`` and
no answer the document does not describe. (Every response the rest of the suite
sees through ``tests/support/api.py`` is validated too, by ``tests/support/openapi_check.py``.)
"""

from __future__ import annotations

import asyncio
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import schemathesis
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]
from openapi_spec_validator import OpenAPIV31SpecValidator, validate
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from presence.http.app import create_app
from presence.http.openapi import (
    EXAMPLE_CONVERSATION_ID,
    EXAMPLE_MESSAGE_ID,
    EXAMPLE_SENDER,
    EXAMPLE_UID,
    SHAPES,
    openapi_document,
)
from tests.support import payloads
from tests.support.api import API_AUTH, API_TOKEN, HOOK_AUTH, HOOK_PASSWORD, HOOK_USERNAME, Api, make_settings
from tests.support.databases import Databases
from tests.support.openapi_check import check_response, path_template
from tests.support.server import ServerProcess, presence_environment

#: Per operation; with 12 operations and two backends the whole run stays well under a minute.
MAX_EXAMPLES = 25
SEED = 20261121
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


# --- the document itself --------------------------------------------------------------------------


async def test_the_document_is_served_without_a_token(api: Api) -> None:
    """§7: no token; the same document the code builds."""
    response = await api.get("/openapi.json", authorization=None)
    assert response.status == 200
    assert response.content_type == "application/json"
    assert await response.json() == orjson.loads(orjson.dumps(openapi_document()))


def test_the_document_is_valid_openapi_3_1() -> None:
    document = openapi_document()
    assert document["openapi"].startswith("3.1.")
    validate(document, cls=OpenAPIV31SpecValidator)  # raises with the offending path
    for schema in document["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)  # raises SchemaError naming the keyword


def test_every_answer_object_is_closed_and_has_every_property_required() -> None:
    """A field with a default would be optional in the schema; an open object would let a new field through."""
    schemas = openapi_document()["components"]["schemas"]
    answers = {name: schema for name, schema in schemas.items() if name != "WebhookBody"}
    assert set(answers) >= {shape.__name__ for shape in SHAPES}
    for name, schema in answers.items():
        assert schema["type"] == "object", name
        assert schema["required"] == list(schema["properties"]), name
        assert schema["additionalProperties"] is False, name


def test_every_route_is_documented_and_every_documented_operation_is_routed() -> None:
    app = create_app(make_settings("sqlite+aiosqlite:///unused.db"))
    routed = {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.method != "HEAD" and route.resource is not None  # aiohttp adds HEAD to every GET
    }
    documented = {
        (method.upper(), path) for path, operations in openapi_document()["paths"].items() for method in operations
    }
    assert routed - documented == set(), "routes missing from /openapi.json"
    assert documented - routed == set(), "documented operations no route serves"


async def test_the_documented_security_is_what_each_handler_asks_for(api: Api) -> None:
    """An operation with a security requirement answers 401 without credentials; one without, does not."""
    document = openapi_document()
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            concrete = path.format(uid=EXAMPLE_UID, message_id=EXAMPLE_MESSAGE_ID, conversation_id="c", asset="app.js")
            if method == "post":
                response = await api.post_hook({"trigger": "x"}, authorization=None)
            else:
                response = await api.get(concrete, authorization=None)
            secured = bool(operation.get("security", document["security"]))
            assert (response.status == 401) == secured, f"{method.upper()} {path}: {response.status}"


async def test_500_uids_of_the_longest_length_fit_in_one_request(api: Api) -> None:
    """§6 allows 500 uids, and ids may be 255 characters: the request line must hold them."""
    query = "&".join(f"uid={n:0>255}" for n in range(500))
    response = await api.get(f"/presence?{query}")
    assert response.status == 200, await response.text()
    assert len((await response.json())["unknown"]) == 500


# --- the checker the suite uses: it must be able to fail ------------------------------------------


def test_the_checker_finds_a_path_template() -> None:
    assert path_template("/users/a%2Fb/presence") == "/users/{uid}/presence"
    assert path_template("/users") == "/users"
    assert path_template("/users/") is None


_PRESENCE_WITHOUT_MILLISECONDS: dict[str, Any] = {
    "uid": "u",
    "status": "online",
    "status_updated_at": None,
    "last_seen_at": "2026-11-21T10:15:30Z",
    "status_source": "webhook",
    "connections": [],
}
_STATS_WITH_AN_EXTRA_FIELD = {"users_online": 1, "connections": 1, "connections_by_platform": {}, "extra": 1}


def _error(code: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": "x"}}


@pytest.mark.parametrize(
    ("exchange", "complaint"),
    [
        (("GET", "/stats", 418, "application/json", {}), "status 418 is not documented"),
        (("GET", "/stats", 200, "text/html", "<p>"), "content type 'text/html' is not documented"),
        (("GET", "/stats", 200, "application/json", _STATS_WITH_AN_EXTRA_FIELD), "does not match"),
        (
            ("GET", "/users/{uid}/presence", 200, "application/json", _PRESENCE_WITHOUT_MILLISECONDS),
            "does not match the document at last_seen_at",
        ),
        (("GET", "/stats", 401, "application/json", _error("forbidden")), "does not match"),
        (("POST", "/hook", 400, "application/json", _error("not_found")), "does not match"),
        (("GET", None, 500, "application/json", _error("internal_error")), "404 or 405"),
        (("DELETE", "/stats", 405, "application/json", _error("not_found")), "expected code 'method_not_allowed'"),
    ],
)
def test_the_checker_rejects_what_the_document_does_not_say(
    exchange: tuple[str, str | None, int, str, Any], complaint: str
) -> None:
    with pytest.raises(AssertionError, match=complaint):
        check_response(*exchange)


def test_the_checker_insists_on_documented_headers() -> None:
    body = {"error": {"code": "unauthorized", "message": "Basic credentials are required"}}
    check_response("POST", "/hook", 401, "application/json", body, headers={"WWW-Authenticate": 'Basic realm="x"'})
    with pytest.raises(AssertionError, match="WWW-Authenticate"):
        check_response("POST", "/hook", 401, "application/json", body, headers={})


# --- schemathesis against a real server -----------------------------------------------------------

_config = SchemathesisConfig.from_dict(
    {
        "seed": SEED,
        "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True},
        "auth": {
            "openapi": {
                "hookBasic": {"username": HOOK_USERNAME, "password": HOOK_PASSWORD},
                "apiBearer": {"bearer": API_TOKEN},
            }
        },
    }
)
# A stream answers for as long as the service runs: its answers are checked against the document
# by tests/test_stream.py instead, which reads them as a client of a stream does.
schema = schemathesis.openapi.from_dict(openapi_document(), config=_config).exclude(path="/changes/stream")


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def live_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real ``presence serve`` on a fresh database, seeded with the document's examples; its base URL."""
    databases: Databases = request.getfixturevalue(f"{request.param}_databases")
    url = asyncio.run(databases.fresh())
    try:
        with ServerProcess(presence_environment(url), tmp_path_factory.mktemp("openapi")) as server:
            server.start()
            _seed(server.url)
            yield server.url
            server.terminate()
    finally:
        asyncio.run(databases.drop(url))


@schema.parametrize()
def test_the_running_service_keeps_to_the_document(case: schemathesis.Case[Any], live_server: str) -> None:
    """No 5xx; every status, media type and body is one the document describes (ours and schemathesis's view)."""
    response = case.call(base_url=live_server, timeout=10)
    case.validate_response(response, checks=CHECKS)
    content_type = response.headers.get("content-type", [""])[0]
    body = response.json() if content_type.startswith("application/json") else response.text
    check_response(case.method, case.path, response.status_code, content_type, body)


def _seed(base_url: str) -> None:
    """The README's running example, with current times so that retention keeps it."""
    now_ms = int(time.time() * 1000)
    session = payloads.device("s-1", connected_at=now_ms - 10, device_id="d-1", platform="web")
    bodies = [
        payloads.connection(EXAMPLE_UID, "connected", now_ms, session, connections=[session]),
        payloads.connection(EXAMPLE_SENDER, "disconnected", now_ms, payloads.device("s-2")),
        payloads.message(EXAMPLE_MESSAGE_ID, EXAMPLE_CONVERSATION_ID, EXAMPLE_SENDER, sent_at=now_ms // 1000),
        payloads.receipt(
            "read",
            EXAMPLE_MESSAGE_ID,
            reader=EXAMPLE_UID,
            message_sender=EXAMPLE_SENDER,
            at=now_ms // 1000,
            receiver=EXAMPLE_SENDER,
        ),
    ]
    for body in bodies:
        _post(f"{base_url}/hook", body, HOOK_AUTH)
    # The seeded answers are themselves checked, so each 200 shape is exercised at least once.
    for path in (
        f"/users/{EXAMPLE_UID}/presence",
        f"/users/{EXAMPLE_UID}/sessions?limit=1",
        "/users?status=online&limit=1",
        f"/presence?uid={EXAMPLE_UID}&uid=nobody",
        f"/messages/{EXAMPLE_MESSAGE_ID}/receipts",
        f"/conversations/{EXAMPLE_CONVERSATION_ID}/receipts",
        "/stats",
    ):
        status, content_type, body = _get(f"{base_url}{path}", API_AUTH)
        assert status == 200, (path, body)
        check_response("GET", path_template(path.split("?", 1)[0]), status, content_type, body)


def _post(url: str, body: object, authorization: str) -> None:
    request = urllib.request.Request(
        url, data=orjson.dumps(body), headers={"Authorization": authorization}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200, response.read()


def _get(url: str, authorization: str) -> tuple[int, str, Any]:
    request = urllib.request.Request(url, headers={"Authorization": authorization})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, response.headers["Content-Type"], orjson.loads(response.read())
