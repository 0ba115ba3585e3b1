"""Outbox rows leased to one process at a time, for several bridge processes sharing one
PostgreSQL database: the holder and until when, and an index to keep each lane's order.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("owner", sa.String(64)))
        batch.add_column(sa.Column("lease_until", sa.Float, nullable=False, server_default="0"))
    op.create_index(
        "ix_outbox_pending_lane",
        "outbox",
        ["lane", "id"],
        postgresql_where=sa.text("state = 'pending'"),
        sqlite_where=sa.text("state = 'pending'"),
    )


def downgrade() -> None:
    op.drop_index("ix_outbox_pending_lane", table_name="outbox")
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("lease_until")
        batch.drop_column("owner")
