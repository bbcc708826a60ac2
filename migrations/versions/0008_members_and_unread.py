"""Conversations' members and unread counts (contract §11).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01

- ``conversation_participant``: who an event showed in a conversation (a one-to-one party, a
  group's sender or reader), and its checkpoint. Filled from the messages' senders and the
  readers' watermarks already stored; a one-to-one party named only as a receiver appears
  after ``presence rebuild`` (or its next message or receipt).
- ``message_tally``: per conversation, sender (``''``: all) and block of message ids, how many
  known, undeleted messages there are; kept by triggers on ``message`` on both backends and
  filled here from the stored messages. The levels (6 bits each, 6 levels) are
  ``presence.core.conversations.TALLY_BITS`` / ``TALLY_LEVELS``: written out, not imported, so
  this revision stays what it was whatever the code becomes.
- ``message`` indexes by ``(conversation_id, id)`` and ``(conversation_id, sent_at, id)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# Every statement here is DDL written from this file's own constants: no outside value reaches it.
# ruff: noqa: S608

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BITS = 6
_LEVELS = 6
#: SQL of "this message row is an unread candidate": known from an after_message (authority 1), not deleted.
_SQLITE_COUNTED = "{row}.claim >= X'01' AND {row}.deleted_at IS NULL"
_POSTGRES_COUNTED = "get_byte({row}.claim, 0) >= 1 AND {row}.deleted_at IS NULL"


def _identifier(length: int) -> sa.types.TypeEngine[str]:
    return sa.String(length).with_variant(sa.String(length, collation="C"), "postgresql")


def upgrade() -> None:
    for prefix in ("", "checkpoint_"):
        name = f"{prefix}conversation_participant"
        checks = (
            []
            if prefix
            else [sa.CheckConstraint("known_from IN ('party', 'activity')", name=op.f(f"ck_{name}_known_from"))]
        )
        op.create_table(
            name,
            sa.Column("conversation_id", _identifier(512), nullable=False),
            sa.Column("uid", _identifier(255), nullable=False),
            sa.Column("known_from", sa.String(length=16), nullable=False),
            *checks,
            sa.PrimaryKeyConstraint("conversation_id", "uid", name=op.f(f"pk_{name}")),
        )
    op.create_index(op.f("ix_conversation_participant_uid"), "conversation_participant", ["uid"])
    op.create_table(
        "message_tally",
        sa.Column("conversation_id", _identifier(512), nullable=False),
        sa.Column("sender", _identifier(255), nullable=False),
        sa.Column("level", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("block", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("conversation_id", "sender", "level", "block", name=op.f("pk_message_tally")),
    )
    op.create_index(op.f("ix_message_conversation_id_id"), "message", ["conversation_id", "id"])
    op.create_index(op.f("ix_message_conversation_id_sent_at_id"), "message", ["conversation_id", "sent_at", "id"])
    postgres = op.get_bind().dialect.name == "postgresql"
    for statement in _postgres_triggers() if postgres else _sqlite_triggers():
        op.execute(statement)
    _fill(_POSTGRES_COUNTED if postgres else _SQLITE_COUNTED)


def _fill(counted: str) -> None:
    """The tallies and participants of what is already stored."""
    where = counted.format(row="message")
    for level in range(1, _LEVELS + 1):
        shift = _BITS * level
        op.execute(
            "INSERT INTO message_tally (conversation_id, sender, level, block, n)"
            f" SELECT conversation_id, '', {level}, id >> {shift}, count(*) FROM message WHERE {where}"
            f" GROUP BY conversation_id, id >> {shift}"
        )
        op.execute(
            "INSERT INTO message_tally (conversation_id, sender, level, block, n)"
            f" SELECT conversation_id, sender, {level}, id >> {shift}, count(*) FROM message"
            f" WHERE {where} AND sender IS NOT NULL GROUP BY conversation_id, sender, id >> {shift}"
        )
    known_from = "CASE WHEN substr(conversation_id, 1, 6) = 'group_' THEN 'activity' ELSE 'party' END"
    op.execute(
        "INSERT INTO conversation_participant (conversation_id, uid, known_from)"
        f" SELECT conversation_id, uid, {known_from} FROM ("
        f" SELECT conversation_id, sender AS uid FROM message WHERE {where} AND sender IS NOT NULL"
        " UNION SELECT conversation_id, reader_uid AS uid FROM receipt_watermark) AS named"
    )


def _sqlite_triggers() -> list[str]:
    """Three triggers: a counted row inserted adds one, deleted takes one, updated moves it."""

    def apply(row: str, delta: int, condition: str) -> list[str]:
        """Add ``delta`` to the row's tallies, all senders first, then levels upwards, if ``condition``."""
        statements = []
        for sender in ("''", f"{row}.sender"):
            guard = condition if sender == "''" else f"{row}.sender IS NOT NULL AND {condition}"
            for level in range(1, _LEVELS + 1):
                block = f"{row}.id >> {_BITS * level}"
                statements.append(
                    "INSERT INTO message_tally (conversation_id, sender, level, block, n)"
                    f" SELECT {row}.conversation_id, {sender}, {level}, {block}, {delta} WHERE {guard}"
                    " ON CONFLICT (conversation_id, sender, level, block) DO UPDATE SET n = n + excluded.n;"
                )
                if delta < 0:
                    statements.append(
                        f"DELETE FROM message_tally WHERE conversation_id = {row}.conversation_id"
                        f" AND sender = {sender} AND level = {level} AND block = {block} AND n = 0;"
                    )
        return statements

    old, new = _SQLITE_COUNTED.format(row="OLD"), _SQLITE_COUNTED.format(row="NEW")
    moved = (
        f"(({old}) IS NOT ({new})) OR (({new}) AND (OLD.conversation_id IS NOT NEW.conversation_id"
        " OR OLD.sender IS NOT NEW.sender))"
    )

    def trigger(name: str, event: str, when: str, statements: list[str]) -> str:
        return f"CREATE TRIGGER {name} AFTER {event} ON message WHEN {when} BEGIN\n" + "\n".join(statements) + "\nEND"

    return [
        trigger("message_tally_insert", "INSERT", new, apply("NEW", 1, "true")),
        trigger("message_tally_delete", "DELETE", old, apply("OLD", -1, "true")),
        # A trigger's statements run in order: the old row's tallies out, then the new row's in.
        trigger("message_tally_update", "UPDATE", moved, apply("OLD", -1, old) + apply("NEW", 1, new)),
    ]


