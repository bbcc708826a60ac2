"""The query API: what the app's own backend asks. Every route needs a bearer token (``auth.bearer_middleware``).

Parameters are checked here, before any query: a bad one is a ``400`` naming it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final, TypeVar, cast

from aiohttp import web

from presence.core.conversations import is_group
from presence.core.events import MAX_CONVERSATION_LENGTH, is_storable_id, parse_message_id
from presence.core.times import datetime_to_ms, ms_to_datetime
from presence.db import changes, conversations, reads
from presence.http.cursors import InvalidCursor, decode_cursor, encode_cursor
from presence.http.errors import ApiError
from presence.http.keys import CURSOR_KEY, ENGINE, LOOKUPS, SETTINGS
from presence.http.responses import (
    PresenceList,
    SessionPage,
    UserPage,
    change_page_answer,
    json_answer,
    members_answer,
    presence_answer,
    sessions_answer,
    stats_answer,
    unread_answer,
    watermarks_answer,
    with_unread_by,
)

MAX_UIDS_PER_REQUEST: Final = 500
DEFAULT_LIMIT: Final = 100
MAX_LIMIT: Final = 1000
STATUSES: Final = ("online", "offline")
CHANGE_TYPES: Final = ("presence", "receipt", "group_receipt")
#: A ``seq`` is a signed 64-bit number.
MAX_SEQ: Final = 2**63 - 1
MAX_SEQ_DIGITS: Final = len(str(MAX_SEQ))
#: Most characters of a caller's id an error message quotes: a path may carry one of any length.
QUOTED_LENGTH: Final = 64

_T = TypeVar("_T")


async def get_presence(request: web.Request) -> web.Response:
    uid = request.match_info["uid"]
    answer = None
    if is_storable_id(uid):
        answer = await request.app[LOOKUPS].presence_answer(uid, ttl_floor(request))
    if answer is None:
        raise ApiError(404, "not_found", f"no connection event has been seen for user {quoted(uid)}")
    return json_answer(answer)


async def get_presences(request: web.Request) -> web.Response:
    """``GET /presence?uid=a&uid=b``: up to 500 users at once, known ones in the order asked."""
    asked = list(dict.fromkeys(request.query.getall("uid", [])))
    if not 1 <= len(asked) <= MAX_UIDS_PER_REQUEST:
        raise _bad_parameter("uid", f"give 1 to {MAX_UIDS_PER_REQUEST} distinct uids, got {len(asked)}")
    storable = [uid for uid in asked if is_storable_id(uid)]
    async with request.app[ENGINE].connect() as connection:
        found = await reads.presences_of(connection, storable)
    floor = ttl_floor(request)
    return json_answer(
        PresenceList(
            users=[presence_answer(reads.as_of(found[uid], floor)) for uid in asked if uid in found],
            unknown=[uid for uid in asked if uid not in found],
        )
    )


async def list_users(request: web.Request) -> web.Response:
    """``GET /users?status=&platform=&limit=&cursor=``: matching users in uid order, a page at a time."""
    status = _optional(request, "status", lambda v: _choice("status", v, STATUSES))
    platform = _optional(request, "platform", lambda v: _identifier("platform", v))
    limit = _limit(request)
    scope = {"list": "users", "status": status, "platform": platform}
    after = _cursor(request, scope, lambda position: _typed(position, (str,))[0])
    async with request.app[ENGINE].connect() as connection:
        users = await reads.list_users(
            connection, status=status, platform=platform, after=after, limit=limit + 1, floor=ttl_floor(request)
        )
    page, more = users[:limit], len(users) > limit
    next_cursor = encode_cursor(request.app[CURSOR_KEY], scope, [page[-1].uid]) if more else None
    return json_answer(UserPage(users=[presence_answer(p) for p in page], next_cursor=next_cursor))


async def get_sessions(request: web.Request) -> web.Response:
    """``GET /users/{uid}/sessions``: the user's connection history, newest connection first."""
    uid = request.match_info["uid"]
    limit = _limit(request)
    scope = {"list": "sessions", "uid": uid}

    def position(raw: list[Any]) -> tuple[datetime, str]:
        at_ms, session_id = _typed(raw, (int, str))
        return ms_to_datetime(at_ms), session_id

    before = _cursor(request, scope, position)
    history = None
    if is_storable_id(uid):
        async with request.app[ENGINE].connect() as connection:
            history = await reads.sessions_of(connection, uid, before=before, limit=limit + 1)
    if history is None:
        raise ApiError(404, "not_found", f"no connection event has been seen for user {quoted(uid)}")
    sessions = sessions_answer(history)
    page, more = sessions[:limit], len(sessions) > limit
    next_cursor = None
    if more:
        last = history.sessions[limit - 1]
        last_ms = 0 if last.connected_at is None else datetime_to_ms(last.connected_at)
        next_cursor = encode_cursor(request.app[CURSOR_KEY], scope, [last_ms, last.session_id])
    return json_answer(SessionPage(sessions=page, next_cursor=next_cursor))


