"""Reconciliation with CometChat's REST API (contract §10): where a status came from, and whose turn it is.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01

- ``user_presence.status_source`` (and the checkpoint's): which kind of event decided the
  status, ``webhook`` or ``reconcile``. Every event before this revision was a webhook.
- ``reconcile_state``: one row, when the next background pass is due and which replica
  claimed the last one (none yet).

Downgrade drops them. The corrections stay in the inbox: an older version ignores them as an
unknown trigger, and a rebuild at this revision reads them again.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for table in ("user_presence", "checkpoint_user_presence"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("status_source", sa.String(length=16), nullable=True))
        rows = sa.table(table, sa.column("status_source"))
        op.execute(rows.update().values(status_source="webhook"))
        with op.batch_alter_table(table) as batch:
            batch.alter_column("status_source", existing_type=sa.String(length=16), nullable=False)
    state = op.create_table(
        "reconcile_state",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("next_pass_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("holder", sa.String(length=255), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reconcile_state")),
    )
    op.bulk_insert(state, [{"id": 1, "next_pass_at": None, "holder": None}])


def downgrade() -> None:
    op.drop_table("reconcile_state")
    for table in ("user_presence", "checkpoint_user_presence"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("status_source")
