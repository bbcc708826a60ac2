"""What CometChat's current webhooks add: status dating, edits and deletions, group aggregates, membership.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01

- ``user_presence.status_updated_key``: the key of the newest event that dates the status
  (``facts.UserFact``); ``status_updated_at`` is that event's. Every event before this revision
  was a legacy one, which dates the status, so existing rows get their ``status_key``.
- ``message.edited_at`` / ``deleted_at``: the latest edit known, the earliest deletion known.
- ``group_receipt``: a group's timed "delivered to all" / "read by all" aggregates, a staircase per
  conversation and kind like ``receipt`` (docs/design.md, "Receipts"); ``group_receipt_flag``: the
  untimed ones; ``group_receipt_lock``: the row that serializes writers of one staircase on PostgreSQL.
- ``chat_group`` / ``group_member``: each group's newest event and each member's.
- ``checkpoint_*`` for the four new state tables, and the new columns on the checkpoint's.

Downgrade drops them all: what they held came from events that the revisions before
could not read anyway (the inbox still holds those, and a rebuild at this revision reads them again).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_KINDS = "kind IN ('delivered', 'read')"


def _identifier(length: int) -> sa.types.TypeEngine[str]:
    return sa.String(length).with_variant(sa.String(length, collation="C"), "postgresql")


def _instant(name: str, *, nullable: bool = False) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    for table in ("user_presence", "checkpoint_user_presence"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("status_updated_key", sa.LargeBinary(length=32), nullable=True))
        rows = sa.table(table, sa.column("status_key"), sa.column("status_updated_key"))
        op.execute(rows.update().values(status_updated_key=rows.c.status_key))
        with op.batch_alter_table(table) as batch:
            batch.alter_column("status_updated_key", existing_type=sa.LargeBinary(length=32), nullable=False)
    for table in ("message", "checkpoint_message"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(_instant("edited_at", nullable=True))
            batch.add_column(_instant("deleted_at", nullable=True))
    for prefix in ("", "checkpoint_"):
        _create_group_tables(prefix)
    op.create_index(
        op.f("ix_group_receipt_conversation_id_kind_at"), "group_receipt", ["conversation_id", "kind", "at"]
    )
    op.create_index(op.f("ix_group_member_uid"), "group_member", ["uid"])
    op.create_table(
        "group_receipt_lock",
        sa.Column("conversation_id", _identifier(512), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.CheckConstraint(_KINDS, name=op.f("ck_group_receipt_lock_kind")),
        sa.PrimaryKeyConstraint("conversation_id", "kind", name=op.f("pk_group_receipt_lock")),
    )


def _create_group_tables(prefix: str) -> None:
    """The four new state tables, or (``checkpoint_``) their checkpoint: the same columns and keys,
    no constraint a rebuild could trip on, no index but retention's ``received_at``."""
    state = not prefix

    def kind_check(table: str) -> list[sa.CheckConstraint]:
        return [sa.CheckConstraint(_KINDS, name=op.f(f"ck_{table}_kind"))] if state else []

    name = f"{prefix}group_receipt"
    op.create_table(
        name,
        sa.Column("conversation_id", _identifier(512), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("message_id", sa.BigInteger(), autoincrement=False, nullable=False),
        _instant("at"),
        _instant("received_at"),
        *kind_check(name),
        sa.PrimaryKeyConstraint("conversation_id", "kind", "message_id", name=op.f(f"pk_{name}")),
    )
    op.create_index(op.f(f"ix_{name}_received_at"), name, ["received_at"])
    name = f"{prefix}group_receipt_flag"
    op.create_table(
        name,
        sa.Column("conversation_id", _identifier(512), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("message_id", sa.BigInteger(), autoincrement=False, nullable=False),
        _instant("received_at"),
        *kind_check(name),
        sa.PrimaryKeyConstraint("conversation_id", "kind", "message_id", name=op.f(f"pk_{name}")),
    )
    op.create_index(op.f(f"ix_{name}_received_at"), name, ["received_at"])
    name = f"{prefix}chat_group"
    op.create_table(
        name,
        sa.Column("guid", _identifier(255), nullable=False),
        sa.Column("key", sa.LargeBinary(length=32), nullable=False),
        sa.Column("members_count", sa.Integer(), nullable=True),
        sa.Column("deleted_key", sa.LargeBinary(length=32), nullable=False),
        sa.PrimaryKeyConstraint("guid", name=op.f(f"pk_{name}")),
    )
    name = f"{prefix}group_member"
    op.create_table(
        name,
        sa.Column("guid", _identifier(255), nullable=False),
        sa.Column("uid", _identifier(255), nullable=False),
        sa.Column("key", sa.LargeBinary(length=32), nullable=False),
        sa.Column("member", sa.Boolean(create_constraint=True, name="member"), nullable=False),
        _instant("joined_at", nullable=True),
        sa.PrimaryKeyConstraint("guid", "uid", name=op.f(f"pk_{name}")),
    )


def downgrade() -> None:
    op.drop_table("group_receipt_lock")
    for prefix in ("checkpoint_", ""):
        for name in ("group_member", "chat_group", "group_receipt_flag", "group_receipt"):
            op.drop_table(f"{prefix}{name}")
    for table in ("checkpoint_message", "message"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("deleted_at")
            batch.drop_column("edited_at")
    for table in ("checkpoint_user_presence", "user_presence"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("status_updated_key")
