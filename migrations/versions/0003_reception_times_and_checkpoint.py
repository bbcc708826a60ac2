"""Retention by reception time; checkpoint tables that keep what retention prunes from the inbox.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01

- ``received_at`` on ``user_session``, ``message`` (replacing ``noted_at``, which held the
  times inside the events), ``receipt`` and ``receipt_watermark``: when the service received
  the event a row holds; retention goes by it. Rows that exist before this revision get the
  time of the migration, so none expires earlier than it would have.
- Retention's indexes move from ``at`` to ``received_at``.
- ``checkpoint_*``: one table per state table, same columns and key, holding the joined facts
  of the inbox rows retention deleted; ``presence rebuild`` starts from them. Empty here:
  rows pruned before this revision are gone, and a rebuild cannot bring back what they held
  (it refuses to lose state, see docs/design.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_RECEIVED = ("user_session", "receipt", "receipt_watermark")


def _identifier(length: int) -> sa.types.TypeEngine[str]:
    return sa.String(length).with_variant(sa.String(length, collation="C"), "postgresql")


def _instant(name: str, *, nullable: bool = False) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _now_default() -> sa.TextClause:
    """The migration's time as a column default, in the form each backend stores an instant."""
    now = datetime.now(UTC)
    if op.get_bind().dialect.name == "sqlite":
        return sa.text(f"'{now.strftime('%Y-%m-%d %H:%M:%S.%f')}'")
    return sa.text(f"'{now.isoformat()}'::timestamptz")


def upgrade() -> None:
    default = _now_default()
    op.drop_index("ix_receipt_at", table_name="receipt")
    op.drop_index("ix_receipt_watermark_at", table_name="receipt_watermark")
    for table in (*_RECEIVED, "message"):
        # Existing rows get the migration's time; then the default goes (on SQLite the batch
        # rebuilds the table for that, keeping its indexes).
        with op.batch_alter_table(table) as batch:
            batch.add_column(
                sa.Column("received_at", sa.DateTime(timezone=True), nullable=False, server_default=default)
            )
        with op.batch_alter_table(table) as batch:
            batch.alter_column("received_at", server_default=None)
            if table == "message":
                batch.drop_index(batch.f("ix_message_noted_at"))
                batch.drop_column("noted_at")
            batch.create_index(batch.f(f"ix_{table}_received_at"), ["received_at"])
    _create_checkpoint_tables()


def _create_checkpoint_tables() -> None:
    op.create_table(
        "checkpoint_user_presence",
        sa.Column("uid", _identifier(255), nullable=False),
        sa.Column("status", sa.String(length=255), nullable=False),
        _instant("status_updated_at", nullable=True),
        sa.Column("status_key", sa.LargeBinary(length=32), nullable=False),
        _instant("last_seen_at"),
        sa.Column("snapshot_key", sa.LargeBinary(length=32), nullable=False),
        sa.PrimaryKeyConstraint("uid", name=op.f("pk_checkpoint_user_presence")),
    )
    op.create_table(
        "checkpoint_user_session",
        sa.Column("uid", _identifier(255), nullable=False),
        sa.Column("session_id", _identifier(255), nullable=False),
        sa.Column("signal_key", sa.LargeBinary(length=32), nullable=False),
        sa.Column("live", sa.Boolean(create_constraint=True, name="live"), nullable=False),
        sa.Column("device_id", sa.String(length=255), nullable=True),
        sa.Column("platform", sa.String(length=255), nullable=True),
        _instant("connected_at", nullable=True),
        _instant("disconnected_at", nullable=True),
        _instant("received_at"),
        sa.PrimaryKeyConstraint("uid", "session_id", name=op.f("pk_checkpoint_user_session")),
    )
    op.create_table(
        "checkpoint_message",
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("claim", sa.LargeBinary(), nullable=False),
        sa.Column("conversation_id", _identifier(512), nullable=False),
        sa.Column("sender", _identifier(255), nullable=True),
        _instant("sent_at", nullable=True),
        _instant("received_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_checkpoint_message")),
    )
    for name, key in (
        ("checkpoint_receipt", ("conversation_id", "reader_uid", "kind", "message_id")),
        ("checkpoint_receipt_watermark", ("conversation_id", "reader_uid", "kind")),
    ):
        op.create_table(
            name,
            sa.Column("conversation_id", _identifier(512), nullable=False),
            sa.Column("reader_uid", _identifier(255), nullable=False),
            sa.Column("kind", sa.String(length=16), nullable=False),
            sa.Column("message_id", sa.BigInteger(), autoincrement=False, nullable=False),
            _instant("at"),
            _instant("received_at"),
            sa.PrimaryKeyConstraint(*key, name=op.f(f"pk_{name}")),
        )
    for name in ("checkpoint_user_session", "checkpoint_message", "checkpoint_receipt", "checkpoint_receipt_watermark"):
        op.create_index(op.f(f"ix_{name}_received_at"), name, ["received_at"])


def downgrade() -> None:
    for name in (
        "checkpoint_receipt_watermark",
        "checkpoint_receipt",
        "checkpoint_message",
        "checkpoint_user_session",
        "checkpoint_user_presence",
    ):
        op.drop_table(name)
    with op.batch_alter_table("message") as batch:
        batch.drop_index(batch.f("ix_message_received_at"))
        batch.drop_column("received_at")
    with op.batch_alter_table("message") as batch:
        batch.add_column(sa.Column("noted_at", sa.DateTime(timezone=True), nullable=True))
        batch.create_index(batch.f("ix_message_noted_at"), ["noted_at"])
    # The times inside the events, as revision 0002 backfilled them.
    op.execute(
        "UPDATE message SET noted_at = (SELECT MIN(r.at) FROM receipt r"
        " WHERE r.conversation_id = message.conversation_id AND r.message_id = message.id)"
    )
    op.execute(
        "UPDATE message SET noted_at = sent_at WHERE sent_at IS NOT NULL AND (noted_at IS NULL OR sent_at < noted_at)"
    )
    op.create_index("ix_receipt_watermark_at", "receipt_watermark", ["at"])
    op.create_index("ix_receipt_at", "receipt", ["at"])
    for table in reversed(_RECEIVED):
        with op.batch_alter_table(table) as batch:
            batch.drop_index(batch.f(f"ix_{table}_received_at"))
            batch.drop_column("received_at")
