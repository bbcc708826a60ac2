"""The writer binds values itself (``presence.db.writes``): exactly what SQLAlchemy would have bound."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.dialects import sqlite

from presence.core.facts import Changes
from presence.core.inbox import InboxRow
from presence.core.times import MAX_MS, ms_to_datetime
from presence.db.driver import CompiledQuery, Query, Statement, Step, sqlite_instant, with_writes
from presence.db.models import Instant
from presence.db.writes import Writer

SQLITE = sqlite.dialect()
BIND = Instant().dialect_impl(SQLITE).bind_processor(SQLITE)


@given(st.integers(0, MAX_MS))
def test_an_sqlite_instant_is_stored_as_sqlalchemy_stores_it(ms: int) -> None:
    assert BIND is not None
    assert sqlite_instant(ms) == BIND(ms_to_datetime(ms))


@given(
    st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)),
    st.integers(-14 * 60, 14 * 60),
)
def test_an_inbox_arrival_time_is_stored_as_sqlalchemy_stores_it(moment: datetime, offset_minutes: int) -> None:
    """Whatever the zone of the ``datetime``, the stored text is its UTC instant, microseconds and all."""
    assert BIND is not None
    local = moment.astimezone(timezone(timedelta(minutes=offset_minutes)))
    (statement,) = Writer(SQLITE).statements([InboxRow(received_at=local, trigger="t", body="{}")], Changes())
    assert statement.rows == [(BIND(moment), "t", "{}")]


def _reading_before() -> Query:
    """A reading of the state before the writes merged with it."""
    return Query(
        CompiledQuery("SELECT uid FROM user_presence WHERE uid = $1::VARCHAR", ("p0",), {}, (None,)), ("u",), _no_steps
    )


def _no_steps(_rows: list[tuple[Any, ...]]) -> list[Step]:
    return []


_MERGEABLE = Statement("INSERT INTO inbox_event (body) VALUES ($1::VARCHAR)", [("{}",)])
#: Two rows of an UPDATE: two executions, which no WITH clause can hold.
_ALONE = Statement("UPDATE user_session SET live = false WHERE uid = $1::VARCHAR", [("a",), ("b",)])


def test_a_write_that_cannot_be_merged_runs_on_the_side_of_the_reading_its_caller_asks() -> None:
    """A reading of the state before the writes must come before every write left out of the merge."""
    reading = _reading_before()
    merged, alone = with_writes([_MERGEABLE, _ALONE], reading, unmerged="after")
    assert isinstance(merged, Query)
    assert merged.query.sql.startswith("WITH ")
    assert alone is _ALONE
    first, merged = with_writes([_MERGEABLE, _ALONE], reading, unmerged="before")
    assert first is _ALONE
    assert isinstance(merged, Query)


def test_writes_none_of_which_can_be_merged_keep_the_order_their_caller_asks() -> None:
    reading = _reading_before()
    assert with_writes([_ALONE], reading, unmerged="after") == [reading, _ALONE]
    assert with_writes([_ALONE], reading, unmerged="before") == [_ALONE, reading]
