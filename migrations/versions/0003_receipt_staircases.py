"""Receipts kept as staircases: only the receipts no other dominates.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22

- ``receipt``: a receipt (m, t) is dominated when the same reader has a receipt of the same kind
  in the same conversation for a message m' >= m at a time t' <= t; it can never be the answer
  (docs/design.md, "Receipts"), and is deleted. What is left per reader forms a staircase whose
  first step at or above a message is its answer, found by the primary key.
- ``ix_receipt_conversation_id_message_id`` served the old query, which read every later receipt
  of every reader; nothing reads by it now.

Downgrade keeps the pruned rows pruned: the old query gives the same answers on them.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
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


def downgrade() -> None:
    op.create_index("ix_receipt_conversation_id_message_id", "receipt", ["conversation_id", "message_id"])