async def get_message_receipts(request: web.Request) -> web.Response:
    raw_id = request.match_info["message_id"]
    message_id = parse_message_id(raw_id)
    answer = None
    if message_id is not None:
        answer = await request.app[LOOKUPS].receipts_answer(message_id)
    if answer is None or message_id is None:
        raise ApiError(404, "not_found", f"no message or receipt has named message {quoted(raw_id)}")
    if not is_group(answer.conversation_id):
        return json_answer(answer)
    unread = await request.app[LOOKUPS].unread_by(message_id, answer.conversation_id, answer.sender)
    return json_answer(with_unread_by(answer, unread))


async def get_conversation_receipts(request: web.Request) -> web.Response:
    """``GET /conversations/{conversation_id}/receipts``: each reader's delivery and read watermarks."""
    conversation_id = request.match_info["conversation_id"]
    readers = None
    if is_storable_id(conversation_id, MAX_CONVERSATION_LENGTH):
        async with request.app[ENGINE].connect() as connection:
            readers = await reads.watermarks_of(connection, conversation_id)
    if readers is None:
        raise ApiError(404, "not_found", f"no message or receipt has named conversation {quoted(conversation_id)}")
    return json_answer(watermarks_answer(conversation_id, readers))


async def get_members(request: web.Request) -> web.Response:
    """``GET /conversations/{conversation_id}/members?limit=&cursor=``: members in uid order, a page at a time."""
    conversation_id = request.match_info["conversation_id"]
    limit = _limit(request)
    scope = {"list": "members", "conversation_id": conversation_id}
    after = _cursor(request, scope, lambda position: _typed(position, (str,))[0])
    found = None
    if is_storable_id(conversation_id, MAX_CONVERSATION_LENGTH):
        async with request.app[ENGINE].connect() as connection:
            found = await conversations.members_of(connection, conversation_id, after=after, limit=limit + 1)
    if found is None:
        raise ApiError(
            404,
            "not_found",
            f"no message, receipt or membership event has named conversation {quoted(conversation_id)}",
        )
    page, more = found.members[:limit], len(found.members) > limit
    next_cursor = encode_cursor(request.app[CURSOR_KEY], scope, [page[-1].uid]) if more else None
    return json_answer(members_answer(conversations.Members(page, found.members_count), next_cursor))


async def get_unread(request: web.Request) -> web.Response:
    """``GET /users/{uid}/unread?limit=&cursor=``: the user's conversations, newest first, with unread counts."""
    uid = request.match_info["uid"]
    limit = _limit(request)
    scope = {"list": "unread", "uid": uid}

    def position(raw: list[Any]) -> tuple[int, str]:
        last_id, conversation_id = _typed(raw, (int, str))
        return last_id, conversation_id

    before = _cursor(request, scope, position)
    page = conversations.UnreadPage(conversations=[], total_unread=0)
    if is_storable_id(uid):
        async with request.app[ENGINE].connect() as connection:
            page = await conversations.unread_of(connection, uid, before=before, limit=limit + 1)
    shown, more = page.conversations[:limit], len(page.conversations) > limit
    next_cursor = None
    if more:
        last = shown[-1]
        next_cursor = encode_cursor(request.app[CURSOR_KEY], scope, [last.last_message_id, last.conversation_id])
    return json_answer(unread_answer(conversations.UnreadPage(shown, page.total_unread), next_cursor))


