"""A stand-in for CometChat's REST API (v3): a real HTTP server that answers as ``cometchat/rest-api-users.md`` says.

``GET /v3/users`` with ``status``, ``perPage`` (default 100, at most 1000) and ``page`` (from 1),
answering ``{"data": [...], "meta": {"pagination": {...}}}``; ``GET /v3/users/{uid}`` answering
``{"data": {...}}`` or ``404``. Every request needs the ``apikey`` header (``401`` otherwise).

What a test sets: the users and their status; users the listing skips though online (``hidden``:
the list shifted under the walk); and scripted answers, taken in order by the listing or by the
single-user requests, before the normal ones: a status with an optional ``Retry-After``, a
malformed body, the normal answer late (``Slow``), or ``"hang"`` (no answer until the test ends).
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, field
from types import TracebackType
from typing import Literal, Self

import orjson
from aiohttp import web
from aiohttp.test_utils import TestServer

API_KEY = "rest-api-key-0123456789abcdef"


@dataclass(frozen=True, slots=True)
class Scripted:
    """One answer given instead of the normal one."""

    status: int = 200
    retry_after: str | None = None
    #: A body to send as is (a malformed answer); ``None``: an error object.
    body: bytes | None = None


@dataclass(frozen=True, slots=True)
class Slow:
    """The normal answer, after ``seconds``: a slow CometChat (a client's timeout shorter than it gives up)."""

    seconds: float


Answer = Scripted | Slow | Literal["hang"]


@dataclass(frozen=True, slots=True)
class Seen:
    path: str
    query: dict[str, str]
    apikey: str | None


@dataclass(slots=True)
class _Scripts:
    listing: list[Answer] = field(default_factory=list)
    user: list[Answer] = field(default_factory=list)


class CometChatStandIn:
    def __init__(self, *, api_key: str = API_KEY) -> None:
        self.api_key = api_key
        #: uid -> CometChat's status: ``available`` or ``offline``.
        self.users: dict[str, str] = {}
        #: Online users the listing leaves out, as a shifting list does.
        self.hidden: set[str] = set()
        #: ``lastActiveAt`` (seconds) by uid, for the users that have one.
        self.last_active: dict[str, int] = {}
        self.scripts = _Scripts()
        self.seen: list[Seen] = []
        self._release = asyncio.Event()
        #: Set once a request hangs (a ``"hang"`` answer was taken).
        self.hanging = asyncio.Event()
        app = web.Application()
        app.router.add_get("/v3/users", self._list)
        app.router.add_get("/v3/users/{uid}", self._one)
        self._server = TestServer(app, host="127.0.0.1")

    @property
    def url(self) -> str:
        """The base URL, as ``PRESENCE_COMETCHAT_API_URL`` takes it."""
        return str(self._server.make_url("/v3"))

    def online(self, *uids: str) -> None:
        self.users.update(dict.fromkeys(uids, "available"))

    def offline(self, *uids: str) -> None:
        self.users.update(dict.fromkeys(uids, "offline"))

    def listings(self) -> list[Seen]:
        return [s for s in self.seen if s.path == "/v3/users"]

    def lookups(self) -> list[str]:
        return [s.path.removeprefix("/v3/users/") for s in self.seen if s.path != "/v3/users"]

    def _user(self, uid: str) -> dict[str, object]:
        # As CometChat answers (rest-api-users.md): a profile of a few hundred bytes, so that a page of
        # a thousand users arrives in many chunks, as it does from CometChat.
        user: dict[str, object] = {
            "uid": uid,
            "name": uid.upper(),
            "avatar": f"https://data-us.cometchat.io/assets/images/avatars/{uid}.png",
            "link": f"https://example.com/people/{uid}",
            "status": self.users[uid],
            "role": "default",
            "metadata": {"@private": {"email": f"{uid}@example.com", "contactNumber": "+10000000000"}},
            "createdAt": 1696932834,
            "updatedAt": 1696932834,
        }
        if uid in self.last_active:
            user["lastActiveAt"] = self.last_active[uid]
        return user

    async def _scripted(self, request: web.Request, scripts: list[Answer]) -> web.Response | None:
        self.seen.append(Seen(request.path, dict(request.query), request.headers.get("apikey")))
        if request.headers.get("apikey") != self.api_key:
            return _error(401, "AUTH_ERR_APIKEY_NOT_FOUND")
        if not scripts:
            return None
        answer = scripts.pop(0)
        if answer == "hang":
            self.hanging.set()
            await self._release.wait()
            return _error(503, "GONE")
        if isinstance(answer, Slow):
            await asyncio.sleep(answer.seconds)  # the stand-in is slow, not the test: nothing to await instead
            return None
        if answer.body is not None:
            return web.Response(status=answer.status, body=answer.body, content_type="application/json")
        headers = {} if answer.retry_after is None else {"Retry-After": answer.retry_after}
        return _error(answer.status, "SCRIPTED", headers)

    async def _list(self, request: web.Request) -> web.Response:
        scripted = await self._scripted(request, self.scripts.listing)
        if scripted is not None:
            return scripted
        per_page = int(request.query.get("perPage", "100"))
        page = int(request.query.get("page", "1"))
        if not 1 <= per_page <= 1000 or page < 1:
            return _error(400, "ERR_BAD_REQUEST")
        status = request.query.get("status")
        matching = sorted(
            uid
            for uid, user_status in self.users.items()
            if (status is None or user_status == status) and uid not in self.hidden
        )
        start = (page - 1) * per_page
        data = [self._user(uid) for uid in matching[start : start + per_page]]
        pagination = {
            "total": len(matching),
            "count": len(data),
            "per_page": per_page,
            "current_page": page,
            "total_pages": max(1, math.ceil(len(matching) / per_page)),
        }
        return _json({"data": data, "meta": {"pagination": pagination}})

    async def _one(self, request: web.Request) -> web.Response:
        scripted = await self._scripted(request, self.scripts.user)
        if scripted is not None:
            return scripted
        uid = request.match_info["uid"]
        if uid not in self.users:
            return _error(404, "ERR_UID_NOT_FOUND")
        return _json({"data": self._user(uid)})

    async def __aenter__(self) -> Self:
        await self._server.start_server()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._release.set()
        await self._server.close()


def _json(body: object) -> web.Response:
    return web.Response(body=orjson.dumps(body), content_type="application/json")


def _error(status: int, code: str, headers: dict[str, str] | None = None) -> web.Response:
    body = {"error": {"code": code, "message": f"{code} (stand-in)"}}
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json", headers=headers)
