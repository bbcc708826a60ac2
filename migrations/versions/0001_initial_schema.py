"""Initial schema: the inbox, user presence and sessions, messages and receipts.

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _identifier(length: int) -> sa.types.TypeEngine[str]:
    """Ids sort by code point on every backend: COLLATE "C" on PostgreSQL."""
    return sa.String(length).with_variant(sa.String(length, collation="C"), "postgresql")


def upgrade() -> None:
    op.create_table(
        "inbox_event",
        sa.Column("id", _BIG_ID, autoincrement=True, nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("trigger", sa.String(length=100), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inbox_event")),
    )
    op.create_index(op.f("ix_inbox_event_received_at"), "inbox_event", ["received_at"])
    op.create_table(
        "user_presence",
        sa.Column("uid", _identifier(255), nullable=False),
        sa.Column("status", sa.String(length=255), nullable=False),
        sa.Column("status_updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status_key", sa.LargeBinary(length=32), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("snapshot_key", sa.LargeBinary(length=32), nullable=False),
        sa.PrimaryKeyConstraint("uid", name=op.f("pk_user_presence")),
    )
    op.create_table(
        "user_session",
        sa.Column("uid", _identifier(255), nullable=False),
        sa.Column("session_id", _identifier(255), nullable=False),
        sa.Column("signal_key", sa.LargeBinary(length=32), nullable=False),
        sa.Column("live", sa.Boolean(create_constraint=True, name="live"), nullable=False),
        sa.Column("device_id", sa.String(length=255), nullable=True),
        sa.Column("platform", sa.String(length=255), nullable=True),
        sa.Column("connected_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("disconnected_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("uid", "session_id", name=op.f("pk_user_session")),
    )
    op.create_index("ix_user_session_uid_live", "user_session", ["uid", "live"])
    op.create_table(
        "message",
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("claim", sa.LargeBinary(), nullable=False),
        sa.Column("conversation_id", _identifier(512), nullable=False),
        sa.Column("sender", _identifier(255), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_message")),
    )
    op.create_table(
        "receipt",
        sa.Column("conversation_id", _identifier(512), nullable=False),
        sa.Column("reader_uid", _identifier(255), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("message_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("kind IN ('delivered', 'read')", name=op.f("ck_receipt_kind")),
        sa.PrimaryKeyConstraint("conversation_id", "reader_uid", "kind", "message_id", name=op.f("pk_receipt")),
    )
    op.create_index("ix_receipt_conversation_id_message_id", "receipt", ["conversation_id", "message_id"])


def downgrade() -> None:
    op.drop_index("ix_receipt_conversation_id_message_id", table_name="receipt")
    op.drop_table("receipt")
    op.drop_table("message")
    op.drop_index("ix_user_session_uid_live", table_name="user_session")
    op.drop_table("user_session")
    op.drop_table("user_presence")
    op.drop_index(op.f("ix_inbox_event_received_at"), table_name="inbox_event")
    op.drop_table("inbox_event")
