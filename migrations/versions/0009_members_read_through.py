"""How far each known member has read, beside the member (contract §11, ``unread_by``).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01

- ``group_member.read_through`` and ``conversation_participant.read_through`` (and their
  checkpoints'): the member's read watermark in the conversation (``receipt_watermark``'s
  ``message_id`` of kind ``read``), ``-1`` without one. Kept by triggers on both backends, from
  the watermark's side (a watermark inserted, raised, or deleted by retention) and from the
  member's (a member row inserted takes the watermark already there), so every writer keeps it
  and the order in which a watermark and a member row arrive cannot matter. Not state: it is a
  function of the other rows, and the checkpoints' copy is never read.
- Indexes ``(guid, read_through)`` and ``(conversation_id, read_through)``: the members who have
  not read a message are a range, however many have.

Filled here from the stored watermarks.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# Every statement here is DDL written from this file's own constants: no outside value reaches it.
# ruff: noqa: S608

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: (table, its conversation's column, how a watermark's conversation_id names that column's value)
_TABLES = (
    ("group_member", "guid", "'group_' || {row}.guid"),
    ("conversation_participant", "conversation_id", "{row}.conversation_id"),
)


def _watermark_of(table: str, conversation: str, row: str) -> str:
    """The read watermark of ``row``'s member, as a scalar subquery (``-1`` without one)."""
    named = conversation.format(row=row)
    return (
        "coalesce((SELECT w.message_id FROM receipt_watermark AS w"
        f" WHERE w.conversation_id = {named} AND w.reader_uid = {row}.uid AND w.kind = 'read'), -1)"
    )


def _members_of(table: str, key: str, row: str) -> str:
    """The WHERE clause that finds, in ``table``, the member a watermark ``row`` is about."""
    if key == "guid":
        return (
            f"substr({row}.conversation_id, 1, 6) = 'group_' AND guid = substr({row}.conversation_id, 7)"
            f" AND uid = {row}.reader_uid"
        )
    return f"conversation_id = {row}.conversation_id AND uid = {row}.reader_uid"


def upgrade() -> None:
    for table, key, conversation in _TABLES:
        for prefix in ("", "checkpoint_"):
            op.add_column(
                f"{prefix}{table}",
                sa.Column("read_through", sa.BigInteger(), server_default=sa.text("-1"), nullable=False),
            )
        op.create_index(op.f(f"ix_{table}_{key}_read_through"), table, [key, "read_through"])
        op.execute(f"UPDATE {table} SET read_through = {_watermark_of(table, conversation, table)}")
    postgres = op.get_bind().dialect.name == "postgresql"
    for statement in _postgres_triggers() if postgres else _sqlite_triggers():
        op.execute(statement)


def _sqlite_triggers() -> list[str]:
    statements = []
    for table, key, conversation in _TABLES:
        statements.append(
            f"CREATE TRIGGER {table}_read_through_insert AFTER INSERT ON {table} BEGIN"
            f" UPDATE {table} SET read_through = {_watermark_of(table, conversation, 'NEW')}"
            f" WHERE {key} = NEW.{key} AND uid = NEW.uid; END"
        )
    for event, row, value in (
        ("INSERT", "NEW", "NEW.message_id"),
        ("UPDATE OF message_id", "NEW", "NEW.message_id"),
        ("DELETE", "OLD", "-1"),
    ):
        name = event.split()[0].lower()
        updates = " ".join(
            f"UPDATE {table} SET read_through = {value} WHERE {_members_of(table, key, row)};"
            for table, key, _ in _TABLES
        )
        statements.append(
            f"CREATE TRIGGER receipt_watermark_read_through_{name} AFTER {event} ON receipt_watermark"
            f" WHEN {row}.kind = 'read' BEGIN {updates} END"
        )
    return statements


def _postgres_triggers() -> list[str]:
    member = """
CREATE FUNCTION member_read_through() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_TABLE_NAME = 'group_member' THEN
        NEW.read_through := {group};
    ELSE
        NEW.read_through := {participant};
    END IF;
    RETURN NEW;
END
$$
""".format(
        group=_watermark_of("group_member", _TABLES[0][2], "NEW"),
        participant=_watermark_of("conversation_participant", _TABLES[1][2], "NEW"),
    )
    watermark = """
CREATE FUNCTION watermark_read_through() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        UPDATE group_member SET read_through = -1 WHERE {group_old};
        UPDATE conversation_participant SET read_through = -1 WHERE {participant_old};
    ELSE
        UPDATE group_member SET read_through = NEW.message_id
        WHERE {group_new} AND read_through IS DISTINCT FROM NEW.message_id;
        UPDATE conversation_participant SET read_through = NEW.message_id
        WHERE {participant_new} AND read_through IS DISTINCT FROM NEW.message_id;
    END IF;
    RETURN NULL;
END
$$
""".format(
        group_old=_members_of("group_member", "guid", "OLD"),
        participant_old=_members_of("conversation_participant", "conversation_id", "OLD"),
        group_new=_members_of("group_member", "guid", "NEW"),
        participant_new=_members_of("conversation_participant", "conversation_id", "NEW"),
    )
    return [
        member,
        watermark,
        *(
            f"CREATE TRIGGER {table}_read_through_insert BEFORE INSERT ON {table}"
            " FOR EACH ROW EXECUTE FUNCTION member_read_through()"
            for table, _, _ in _TABLES
        ),
        "CREATE TRIGGER receipt_watermark_read_through_insert AFTER INSERT ON receipt_watermark"
        " FOR EACH ROW WHEN (NEW.kind = 'read') EXECUTE FUNCTION watermark_read_through()",
        "CREATE TRIGGER receipt_watermark_read_through_update AFTER UPDATE OF message_id ON receipt_watermark"
        " FOR EACH ROW WHEN (NEW.kind = 'read' AND NEW.message_id IS DISTINCT FROM OLD.message_id)"
        " EXECUTE FUNCTION watermark_read_through()",
        "CREATE TRIGGER receipt_watermark_read_through_delete AFTER DELETE ON receipt_watermark"
        " FOR EACH ROW WHEN (OLD.kind = 'read') EXECUTE FUNCTION watermark_read_through()",
    ]


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    triggers = [(f"{table}_read_through_insert", table) for table, _, _ in _TABLES] + [
        (f"receipt_watermark_read_through_{name}", "receipt_watermark") for name in ("insert", "update", "delete")
    ]
    for name, table in triggers:
        op.execute(f"DROP TRIGGER {name} ON {table}" if postgres else f"DROP TRIGGER {name}")
    if postgres:
        op.execute("DROP FUNCTION watermark_read_through()")
        op.execute("DROP FUNCTION member_read_through()")
    for table, key, _ in _TABLES:
        op.drop_index(op.f(f"ix_{table}_{key}_read_through"), table_name=table)
        for prefix in ("checkpoint_", ""):
            with op.batch_alter_table(f"{prefix}{table}") as batch:
                batch.drop_column("read_through")
