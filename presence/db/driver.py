"""The mechanism under our own SQL: statements compiled once, values in the driver's own form.

The hot paths (group commit's upserts, the inline lookups) do not let SQLAlchemy
build SQL or bind parameters per call. Each statement is compiled once per
dialect, to positional SQL; rows are tuples of values already as the driver
takes them; results are converted by the dialect's own result processors. What
the statements *mean* lives elsewhere: the joins in :mod:`presence.db.writes`,
the queries in :mod:`presence.db.reads`.

On SQLite an instant is text in the format of SQLAlchemy's ``DATETIME``
(``2026-11-21 10:15:30.123000``), on PostgreSQL a timezone-aware ``datetime``:
what :class:`presence.db.models.Instant` binds and reads (``tests/test_writes.py``
and ``tests/test_inline.py`` check both ways).
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from operator import itemgetter
from typing import Any, Literal

import asyncpg
from sqlalchemy import ClauseElement, CompoundSelect, Delete, Dialect, Insert, Select, Update
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.types import TypeEngine

from presence.core.times import ms_to_datetime
from presence.db.models import Instant


def compile_positional(
    statement: ClauseElement, dialect: Dialect, columns: Sequence[str] | None = None
) -> tuple[SQLCompiler, tuple[str, ...]]:
    """``statement`` compiled once for ``dialect``, and its parameter names in placeholder order.

    For our own execution of SQLAlchemy's SQL on the driver (the writer, the inline lookups).
    """
    compiled = statement.compile(dialect=dialect, column_keys=list(columns) if columns is not None else None)
    if not isinstance(compiled, SQLCompiler) or compiled.positiontup is None:
        raise ValueError(f"the {dialect.name} dialect does not bind by position")
    return compiled, tuple(compiled.positiontup)


@dataclass(frozen=True, slots=True)
class Statement:
    """One statement in the driver's own SQL, and the rows to execute it with (an executemany)."""

    sql: str
    rows: list[tuple[Any, ...]]


class CompiledUpsert:
    """A write (an upsert, a guarded delete or update) compiled once for a dialect: SQLAlchemy builds
    the SQL, never each row's parameters."""

    def __init__(
        self, statement: Insert | Delete | Update, dialect: Dialect, columns: Sequence[str] | None = None
    ) -> None:
        compiled, names = compile_positional(statement, dialect, columns)
        self.sql = str(compiled)
        #: Column names in the order of the SQL's placeholders.
        self.names = names
        if not self.names:
            raise ValueError("a statement without parameters has no rows to run with")
        # itemgetter of one name returns the value itself, not a tuple of it.
        pick: Callable[[dict[str, Any]], tuple[Any, ...]] = (
            itemgetter(*self.names) if len(self.names) > 1 else _one(self.names[0])
        )
        # The statement's own values (a subquery's LIMIT 1), bound like the rows' parameters.
        required = {name for name, bind in compiled.binds.items() if bind.required}
        own = {
            name: value
            for name, value in compiled.construct_params(dict.fromkeys(required)).items()
            if name not in required and name in self.names
        }
        self._pick = pick if not own else (lambda row: pick({**own, **row}))
        self._own = bool(own)

    def expect(self, columns: tuple[str, ...]) -> CompiledUpsert:
        """This statement, once it is checked to take exactly ``columns``, in that order.

        The writer then builds its rows as tuples in that order, with no dict per row; a
        change of the table or of the statement fails here, when the writer is made.
        """
        if self.names != columns or self._own:
            raise ValueError(f"the statement takes {self.names}, not {columns}: {self.sql}")
        return self

    def rows(self, values: Iterable[dict[str, Any]]) -> list[tuple[Any, ...]]:
        pick = self._pick
        return [pick(row) for row in values]


def _one(name: str) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    return lambda row: (row[name],)


