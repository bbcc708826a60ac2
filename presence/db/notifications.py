"""PostgreSQL's ``LISTEN`` on :data:`presence.db.changes.CHANNEL`: a wake-up when any replica commits changes.

A transaction that records changes sends ``pg_notify`` (delivered at its commit) with the last
``seq`` it took. The notification only says "read the table now": the table stays the source of
truth, and a notification lost while the connection was down costs at most the streams' fallback
re-read interval (:mod:`presence.live.hub`).

The connection is a dedicated asyncpg one, outside the pools: a ``LISTEN`` holds its connection for
as long as it listens, and must not take one from intake or the queries.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any, Final

import asyncpg
from sqlalchemy.engine import URL

from presence.db.changes import CHANNEL

log = logging.getLogger(__name__)

#: Seconds between two checks that the listening connection still answers: a connection whose
#: peer vanished without a word is noticed, and replaced, within about this long.
CHECK_INTERVAL: Final = 30.0
#: Seconds to wait before connecting again after the connection failed or was lost.
RECONNECT_DELAY: Final = 1.0


def asyncpg_dsn(url: URL) -> str:
    """The ``postgresql://`` DSN asyncpg takes, from the service's ``postgresql+asyncpg://`` URL."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


async def listen_forever(
    url: URL, on_notify: Callable[[int | None], None], *, connect_timeout: float, command_timeout: float
) -> None:
    """Call ``on_notify(last_seq)`` for every notification, reconnecting whenever the connection is lost.

    ``on_notify(None)`` is also called each time listening (re)starts: what was committed while
    nothing listened must be read too. Runs until cancelled.
    """
    dsn = asyncpg_dsn(url)
    failing = False
    while True:
        try:
            connection = await asyncpg.connect(dsn, timeout=connect_timeout, command_timeout=command_timeout)
        except (TimeoutError, OSError, asyncpg.PostgresError) as error:
            if not failing:
                log.warning("cannot listen for changes (streams re-read every second meanwhile): %s", error)
            failing = True
            await asyncio.sleep(RECONNECT_DELAY)
            continue
        try:
            await _listen(connection, on_notify, command_timeout=command_timeout)
        except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
            log.warning("the connection listening for changes was lost (reconnecting): %s", error)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.shield(_close(connection))
        failing = False
        await asyncio.sleep(RECONNECT_DELAY)


async def _listen(connection: Any, on_notify: Callable[[int | None], None], *, command_timeout: float) -> None:
    lost = asyncio.Event()

    def notified(_connection: object, _pid: int, _channel: str, payload: str) -> None:
        on_notify(int(payload) if payload.isdigit() else None)

    connection.add_termination_listener(lambda _connection: lost.set())
    await connection.add_listener(CHANNEL, notified)
    on_notify(None)
    while not lost.is_set():
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CHECK_INTERVAL):
                await lost.wait()
        if not lost.is_set():
            await connection.fetchval("SELECT 1", timeout=command_timeout)
    raise ConnectionResetError("the server closed the connection")


async def _close(connection: Any) -> None:
    try:
        async with asyncio.timeout(RECONNECT_DELAY):
            await connection.close()
    except TimeoutError:
        connection.terminate()
