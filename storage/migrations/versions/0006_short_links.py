"""Short links of the bridge and their clicks.

A click keeps its time and, when the link was a contact's own, the contact: erasing the
contact sets that to NULL (the count stays, nobody is named). No address or user agent is kept.
`broadcast_id` has no foreign key yet: broadcasts get their table in a later revision.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
When = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "short_links",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("code", sa.String(16), nullable=False, unique=True),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("broadcast_id", Id),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("created_at", When, nullable=False),
    )
    op.create_index("ix_short_link_broadcast", "short_links", ["broadcast_id"])
    op.create_table(
        "link_clicks",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column(
            "link_id", Id, sa.ForeignKey("short_links.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("at", When, nullable=False),
        sa.Column("contact_id", Id, sa.ForeignKey("contacts.id", ondelete="SET NULL")),
    )
    op.create_index("ix_link_click_link", "link_clicks", ["link_id", "at"])
    op.create_index("ix_link_click_contact", "link_clicks", ["contact_id"])


def downgrade() -> None:
    op.drop_table("link_clicks")
    op.drop_table("short_links")
