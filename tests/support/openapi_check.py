"""Every answer the tests see, checked against ``/openapi.json``.

:func:`check_response` takes what one exchange produced (method, route
template, status, content type, body, headers) and raises ``AssertionError``
naming the first way it departs from the document: an undocumented status, an
undocumented media type, a body that does not match its schema, a required
header that is missing. ``tests/support/api.py`` calls :func:`check_client_response` on
every response that goes through ``Api``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any, Final

import orjson
from aiohttp import ClientResponse
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]
from jsonschema.exceptions import best_match  # type: ignore[import-untyped]
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from presence.http.openapi import openapi_document

#: The document is registered under this URI, so ``#/components/...`` refs resolve inside it.
DOCUMENT_URI: Final = "urn:presence:openapi"
#: What the router answers for a path no route matches, or a method the route lacks.
UNROUTED_ERRORS: Final = {404: "not_found", 405: "method_not_allowed"}

_ERROR_SCHEMA: Final = f"{DOCUMENT_URI}#/components/schemas/Error"


@functools.cache
def document() -> dict[str, Any]:
    return openapi_document()


@functools.cache
def _registry() -> Registry[Any]:
    resource = Resource.from_contents(document(), default_specification=DRAFT202012)
    registry: Registry[Any] = Registry().with_resource(DOCUMENT_URI, resource)
    return registry


@functools.cache
def _templates() -> tuple[tuple[re.Pattern[str], str], ...]:
    """Each documented path as a regex over the raw (percent-encoded) path, as aiohttp matches it."""
    patterns = []
    for template in document()["paths"]:
        parts = re.split(r"(\{[^}]+\})", template)
        regex = "".join("[^/]+" if part.startswith("{") else re.escape(part) for part in parts)
        patterns.append((re.compile(f"^{regex}$"), template))
    return tuple(patterns)


def path_template(raw_path: str) -> str | None:
    """The documented path template a concrete path falls under, if any."""
    for pattern, template in _templates():
        if pattern.match(raw_path):
            return template
    return None


def check_response(
    method: str,
    template: str | None,
    status: int,
    content_type: str,
    body: Any,
    *,
    headers: Mapping[str, str] | None = None,
) -> None:
    """Raise ``AssertionError`` unless this answer is one the document describes.

    ``template`` is ``None`` for a path no route serves; ``body`` is decoded JSON
    for a JSON answer, text otherwise.
    """
    where = f"{method.upper()} {template or '(no route)'} -> {status}"
    operation = _operation(method, template)
    if operation is None:
        _check_unrouted(where, status, content_type, body)
        return
    response = _response(operation, status)
    if response is None:
        documented = ", ".join(operation["responses"])
        raise AssertionError(f"{where}: status {status} is not documented (documented: {documented}); body: {body!r}")
    media_type = _media_type(content_type)
    content = response.get("content", {})
    if media_type not in content:
        raise AssertionError(f"{where}: content type {content_type!r} is not documented (documented: {list(content)})")
    _check_headers(where, response, headers)
    pointer = _pointer(
        "paths", template or "", method.lower(), "responses", str(status), "content", media_type, "schema"
    )
    if "$ref" in operation["responses"][str(status)]:  # a shared response: its schema lives in components
        ref = operation["responses"][str(status)]["$ref"]
        pointer = ref.removeprefix("#") + _pointer("content", media_type, "schema")
    _validate(where, f"{DOCUMENT_URI}#{pointer}", body)


async def check_client_response(response: ClientResponse) -> None:
    """Check one aiohttp client response; the body is read (and cached) for the caller."""
    raw = await response.read()
    content_type = response.headers.get("Content-Type", "")
    body: Any
    if _media_type(content_type) == "application/json":
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise AssertionError(
                f"{response.method} {response.url.path}: the body is not JSON: {raw[:200]!r}"
            ) from None
    else:
        body = raw.decode(errors="replace")
    template = path_template(response.url.raw_path)
    check_response(response.method, template, response.status, content_type, body, headers=response.headers)


def _operation(method: str, template: str | None) -> dict[str, Any] | None:
    if template is None:
        return None
    operation: dict[str, Any] | None = document()["paths"][template].get(method.lower())
    return operation


def _response(operation: Mapping[str, Any], status: int) -> dict[str, Any] | None:
    response: dict[str, Any] | None = operation["responses"].get(str(status))
    if response is not None and "$ref" in response:
        name = response["$ref"].rsplit("/", 1)[-1]
        resolved: dict[str, Any] = document()["components"]["responses"][name]
        return resolved
    return response


def _check_unrouted(where: str, status: int, content_type: str, body: Any) -> None:
    """A path or method the document does not name: the router's 404 or 405, in the error shape."""
    if status not in UNROUTED_ERRORS:
        raise AssertionError(f"{where}: an undocumented path or method must give 404 or 405, got {body!r}")
    if _media_type(content_type) != "application/json":
        raise AssertionError(f"{where}: an error must be JSON, got {content_type!r}")
    _validate(where, _ERROR_SCHEMA, body)
    code = body["error"]["code"]
    if code != UNROUTED_ERRORS[status]:
        raise AssertionError(f"{where}: expected code {UNROUTED_ERRORS[status]!r}, got {code!r}")


def _check_headers(where: str, response: Mapping[str, Any], headers: Mapping[str, str] | None) -> None:
    if headers is None:
        return
    for name, header in response.get("headers", {}).items():
        if header.get("required") and name not in headers:
            raise AssertionError(f"{where}: the documented header {name} is missing")


@functools.cache
def _validator(ref: str) -> Draft202012Validator:
    """A validator for the schema at ``ref``, whose own ``#/components/...`` refs resolve in the document."""
    return Draft202012Validator({"$ref": ref}, registry=_registry(), format_checker=Draft202012Validator.FORMAT_CHECKER)


def _validate(where: str, ref: str, body: Any) -> None:
    error = best_match(_validator(ref).iter_errors(body))
    if error is not None:
        location = "/".join(str(part) for part in error.absolute_path) or "(the body)"
        raise AssertionError(f"{where}: the body does not match the document at {location}: {error.message}\n{body!r}")


def _media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def _pointer(*parts: str) -> str:
    return "".join("/" + part.replace("~", "~0").replace("/", "~1") for part in parts)
