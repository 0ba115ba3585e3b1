"""The REST API: API keys (stored hashed), answers kept per idempotency key, and outgoing
webhook subscriptions.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
When = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("created_at", When, nullable=False),
        sa.Column("last_used_at", When),
        sa.Column("revoked_at", When),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "api_requests",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column(
            "api_key_id", Id, sa.ForeignKey("api_keys.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("idem_key", sa.String(128), nullable=False),
        sa.Column("method", sa.String(8), nullable=False),
        sa.Column("path", sa.String(512), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("created_at", When, nullable=False),
        sa.UniqueConstraint("api_key_id", "idem_key", name="uq_api_request_key"),
    )
    op.create_index("ix_api_request_created", "api_requests", ["created_at"])
    op.create_table(
        "webhooks",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("events", sa.JSON, nullable=False),
        sa.Column("secret", sa.String(128), nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("created_at", When, nullable=False),
        sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
        sqlite_autoincrement=True,
    )


def downgrade() -> None:
    op.drop_table("webhooks")
    op.drop_index("ix_api_request_created", table_name="api_requests")
    op.drop_table("api_requests")
    op.drop_table("api_keys")
