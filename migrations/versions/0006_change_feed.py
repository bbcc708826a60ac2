"""The change feed (contract §9): changes in commit order, their counter, and forwarding's state.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01

- ``change``: one row per change of what the query API answers, numbered by ``seq``.
- ``change_log``: one row, the last ``seq`` assigned and the last pruned (both 0 at first).
- ``forward_state``: one row, how far forwarding has delivered and who holds its lease.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _identifier(length: int) -> sa.types.TypeEngine[str]:
    return sa.String(length).with_variant(sa.String(length, collation="C"), "postgresql")


def upgrade() -> None:
    op.create_table(
        "change",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("uid", _identifier(255), nullable=True),
        sa.Column("conversation_id", _identifier(512), nullable=True),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.CheckConstraint("type IN ('presence', 'receipt', 'group_receipt')", name=op.f("ck_change_type")),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_change")),
    )
    op.create_index(op.f("ix_change_uid_seq"), "change", ["uid", "seq"])
    op.create_index(op.f("ix_change_conversation_id_seq"), "change", ["conversation_id", "seq"])
    op.create_index(op.f("ix_change_recorded_at"), "change", ["recorded_at"])
    log = op.create_table(
        "change_log",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.Column("pruned_through", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_change_log")),
    )
    op.bulk_insert(log, [{"id": 1, "last_seq": 0, "pruned_through": 0}])
    forward = op.create_table(
        "forward_state",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("delivered_through", sa.BigInteger(), nullable=True),
        sa.Column("holder", sa.String(length=255), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_forward_state")),
    )
    op.bulk_insert(forward, [{"id": 1, "delivered_through": None, "holder": None, "lease_until": None}])


def downgrade() -> None:
    op.drop_table("forward_state")
    op.drop_table("change_log")
    op.drop_index(op.f("ix_change_recorded_at"), table_name="change")
    op.drop_index(op.f("ix_change_conversation_id_seq"), table_name="change")
    op.drop_index(op.f("ix_change_uid_seq"), table_name="change")
    op.drop_table("change")