@dataclass(frozen=True, slots=True)
class CompiledQuery:
    """A statement as one dialect's SQL text, with how to bind it and how to read its rows."""

    sql: str
    #: Parameter names in the order of the SQL's placeholders.
    names: tuple[str, ...]
    #: Values of the statement's own literals (``kind = 'read'``), bound like parameters.
    defaults: Mapping[str, Any]
    #: The dialect's result processor of each column, ``None`` where the driver's value is final.
    processors: tuple[Callable[[Any], Any] | None, ...]

    @classmethod
    def of(
        cls, statement: Select[*tuple[Any, ...]] | CompoundSelect[*tuple[Any, ...]] | Update, dialect: Dialect
    ) -> CompiledQuery:
        """``statement``: a query, or an ``UPDATE … RETURNING`` (read for what it returns)."""
        compiled, names = compile_positional(statement, dialect)
        columns = statement.exported_columns if isinstance(statement, Update) else statement.selected_columns
        required = {name for name, bind in compiled.binds.items() if bind.required}
        values = compiled.construct_params(dict.fromkeys(required))
        return cls(
            sql=str(compiled),
            names=names,
            defaults={name: value for name, value in values.items() if name not in required},
            processors=tuple(result_processor(column.type, dialect) for column in columns),
        )

    def parameters(self, **given: Any) -> tuple[Any, ...]:
        values = {**self.defaults, **given}
        return tuple(values[name] for name in self.names)

    def binder(self, name: str) -> Callable[[Any], tuple[Any, ...]]:
        """:meth:`parameters` given only ``name`` (which may stand in several places), its literals bound once."""
        template = self.parameters(**{name: None})
        places = [index for index, each in enumerate(self.names) if each == name]

        def bind(value: Any) -> tuple[Any, ...]:
            values = list(template)
            for index in places:
                values[index] = value
            return tuple(values)

        return bind

    def convert(self, rows: Sequence[Sequence[Any]]) -> list[tuple[Any, ...]]:
        pairs = [(index, process) for index, process in enumerate(self.processors) if process is not None]
        converted = []
        for row in rows:
            values = list(row)
            for index, process in pairs:
                if values[index] is not None:
                    values[index] = process(values[index])
            converted.append(tuple(values))
        return converted


@dataclass(frozen=True, slots=True)
class Query:
    """A read inside a write transaction, and the steps that follow from its rows.

    ``then`` is plain code over plain values (the rows as ``query`` converts them): what to
    write next is decided in Python, the same on both backends, between two statements of
    one transaction. The change feed reads what a batch's writes left this way.
    """

    query: CompiledQuery
    params: tuple[Any, ...]
    then: Callable[[list[tuple[Any, ...]]], Sequence[Step]]


#: What a write transaction is made of, run in order.
Step = Statement | Query


async def execute(connection: AsyncConnection, steps: Sequence[Step]) -> None:
    """Run ``steps`` through SQLAlchemy's connection, as the driver's own SQL."""
    for step in steps:
        if isinstance(step, Statement):
            await connection.exec_driver_sql(step.sql, step.rows)
        else:
            result = await connection.exec_driver_sql(step.query.sql, step.params)
            await execute(connection, step.then(step.query.convert(result.fetchall())))


async def execute_asyncpg(connection: asyncpg.Connection, steps: Sequence[Step]) -> None:
    """Run ``steps`` on a raw asyncpg connection, each statement prepared once per connection.

    The SQL is the asyncpg dialect's own (``$1::VARCHAR``), so it runs as it is; asyncpg's
    statement cache keeps it prepared. Compared with ``exec_driver_sql``, no SQLAlchemy cursor,
    execution context or greenlet hop per statement: about a third of the Python time of a commit.
    """
    for step in steps:
        if isinstance(step, Statement):
            if len(step.rows) == 1:
                await connection.execute(step.sql, *step.rows[0])
            elif (unnested := _unnested(step.sql)) is not None:
                await connection.execute(unnested, *(list(column) for column in zip(*step.rows, strict=True)))
            else:
                await connection.executemany(step.sql, step.rows)
        else:
            rows = await connection.fetch(step.query.sql, *step.params)
            await execute_asyncpg(connection, step.then(step.query.convert(rows)))


