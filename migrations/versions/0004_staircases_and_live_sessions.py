"""Receipts kept as staircases; superseded sessions no longer flagged live.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22

- ``receipt``: a receipt (m, t) is dominated when the same reader has a receipt of the same kind
  in the same conversation for a message m' >= m at a time t' <= t; it can never be the answer
  (docs/design.md, "Receipts"), and is deleted. What is left per reader forms a staircase whose
  first step at or above a message is its answer, found by the primary key.
- ``ix_receipt_conversation_id_message_id`` served the old query, which read every later receipt
  of every reader; nothing reads by it now. ``ix_receipt_conversation_id_reader_uid_kind_at``
  finds where the run of steps a new receipt dominates begins.
- ``user_session.live``: cleared on sessions whose signal is older than their user's snapshot
  (which ``facts.is_live`` already says are not live); intake keeps it so from now on, and
  the indexes on live sessions then hold only live ones.

Downgrade keeps the pruned rows pruned: the old query gives the same answers on them,
and the read-time liveness check never relied on the flags cleared.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Rows share a message id only with themselves (the primary key), so a dominating row other
    # than the row itself has a greater message id.
    op.execute(
        "DELETE FROM receipt WHERE EXISTS (SELECT 1 FROM receipt AS d"
        " WHERE d.conversation_id = receipt.conversation_id AND d.reader_uid = receipt.reader_uid"
        " AND d.kind = receipt.kind AND d.message_id > receipt.message_id AND d.at <= receipt.at)"
    )
    op.drop_index("ix_receipt_conversation_id_message_id", table_name="receipt")
    op.create_index(
        "ix_receipt_conversation_id_reader_uid_kind_at", "receipt", ["conversation_id", "reader_uid", "kind", "at"]
    )
    op.execute(
        "UPDATE user_session SET live = false WHERE live AND signal_key <"
        " (SELECT p.snapshot_key FROM user_presence AS p WHERE p.uid = user_session.uid)"
    )
    if op.get_bind().dialect.name == "sqlite":
        # SQLite uses a partial index only for a query term matching its WHERE: "live = 1" is what
        # SQLAlchemy writes for the flag there.
        _live_platform_index("live = 1")


def _live_platform_index(where: str) -> None:
    op.drop_index("ix_user_session_live_platform_uid", table_name="user_session")
    op.create_index(
        "ix_user_session_live_platform_uid", "user_session", ["platform", "uid"], sqlite_where=sa.text(where)
    )


def downgrade() -> None:
    op.drop_index("ix_receipt_conversation_id_reader_uid_kind_at", table_name="receipt")
    if op.get_bind().dialect.name == "sqlite":
        _live_platform_index("live")
    op.create_index("ix_receipt_conversation_id_message_id", "receipt", ["conversation_id", "message_id"])
