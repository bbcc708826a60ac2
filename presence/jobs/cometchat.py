"""A client of CometChat's REST API (v3), for what reconciliation reads (``cometchat/rest-api-users.md``).

Two calls: the users CometChat has online (``GET /users?status=available``, by ``perPage`` and
``page``), and one user (``GET /users/{uid}``). Every request carries the ``apikey`` header,
is bounded by ``timeout``, and is retried after a ``429`` (waiting what its ``Retry-After``
says), a ``5xx``, a timeout or a connection error, while the pass's retry budget lasts. A
``401`` / ``403`` is not retried: the key is wrong, and asking again will not mend it.

The key is a :class:`~presence.settings.Secret`: it goes into the header of each request and
nowhere else; no error, log line or ``repr`` here carries it (``tests/test_reconcile.py`` checks).
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Final, Self

import aiohttp
import orjson

from presence.core.reconcile import ONLINE_STATUSES
from presence.core.times import InvalidInstant, parse_instant
from presence.settings import Secret

log = logging.getLogger(__name__)

#: The most users one page may hold (CometChat's limit for ``perPage``).
MAX_PER_PAGE: Final = 1000
#: Most pages one listing walks: 10 million users at 1000 a page; more means the answers loop.
MAX_PAGES: Final = 10_000
#: Most bytes of one answer read: a page of 1000 users is about 300 KB.
MAX_ANSWER_BYTES: Final = 16 * 1024 * 1024
FIRST_DELAY: Final = 0.5
MAX_DELAY: Final = 30.0


class CometChatError(Exception):
    """CometChat's REST API failed for this pass; the message is one line, ``status`` its metrics label."""

    def __init__(self, message: str, status: str) -> None:
        super().__init__(message)
        #: The HTTP status, or ``timeout``, ``error`` (no answer), ``malformed`` (an answer not as documented).
        self.status = status


@dataclass(frozen=True, slots=True)
class RemoteUser:
    """A user as CometChat's REST API describes it."""

    uid: str
    online: bool
    #: ``lastActiveAt`` in milliseconds, when the answer gave one.
    last_active_at_ms: int | None