#: ``INSERT INTO t (a, b) VALUES ($1::T, $2::U)`` and what follows (``ON CONFLICT``, ``RETURNING``).
_INSERT_VALUES = re.compile(r"(INSERT INTO \S+ \([^()]*\)) VALUES \(((?:\$\d+::[^,$()]+)(?:, \$\d+::[^,$()]+)*)\)")


@lru_cache(maxsize=256)
def _unnested(sql: str) -> str | None:
    """``sql``, a one-row ``INSERT … VALUES``, as one statement over arrays of its parameters, or ``None``.

    ``INSERT INTO t (a, b) SELECT * FROM unnest($1::T[], $2::U[]) …``: the rows are inserted (and
    their conflicts resolved, their triggers run) one by one in the arrays' order, as an
    ``executemany`` would, but in one execution of one statement rather than one per row, which
    costs PostgreSQL several times less per row. Only for a statement whose placeholders are its
    ``VALUES``, each once and in order; a batch's rows never share a conflict key (each table's rows
    come from a dict by that key), which ``ON CONFLICT DO UPDATE`` within one statement requires.
    Any other statement (an ``UPDATE``, a guarded ``INSERT … SELECT``) stays an ``executemany``.
    """
    found = _INSERT_VALUES.match(sql)
    if found is None or "$" in sql[found.end() :]:
        return None
    placeholders = found.group(2).split(", ")
    arrays = []
    for position, placeholder in enumerate(placeholders, start=1):
        number, kind = placeholder[1:].split("::", 1)
        if int(number) != position:
            return None
        arrays.append(f"${position}::{kind}[]")
    # Only our own compiled SQL is rearranged here (its parameter types), never a value.
    return f"{found.group(1)} SELECT * FROM unnest({', '.join(arrays)}){sql[found.end() :]}"  # noqa: S608


def with_writes(
    writes: Sequence[Statement], last: Statement | Query, *, unmerged: Literal["before", "after"]
) -> list[Step]:
    """On PostgreSQL, ``writes`` and ``last`` as one statement: the writes as ``WITH`` clauses of ``last``.

    One round trip instead of one per statement. Only for statements that do not depend on one
    another: all the parts of one statement run on one snapshot, so none sees what the others
    write, and a reading among them (``last`` a :class:`Query`) finds the state before them all.
    A write that does not run as one execution (one row, or an ``INSERT … VALUES`` that
    :func:`_unnested` rewrites) stays a statement of its own, ``unmerged`` the merged one: the
    order the caller needs when they cannot be one. A reading of the state before the writes
    says ``"after"`` (it must not see them), one that must see them ``"before"``.
    """
    alone: list[Statement] = []
    parts: list[tuple[str, tuple[Any, ...]]] = []
    for write in writes:
        single = _one_execution(write)
        if single is None:
            alone.append(write)
        else:
            parts.append(single)
    main = _one_execution(last) if isinstance(last, Statement) else (last.query.sql, last.params)
    if not parts or main is None:
        return [*writes, last] if unmerged == "before" else [last, *writes]
    main_sql, main_params = main
    sql = _merged_sql(tuple(sql for sql, _ in parts), main_sql, len(main_params), tuple(len(p) for _, p in parts))
    params = (*main_params, *(value for _, values in parts for value in values))
    merged: Statement | Query
    if isinstance(last, Statement):
        merged = Statement(sql, [params])
    else:
        query = CompiledQuery(sql, tuple(f"p{index}" for index in range(len(params))), {}, last.query.processors)
        merged = Query(query, params, last.then)
    return [*alone, merged] if unmerged == "before" else [merged, *alone]


def _one_execution(statement: Statement) -> tuple[str, tuple[Any, ...]] | None:
    """``statement`` as one execution on asyncpg: its SQL and parameters, as :func:`execute_asyncpg` runs it."""
    if len(statement.rows) == 1:
        return statement.sql, statement.rows[0]
    unnested = _unnested(statement.sql)
    if unnested is None or not statement.rows:
        return None
    return unnested, tuple(list(column) for column in zip(*statement.rows, strict=True))