async def get_changes(request: web.Request) -> web.Response:
    """``GET /changes?after=&limit=&uid=&type=&conversation_id=``: changes after a cursor, in ``seq`` order."""
    where = change_filter(request)
    after = change_cursor(request)
    limit = _limit(request)
    async with request.app[ENGINE].connect() as connection:
        try:
            page = await changes.changes_after(connection, after, limit=limit, where=where)
        except changes.CursorExpired as expired:
            raise ApiError(
                410,
                "cursor_expired",
                f"changes up to {expired.oldest_kept} are no longer kept; read the current state again,"
                " then follow on from the next_after of a page read before it",
            ) from None
    return change_page_answer([text for _, text in page.changes], page.next_after)


def change_filter(request: web.Request) -> changes.ChangeFilter:
    """The filters of ``/changes`` (and its stream): ``uid``, ``type``, ``conversation_id``; a bad one is a ``400``."""
    uid = _optional(request, "uid", lambda v: _identifier("uid", v))
    change_type = _optional(request, "type", lambda v: _choice("type", v, CHANGE_TYPES))
    conversation_id = _optional(request, "conversation_id", lambda v: _conversation("conversation_id", v))
    return changes.ChangeFilter(
        uid=uid, type=cast(changes.ChangeType | None, change_type), conversation_id=conversation_id
    )


def change_cursor(request: web.Request, name: str = "after") -> int:
    """``after``: a whole number, 0 (the default) for the oldest change kept."""
    raw = request.query.get(name)
    return 0 if raw is None else seq_value(name, raw)


def seq_value(name: str, raw: str) -> int:
    """A change's ``seq`` as a cursor (``after``, ``Last-Event-ID``): a whole number from 0, else ``400``."""
    if not (raw.isascii() and raw.isdigit() and len(raw) <= MAX_SEQ_DIGITS and int(raw) <= MAX_SEQ):
        raise _bad_parameter(name, f"expected a whole number from 0, got {quoted(raw)}")
    return int(raw)


async def get_stats(request: web.Request) -> web.Response:
    async with request.app[ENGINE].connect() as connection:
        return json_answer(stats_answer(await reads.stats(connection, ttl_floor(request))))


def ttl_floor(request: web.Request) -> bytes | None:
    """The ``PRESENCE_CONNECTION_TTL`` floor of this moment (contract §10); ``None`` without a TTL."""
    ttl = request.app[SETTINGS].connection_ttl
    return None if ttl is None else reads.ttl_floor(ttl, datetime.now(UTC))


def quoted(value: str) -> str:
    """``value`` as an error message quotes it: ``repr``, cut to :data:`QUOTED_LENGTH` characters with ``…``."""
    return repr(value) if len(value) <= QUOTED_LENGTH else repr(value[:QUOTED_LENGTH]) + "…"


def _bad_parameter(name: str, problem: str) -> ApiError:
    return ApiError(400, "invalid_parameter", f"{name}: {problem}")


def _optional(request: web.Request, name: str, parse: Callable[[str], _T]) -> _T | None:
    value = request.query.get(name)
    return None if value is None else parse(value)


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise _bad_parameter(name, f"expected one of {', '.join(allowed)}, got {quoted(value)}")
    return value


def _identifier(name: str, value: str) -> str:
    if not is_storable_id(value):
        raise _bad_parameter(name, "expected a non-empty value of at most 255 characters")
    return value


def _conversation(name: str, value: str) -> str:
    if not is_storable_id(value, MAX_CONVERSATION_LENGTH):
        raise _bad_parameter(name, f"expected a non-empty value of at most {MAX_CONVERSATION_LENGTH} characters")
    return value


def _limit(request: web.Request) -> int:
    raw = request.query.get("limit")
    if raw is None:
        return DEFAULT_LIMIT
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 6) or not 1 <= int(raw) <= MAX_LIMIT:
        raise _bad_parameter("limit", f"expected a whole number from 1 to {MAX_LIMIT}, got {quoted(raw)}")
    return int(raw)


def _cursor(request: web.Request, scope: dict[str, Any], parse: Callable[[list[Any]], _T]) -> _T | None:
    raw = request.query.get("cursor")
    if raw is None:
        return None
    try:
        return parse(decode_cursor(request.app[CURSOR_KEY], scope, raw))
    except InvalidCursor as error:
        raise _bad_parameter("cursor", f"{error}; use next_cursor from the previous page, unchanged") from None


def _typed(position: list[Any], types: tuple[type, ...]) -> list[Any]:
    if len(position) != len(types) or not all(type(v) is t for v, t in zip(position, types, strict=True)):
        raise InvalidCursor("not a cursor")
    return position