class CometChat:
    """One pass's client: a session of its own, a count of requests, and a retry budget spent by the pass."""

    def __init__(
        self,
        base_url: str,
        api_key: Secret,
        *,
        timeout: float = 10.0,
        retry_budget: float = 60.0,
        max_attempts: int = 5,
        per_page: int = MAX_PER_PAGE,
        on_error: Callable[[str], None] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._base = base_url.rstrip("/")
        self._headers = {"apikey": api_key.reveal(), "accept": "application/json", "User-Agent": "presence"}
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        #: Seconds the pass may still spend waiting between tries.
        self._budget = retry_budget
        self._max_attempts = max_attempts
        self._per_page = min(per_page, MAX_PER_PAGE)
        self._on_error = on_error
        self._sleep = sleep
        self._session: aiohttp.ClientSession | None = None
        #: Requests sent (tries included), and how many of them failed.
        self.requests = 0
        self.errors = 0

    def __repr__(self) -> str:
        return f"CometChat({self._base!r})"

    async def __aenter__(self) -> Self:
        # The key only in each request's headers: a session's default headers show in its repr.
        self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def online_pages(self) -> AsyncIterator[list[RemoteUser]]:
        """The users CometChat lists online, a page at a time, until the last page.

        Paging is by page number: a user may be missed, or seen twice, when the list shifts.
        """
        page = 1
        while page <= MAX_PAGES:
            answer = await self._get(
                "/users", {"status": "available", "perPage": str(self._per_page), "page": str(page)}
            )
            data = _field(answer, "data", list)
            users = [_user(entry) for entry in data]
            yield [user for user in users if user.online]
            total_pages = _pagination(answer)
            last = page >= total_pages if total_pages is not None else len(data) < self._per_page
            if last or not data:
                return
            page += 1
        raise CometChatError(f"CometChat listed more than {MAX_PAGES} pages of online users", "malformed")

    async def user(self, uid: str) -> RemoteUser | None:
        """One user, or ``None`` when CometChat has no such uid (``404``)."""
        answer = await self._get(f"/users/{urllib.parse.quote(uid, safe='')}", {}, missing_ok=True)
        if answer is None:
            return None
        found = _user(_field(answer, "data", dict))
        if found.uid != uid.lower() and found.uid != uid:
            raise CometChatError("CometChat answered GET /users/{uid} with another user", "malformed")
        return found

    async def _get(self, path: str, params: dict[str, str], *, missing_ok: bool = False) -> Any:
        assert self._session is not None, "use the client in an `async with` block"
        attempt = 0
        while True:
            attempt += 1
            self.requests += 1
            retry_after: float | None = None
            try:
                status, retry_after, body = await self._send(path, params)
            except TimeoutError:
                failure = CometChatError(f"CometChat did not answer GET {_route(path)} in time", "timeout")
            except aiohttp.ClientError as error:
                # The error names the host and the reason, never a header.
                failure = CometChatError(f"CometChat could not be reached ({type(error).__name__})", "error")
            else:
                if status == 200:
                    try:
                        return orjson.loads(body)
                    except orjson.JSONDecodeError:
                        self._failed("malformed")
                        raise CometChatError(
                            f"CometChat answered GET {_route(path)} with no JSON", "malformed"
                        ) from None
                if status == 404 and missing_ok:
                    return None
                if status in (401, 403):
                    self._failed(str(status))
                    raise CometChatError(
                        f"CometChat refused the REST API key ({status}): check PRESENCE_COMETCHAT_API_KEY and"
                        " PRESENCE_COMETCHAT_APP_ID",
                        str(status),
                    )
                failure = CometChatError(f"CometChat answered GET {_route(path)} with {status}", str(status))
                if status != 429 and status < 500:
                    self._failed(failure.status)
                    raise failure
            self._failed(failure.status)
            delay = retry_after if failure.status == "429" and retry_after is not None else _backoff(attempt)
            if attempt >= self._max_attempts or delay > self._budget:
                raise CometChatError(f"{failure} (gave up after {attempt} tries)", failure.status)
            self._budget -= delay
            log.info("%s; trying again in %.1f s", failure, delay)
            await self._sleep(delay)

    async def _send(self, path: str, params: dict[str, str]) -> tuple[int, float | None, bytes]:
        assert self._session is not None
        async with self._session.get(
            self._base + path, params=params, headers=self._headers, allow_redirects=False
        ) as response:
            body = await _read_at_most(response.content, MAX_ANSWER_BYTES)
            return response.status, _retry_after(response.headers.get("Retry-After")), body

    def _failed(self, status: str) -> None:
        self.errors += 1
        if self._on_error is not None:
            self._on_error(status)


async def _read_at_most(content: aiohttp.StreamReader, limit: int) -> bytes:
    """The whole body, or its first ``limit`` bytes when longer (which then fails to parse, as malformed).

    ``StreamReader.read(n)`` returns what has arrived so far, at most ``n`` bytes, not the body: a page of
    a thousand users comes in many chunks.
    """
    body = bytearray()
    while len(body) < limit:
        chunk = await content.read(limit - len(body))
        if not chunk:
            break
        body += chunk
    return bytes(body)


def _route(path: str) -> str:
    return "/users/{uid}" if path.startswith("/users/") else path


def _backoff(attempt: int) -> float:
    return min(MAX_DELAY, FIRST_DELAY * 2.0 ** (attempt - 1))


def _retry_after(value: str | None) -> float | None:
    """Seconds a ``Retry-After`` asks to wait: a number of seconds or an HTTP date."""
    if value is None:
        return None
    try:
        return max(0.0, float(value.strip()))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _field(answer: Any, key: str, kind: type) -> Any:
    value = answer.get(key) if isinstance(answer, dict) else None
    if not isinstance(value, kind):
        raise CometChatError(f"CometChat's answer has no {key} {kind.__name__} (not as documented)", "malformed")
    return value


def _user(entry: Any) -> RemoteUser:
    uid = entry.get("uid") if isinstance(entry, dict) else None
    status = entry.get("status") if isinstance(entry, dict) else None
    if not isinstance(uid, str) or not uid or not isinstance(status, str):
        raise CometChatError("CometChat's answer has a user without a uid or a status (not as documented)", "malformed")
    last_active = entry.get("lastActiveAt")
    try:
        last_active_ms = None if last_active is None else parse_instant(last_active)
    except InvalidInstant:
        last_active_ms = None  # undocumented in the REST schema: optional, and ignored when odd
    return RemoteUser(uid=uid, online=status in ONLINE_STATUSES, last_active_at_ms=last_active_ms)


def _pagination(answer: Any) -> int | None:
    """``meta.pagination.total_pages``, when the answer gives it."""
    meta = answer.get("meta") if isinstance(answer, dict) else None
    pagination = meta.get("pagination") if isinstance(meta, dict) else None
    total = pagination.get("total_pages") if isinstance(pagination, dict) else None
    return total if isinstance(total, int) and not isinstance(total, bool) else None
