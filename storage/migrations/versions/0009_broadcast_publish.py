"""Broadcasts may also be published (a Facebook page post, a post on X), with each outcome.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
When = sa.DateTime(timezone=True)


def upgrade() -> None:
    # SQLite adds a column with a constant default in place (no table rebuild).
    with op.batch_alter_table("broadcasts") as batch:
        batch.add_column(sa.Column("publish", sa.JSON, nullable=False, server_default="[]"))
    op.create_table(
        "broadcast_posts",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column(
            "broadcast_id", Id, sa.ForeignKey("broadcasts.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("target", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("post_id", sa.String(128)),
        sa.Column("url", sa.Text),
        sa.Column("reason", sa.Text),
        sa.Column("at", When, nullable=False),
        sa.UniqueConstraint("broadcast_id", "target", name="uq_broadcast_target"),
    )


def downgrade() -> None:
    op.drop_table("broadcast_posts")
    with op.batch_alter_table("broadcasts") as batch:
        batch.drop_column("publish")
