"""Token buckets shared by the bridge's processes on one PostgreSQL database: one row per rate
key, refilled by the database's clock, from which each process leases small slices of tokens.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rate_buckets",
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("tokens", sa.Float, nullable=False),
        sa.Column("refilled_at", sa.Float, nullable=False),
        sa.Column("blocked_until", sa.Float, nullable=False, server_default="0"),
        sa.Column("last_grant", sa.Float, nullable=False, server_default="0"),
    )


def downgrade() -> None:
    op.drop_table("rate_buckets")
