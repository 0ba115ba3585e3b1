"""Outbox rows know whether they are bulk (a broadcast's) or conversation traffic.

The dispatcher reads the two kinds with separate cursors, so a broadcast of 100,000 rows never
stands between an agent's reply and the dispatcher: pending rows are found by (state, bulk, id),
which replaces the (state, id) index. Existing rows are conversation traffic.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # SQLite adds a column with a constant default in place (no table rebuild).
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("bulk", sa.Boolean, nullable=False, server_default=sa.false()))
    op.create_index("ix_outbox_state_bulk_id", "outbox", ["state", "bulk", "id"])
    op.drop_index("ix_outbox_state_id", table_name="outbox")


def downgrade() -> None:
    op.create_index("ix_outbox_state_id", "outbox", ["state", "id"])
    op.drop_index("ix_outbox_state_bulk_id", table_name="outbox")
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("bulk")
