"""A request body read once, within a size limit and a deadline, and kept nowhere else.

``request.read()`` keeps a copy of the body on the request for as long as the
request lives, which for ``/hook`` includes the wait for the commit: the bytes
would sit beside the inbox row made from them. This reads the same stream
(decompressed as aiohttp does), refuses a body over the limit with ``413`` as
``request.read()`` does, and one that is not all in within ``within`` seconds
with ``408``: a client that trickles its body would otherwise hold its
connection, and its part of the open-file limit, for ever. The bytes read so
far are counted against ``budget`` (the committer's byte limit) as they come:
once it is full the request is answered ``503`` before the rest is read, so
bodies being read cannot outgrow the limit either.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from aiohttp import web

from presence.http.errors import ApiError


class Budget(Protocol):
    def reserve(self, size: int) -> bool: ...

    def release(self, size: int) -> None: ...


async def read_body(request: web.BaseRequest, *, limit: int, within: float, budget: Budget) -> bytes:
    """The whole body, its length reserved in ``budget``: the caller releases it once done with the bytes."""
    # Chunks joined once at the end: one allocation of the body's size, rather than a buffer
    # grown (and copied) as it fills, whose freed steps fragment the heap under many big bodies.
    chunks: list[bytes] = []
    reserved = 0
    try:
        async with asyncio.timeout(within):
            while chunk := await request.content.readany():
                if not budget.reserve(len(chunk)):
                    raise ApiError(
                        503, "unavailable", "too many bytes of events are waiting; retry later", {"Retry-After": "1"}
                    )
                reserved += len(chunk)
                chunks.append(chunk)
                if reserved > limit:
                    raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=reserved)
    except TimeoutError:
        budget.release(reserved)
        raise ApiError(
            408, "request_timeout", f"the body did not arrive within {within:g} s", {"Connection": "close"}
        ) from None
    except BaseException:
        budget.release(reserved)
        raise
    return b"".join(chunks)