#: A placeholder of compiled PostgreSQL SQL, ``$1``.
_PLACEHOLDER = re.compile(r"\$(\d+)")


def shifted(sql: str, offset: int) -> str:
    """Compiled PostgreSQL ``sql`` with each placeholder ``$n`` made ``$(n + offset)``."""

    def shift(number: re.Match[str]) -> str:
        return f"${int(number[1]) + offset}"

    return _PLACEHOLDER.sub(shift, sql)


@lru_cache(maxsize=256)
def _merged_sql(writes: tuple[str, ...], main: str, main_count: int, counts: tuple[int, ...]) -> str:
    """``main`` after ``WITH`` clauses of ``writes``; the main statement's parameters first, then each write's."""
    clauses, offset = [], main_count
    for index, (write, count) in enumerate(zip(writes, counts, strict=True)):
        # Our own compiled SQL, composed: no value is ever formatted into it.
        clauses.append(f"merged_{index} AS ({shifted(write, offset)})")
        offset += count
    if main.startswith("WITH "):
        return "WITH " + ", ".join(clauses) + ", " + main[len("WITH ") :]
    return "WITH " + ", ".join(clauses) + " " + main


def execute_sqlite(connection: sqlite3.Connection, steps: Sequence[Step]) -> None:
    """Run ``steps`` on a raw ``sqlite3`` connection (the writer thread's)."""
    for step in steps:
        if isinstance(step, Statement):
            connection.executemany(step.sql, step.rows)
        else:
            rows = connection.execute(step.query.sql, step.params).fetchall()
            execute_sqlite(connection, step.then(step.query.convert(rows)))


def instant_encoder(dialect: Dialect) -> Callable[[int], Any]:
    """Milliseconds since the epoch as the driver takes an :class:`Instant`."""
    return sqlite_instant if dialect.name == "sqlite" else ms_to_datetime


def moment_encoder(dialect: Dialect) -> Callable[[datetime], Any]:
    """An aware ``datetime`` as the driver takes an :class:`Instant`."""
    return sqlite_moment if dialect.name == "sqlite" else _utc


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC)


@lru_cache(maxsize=16384)
def sqlite_instant(ms: int) -> str:
    """Milliseconds since the epoch as SQLAlchemy's SQLite ``DATETIME`` stores an :class:`Instant`.

    Cached: a batch's rows repeat instants (an event's arrival is in each of its rows, a session's
    connection in each snapshot that lists it), and the rest fall in few seconds, whose text up to
    the second is cached too.
    """
    seconds, millis = divmod(ms, 1000)
    return f"{_sqlite_second(seconds)}.{millis:03d}000"


@lru_cache(maxsize=16384)
def _sqlite_second(seconds: int) -> str:
    day, in_day = divmod(seconds, 86_400)
    minutes, second = divmod(in_day, 60)
    hour, minute = divmod(minutes, 60)
    return f"{_sqlite_date(day)} {hour:02d}:{minute:02d}:{second:02d}"


@lru_cache(maxsize=4096)
def _sqlite_date(day: int) -> str:
    return ms_to_datetime(day * 86_400_000).strftime("%Y-%m-%d")


def sqlite_moment(moment: datetime) -> str:
    # "2026-11-21T10:15:30.123000+00:00" -> "2026-11-21 10:15:30.123000"
    utc = moment if moment.tzinfo is UTC else moment.astimezone(UTC)
    return utc.isoformat(sep=" ", timespec="microseconds")[:-6]


def result_processor(type_: TypeEngine[Any], dialect: Dialect) -> Callable[[Any], Any] | None:
    if isinstance(type_, Instant) and dialect.name == "sqlite":
        return _sqlite_instant
    return type_.dialect_impl(dialect).result_processor(dialect, None)


def _sqlite_instant(stored: str) -> datetime:
    """What :class:`Instant` reads from SQLite (UTC text, ``2026-11-21 10:15:30.123000``), without
    SQLAlchemy's regular expression: several times faster, and the same value (``tests/test_inline.py``)."""
    return datetime.fromisoformat(stored + "+00:00")
