"""The writer binds values itself (``presence.db.writes``): exactly what SQLAlchemy would have bound."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.dialects import sqlite

from presence.core.facts import Changes
from presence.core.inbox import InboxRow
from presence.core.times import MAX_MS, ms_to_datetime
from presence.db.driver import sqlite_instant
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
