"""Chatbot rules, their change log, per-contact firings and the files they answer with.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
When = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "rules",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("keyword_type", sa.String(16), nullable=False),
        sa.Column("pattern", sa.Text),
        sa.Column("platforms", sa.String(128), nullable=False, server_default=""),
        sa.Column("start_time", sa.String(5)),
        sa.Column("end_time", sa.String(5)),
        sa.Column("weekdays", sa.String(7), nullable=False, server_default="0123456"),
        sa.Column("limit_type", sa.String(8), nullable=False, server_default="always"),
        sa.Column("limit_seconds", sa.Integer),
        sa.Column("priority", sa.Integer, nullable=False, server_default="0"),
        sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("actions", sa.JSON, nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("created_at", When, nullable=False),
        sa.Column("updated_by", sa.String(128), nullable=False),
        sa.Column("updated_at", When, nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "rule_changes",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("rule_id", Id, nullable=False),
        sa.Column("rule_name", sa.String(64), nullable=False),
        sa.Column("change", sa.String(16), nullable=False),
        sa.Column("by", sa.String(128), nullable=False),
        sa.Column("at", When, nullable=False),
        sa.Column("snapshot", sa.JSON),
    )
    op.create_table(
        "rule_firings",
        sa.Column("rule_id", Id, sa.ForeignKey("rules.id", ondelete="CASCADE"), primary_key=True),
        sa.Column(
            "contact_id", Id, sa.ForeignKey("contacts.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_at", When, nullable=False),
    )
    op.create_table(
        "rule_files",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("filename", sa.String(256), nullable=False),
        sa.Column("mime_type", sa.String(128), nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("created_at", When, nullable=False),
    )


def downgrade() -> None:
    for name in ("rule_files", "rule_firings", "rule_changes", "rules"):
        op.drop_table(name)
