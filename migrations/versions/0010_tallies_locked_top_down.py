"""The tally trigger takes its rows' locks from the top level down (PostgreSQL; contract §11).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01

Two transactions writing messages of one conversation could deadlock on ``message_tally``:
each message's trigger locked its rows from level 1 up, so a transaction holding a low block
of one message could wait for a high block another held, which in turn wanted the low block
for its next message. From the top down, the first lock of every message of a conversation is
the same top block (ids within 2^36 of each other): writers of one conversation queue there,
and nothing they hold below can be wanted by another. (Across conversations the writer orders
messages by conversation, then id.) SQLite has one writer and is untouched.

Only the function changes: ``CREATE OR REPLACE`` with the rows ordered by sender, then level
descending. Written out here, not imported, like 0008's, so this revision stays what it was.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

# Every statement here is DDL written from this file's own constants: no outside value reaches it.
# ruff: noqa: S608

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BITS = 6
_LEVELS = 6
_COUNTED = "get_byte({row}.claim, 0) >= 1 AND {row}.deleted_at IS NULL"


def _function(order: str) -> str:
    old, new = _COUNTED.format(row="OLD"), _COUNTED.format(row="NEW")

    def tallies(row: str, delta: int) -> str:
        return f"""
        INSERT INTO message_tally AS t (conversation_id, sender, level, block, n)
        SELECT {row}.conversation_id, who.sender, levels.level, {row}.id >> ({_BITS} * levels.level), {delta}
        FROM (VALUES (''), ({row}.sender)) AS who(sender) CROSS JOIN generate_series(1, {_LEVELS}) AS levels(level)
        WHERE who.sender IS NOT NULL
        ORDER BY {order}
        ON CONFLICT (conversation_id, sender, level, block) DO UPDATE SET n = t.n + excluded.n;"""

    return f"""
CREATE OR REPLACE FUNCTION message_tally() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- A bulk writer (presence rebuild) recounts the tallies at its end instead: one transaction's
    -- updates of one row each leave a version that the next must step over.
    IF current_setting('presence.tallies_suspended', true) = 'on' THEN
        RETURN NULL;
    END IF;
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        IF {old} THEN{tallies("OLD", -1)}
            DELETE FROM message_tally
            WHERE conversation_id = OLD.conversation_id AND sender IN ('', OLD.sender) AND n = 0
              AND (level, block) IN (
                  SELECT levels.level, OLD.id >> ({_BITS} * levels.level)
                  FROM generate_series(1, {_LEVELS}) AS levels(level)
              );
        END IF;
    END IF;
    IF TG_OP IN ('UPDATE', 'INSERT') THEN
        IF {new} THEN{tallies("NEW", 1)}
        END IF;
    END IF;
    RETURN NULL;
END
$$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_function("2, 3 DESC"))


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_function("2, 3"))
