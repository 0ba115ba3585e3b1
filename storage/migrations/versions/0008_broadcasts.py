"""Broadcasts (newsletters) and what became of each for each contact.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
When = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "broadcasts",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("created_at", When, nullable=False),
        sa.Column("surface", sa.String(16), nullable=False),
        sa.Column("channel", sa.String(128)),
        sa.Column("progress_ref", sa.String(256)),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("template", sa.JSON),
        sa.Column("file_id", sa.Integer),
        sa.Column("channel_ids", sa.JSON, nullable=False),
        sa.Column("platforms", sa.JSON, nullable=False),
        sa.Column("scheduled_at", When),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("started_at", When),
        sa.Column("finished_at", When),
        sa.Column("cursor", Id, nullable=False, server_default="0"),
        sa.Column("queued", sa.Integer, nullable=False, server_default="0"),
        sa.Column("expanded", sa.Boolean, nullable=False, server_default=sa.false()),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "broadcast_sends",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column(
            "broadcast_id", Id, sa.ForeignKey("broadcasts.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column(
            "contact_id", Id, sa.ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("platform", sa.String(16), nullable=False),
        sa.Column("account", sa.String(64), nullable=False),
        sa.Column("external_id", sa.String(128)),
        sa.Column("at", When, nullable=False),
        sa.Column("replied_at", When),
        sa.UniqueConstraint("broadcast_id", "contact_id", name="uq_broadcast_contact"),
    )
    op.create_index("ix_bsend_contact", "broadcast_sends", ["contact_id"])
    op.create_index("ix_bsend_external", "broadcast_sends", ["platform", "account", "external_id"])


def downgrade() -> None:
    op.drop_table("broadcast_sends")
    op.drop_table("broadcasts")
