"""Receipt watermarks per reader, message retention time, indexes for the listing queries.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21

- ``receipt_watermark``: each reader's highest delivered and read message id in a
  conversation, and when; backfilled from ``receipt``.
- ``message.noted_at``: the earliest time any event named the message
  (``sent_at``, or the earliest receipt); retention goes by it.
- Indexes: users by status, live sessions by platform, messages by
  conversation, receipts and watermarks by time (retention).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _identifier(length: int) -> sa.types.TypeEngine[str]:
    return sa.String(length).with_variant(sa.String(length, collation="C"), "postgresql")


def upgrade() -> None:
    op.create_table(
        "receipt_watermark",
        sa.Column("conversation_id", _identifier(512), nullable=False),
        sa.Column("reader_uid", _identifier(255), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("message_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("kind IN ('delivered', 'read')", name=op.f("ck_receipt_watermark_kind")),
        sa.PrimaryKeyConstraint("conversation_id", "reader_uid", "kind", name=op.f("pk_receipt_watermark")),
    )
    op.create_index("ix_receipt_watermark_at", "receipt_watermark", ["at"])
    # Backfill from the receipts: each reader's highest id at its earliest time; reads count as deliveries.
    backfill = sa.text(
        """
        INSERT INTO receipt_watermark (conversation_id, reader_uid, kind, message_id, at)
        SELECT r.conversation_id, r.reader_uid, CAST(:kind AS VARCHAR(16)), r.message_id, MIN(r.at)
        FROM receipt r
        WHERE (CAST(:kind AS VARCHAR(16)) = 'delivered' OR r.kind = 'read')
          AND r.message_id = (
            SELECT MAX(x.message_id) FROM receipt x
            WHERE x.conversation_id = r.conversation_id AND x.reader_uid = r.reader_uid
              AND (CAST(:kind AS VARCHAR(16)) = 'delivered' OR x.kind = 'read')
          )
        GROUP BY r.conversation_id, r.reader_uid, r.message_id
        """
    )
    for kind in ("delivered", "read"):
        op.execute(backfill.bindparams(kind=kind))
    with op.batch_alter_table("message") as batch:
        batch.add_column(sa.Column("noted_at", sa.DateTime(timezone=True), nullable=True))
        batch.create_index(batch.f("ix_message_noted_at"), ["noted_at"])
    op.execute(
        "UPDATE message SET noted_at = (SELECT MIN(r.at) FROM receipt r"
        " WHERE r.conversation_id = message.conversation_id AND r.message_id = message.id)"
    )
    op.execute(
        "UPDATE message SET noted_at = sent_at WHERE sent_at IS NOT NULL AND (noted_at IS NULL OR sent_at < noted_at)"
    )
    op.create_index("ix_receipt_at", "receipt", ["at"])
    op.create_index(op.f("ix_message_conversation_id"), "message", ["conversation_id"])
    op.create_index("ix_user_presence_status_uid", "user_presence", ["status", "uid"])
    op.create_index(
        "ix_user_session_live_platform_uid",
        "user_session",
        ["platform", "uid"],
        sqlite_where=sa.text("live"),
        postgresql_where=sa.text("live"),
    )


def downgrade() -> None:
    op.drop_index("ix_user_session_live_platform_uid", table_name="user_session")
    op.drop_index("ix_user_presence_status_uid", table_name="user_presence")
    op.drop_index(op.f("ix_message_conversation_id"), table_name="message")
    op.drop_index("ix_receipt_at", table_name="receipt")
    with op.batch_alter_table("message") as batch:
        batch.drop_index(batch.f("ix_message_noted_at"))
        batch.drop_column("noted_at")
    op.drop_index("ix_receipt_watermark_at", table_name="receipt_watermark")
    op.drop_table("receipt_watermark")