def _postgres_triggers() -> list[str]:
    """Row triggers, as on SQLite, each writing a message's tally rows in one statement.

    (Intake writes messages with one execution per row, so a statement trigger would run per row
    too, and costs more.) The rows are written in key order, so concurrent writers take the tally
    rows' locks in one order; a decrement that leaves a row at 0 deletes it.
    """
    old, new = _POSTGRES_COUNTED.format(row="OLD"), _POSTGRES_COUNTED.format(row="NEW")

    def tallies(row: str, delta: int) -> str:
        return f"""
        INSERT INTO message_tally AS t (conversation_id, sender, level, block, n)
        SELECT {row}.conversation_id, who.sender, levels.level, {row}.id >> ({_BITS} * levels.level), {delta}
        FROM (VALUES (''), ({row}.sender)) AS who(sender) CROSS JOIN generate_series(1, {_LEVELS}) AS levels(level)
        WHERE who.sender IS NOT NULL
        ORDER BY 2, 3
        ON CONFLICT (conversation_id, sender, level, block) DO UPDATE SET n = t.n + excluded.n;"""

    moved = f"(({old}) IS DISTINCT FROM ({new})) OR (({new}) AND (OLD.conversation_id IS DISTINCT FROM"
    moved += " NEW.conversation_id OR OLD.sender IS DISTINCT FROM NEW.sender))"
    function = f"""
CREATE FUNCTION message_tally() RETURNS trigger
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
    triggers = {"insert": ("INSERT", new), "delete": ("DELETE", old), "update": ("UPDATE", moved)}
    return [function] + [
        f"CREATE TRIGGER message_tally_{name} AFTER {event} ON message FOR EACH ROW WHEN ({when})"
        " EXECUTE FUNCTION message_tally()"
        for name, (event, when) in triggers.items()
    ]


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for name in ("message_tally_insert", "message_tally_delete", "message_tally_update"):
        op.execute(f"DROP TRIGGER {name} ON message" if postgres else f"DROP TRIGGER {name}")
    if postgres:
        op.execute("DROP FUNCTION message_tally()")
    op.drop_index(op.f("ix_message_conversation_id_sent_at_id"), table_name="message")
    op.drop_index(op.f("ix_message_conversation_id_id"), table_name="message")
    op.drop_table("message_tally")
    op.drop_index(op.f("ix_conversation_participant_uid"), table_name="conversation_participant")
    for prefix in ("checkpoint_", ""):
        op.drop_table(f"{prefix}conversation_participant")
