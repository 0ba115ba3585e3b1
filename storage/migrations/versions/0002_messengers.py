"""Opt-out state on contacts, and files served at signed URLs (MMS media).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
When = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("contacts") as batch:
        batch.add_column(sa.Column("opted_out_at", When))
        batch.add_column(sa.Column("opt_out_source", sa.String(128)))
    op.create_table(
        "media_files",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("filename", sa.String(256), nullable=False),
        sa.Column("mime_type", sa.String(128), nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
    )
    op.create_index("ix_media_expires", "media_files", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_media_expires", "media_files")
    op.drop_table("media_files")
    with op.batch_alter_table("contacts") as batch:
        batch.drop_column("opt_out_source")
        batch.drop_column("opted_out_at")
