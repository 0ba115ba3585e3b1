"""The first schema: contacts, conversations, threads, messages, staff refs, outbox, kv.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
When = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "contacts",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("platform", sa.String(16), nullable=False),
        sa.Column("account", sa.String(64), nullable=False),
        sa.Column("chat_id", sa.String(128), nullable=False),
        sa.Column("display_name", sa.String(256), nullable=False),
        sa.Column("username", sa.String(128)),
        sa.Column("language", sa.String(16)),
        sa.Column("first_seen", When, nullable=False),
        sa.Column("last_seen", When, nullable=False),
        sa.Column("message_count", sa.Integer, nullable=False),
        sa.Column("opt_in_source", sa.String(256)),
        sa.Column("opt_in_at", When),
        sa.UniqueConstraint("platform", "account", "chat_id", name="uq_contact_address"),
    )
    op.create_table(
        "conversations",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column(
            "contact_id", Id, sa.ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("opened_at", When, nullable=False),
        sa.Column("closed_at", When),
        sa.Column("previous_id", Id, sa.ForeignKey("conversations.id", ondelete="SET NULL")),
        sa.Column("last_inbound_at", When),
    )
    op.create_index("ix_conversation_contact_status", "conversations", ["contact_id", "status"])
    op.create_table(
        "staff_threads",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column(
            "conversation_id",
            Id,
            sa.ForeignKey("conversations.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("surface", sa.String(16), nullable=False),
        sa.Column("thread_ref", sa.String(256), nullable=False),
        sa.UniqueConstraint("surface", "thread_ref", name="uq_thread_ref"),
        sa.UniqueConstraint("conversation_id", "surface", name="uq_thread_conversation"),
    )
    op.create_table(
        "messages",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column(
            "conversation_id",
            Id,
            sa.ForeignKey("conversations.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("direction", sa.String(8), nullable=False),
        sa.Column("platform", sa.String(16), nullable=False),
        sa.Column("account", sa.String(64), nullable=False),
        sa.Column("external_id", sa.String(256)),
        sa.Column("author", sa.String(256)),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("attachments", sa.JSON),
        sa.Column("sent_at", When, nullable=False),
        sa.Column("edited_at", When),
        sa.Column("deleted", sa.Boolean, nullable=False),
        sa.Column("status", sa.String(16)),
        sa.Column("error_code", sa.String(32)),
        sa.Column("error_reason", sa.Text),
        sa.UniqueConstraint("platform", "account", "external_id", name="uq_message_external"),
    )
    op.create_index("ix_message_conversation", "messages", ["conversation_id", "id"])
    op.create_table(
        "staff_refs",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column(
            "message_id", Id, sa.ForeignKey("messages.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("surface", sa.String(16), nullable=False),
        sa.Column("ref", sa.String(256), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.UniqueConstraint("surface", "ref", "message_id", name="uq_staff_ref"),
    )
    op.create_index("ix_staff_ref_message", "staff_refs", ["message_id"])
    op.create_table(
        "outbox",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("idem_key", sa.String(256), nullable=False, unique=True),
        sa.Column("lane", sa.String(128), nullable=False),
        sa.Column("rate_keys", sa.String(512), nullable=False),
        sa.Column("payload", sa.JSON, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_at", sa.Float, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("done_at", sa.Float),
        sa.Column("last_error", sa.Text),
    )
    op.create_index("ix_outbox_state_id", "outbox", ["state", "id"])
    op.create_table(
        "kv",
        sa.Column("key", sa.String(128), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )


def downgrade() -> None:
    for table in ("kv", "outbox", "staff_refs", "messages", "staff_threads"):
        op.drop_table(table)
    op.drop_table("conversations")
    op.drop_table("contacts")
