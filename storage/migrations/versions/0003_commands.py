"""What the commands manage: roles, subscriber channels, blacklist, templates, text blocks,
consent words, and staff fields on contacts.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
When = sa.DateTime(timezone=True)

# Whole-message opt-out words, at least one per language the bridge ships with; staff edit the
# list with /channel words. Matched after trimming and case folding.
STOP_WORDS = {
    "en": ["stop", "unsubscribe", "stopall", "end", "quit", "cancel"],
    "de": ["stopp", "abmelden", "abbestellen", "austragen"],
    "fr": ["arrêt", "arret", "désabonner", "desabonner", "stoppe"],
    "es": ["alto", "baja", "cancelar", "darse de baja"],
    "it": ["basta", "annulla", "disiscrivi"],
    "pt": ["parar", "sair", "cancelar inscrição"],
    "nl": ["afmelden", "uitschrijven"],
    "ru": ["стоп", "отписаться"],
    "uk": ["відписатися"],
    "pl": ["wypisz", "rezygnuję"],
    "tr": ["dur", "iptal"],
    "sv": ["avsluta", "avregistrera"],
    "da": ["afmeld"],
    "fi": ["lopeta"],
    "cs": ["odhlásit"],
}
START_WORDS = {
    "en": ["start", "unstop", "subscribe"],
    "de": ["anmelden", "starten"],
    "fr": ["abonner"],
    "es": ["alta", "suscribir"],
    "it": ["iscrivi"],
    "nl": ["aanmelden"],
    "ru": ["старт"],
}


def upgrade() -> None:
    with op.batch_alter_table("contacts") as batch:
        batch.add_column(sa.Column("note", sa.Text))
        batch.add_column(sa.Column("remark", sa.Text))
        batch.add_column(sa.Column("assigned_to", sa.String(128)))
    op.create_table(
        "staff_roles",
        sa.Column("surface", sa.String(16), primary_key=True),
        sa.Column("user_id", sa.String(128), primary_key=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("granted_by", sa.String(128), nullable=False),
        sa.Column("granted_at", When, nullable=False),
    )
    op.create_table(
        "channels",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("join_keyword", sa.String(64), unique=True),
        sa.Column("leave_keyword", sa.String(64), unique=True),
        sa.Column("join_reply", sa.Text),
        sa.Column("leave_reply", sa.Text),
        sa.Column("platform", sa.String(16)),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("created_at", When, nullable=False),
    )
    op.create_table(
        "channel_members",
        sa.Column(
            "channel_id", Id, sa.ForeignKey("channels.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column(
            "contact_id", Id, sa.ForeignKey("contacts.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("joined_at", When, nullable=False),
        sa.Column("source", sa.String(128), nullable=False),
        sa.Column("left_at", When),
        sa.Column("left_source", sa.String(128)),
    )
    op.create_index("ix_member_contact", "channel_members", ["contact_id"])
    op.create_table(
        "blacklist",
        sa.Column(
            "contact_id", Id, sa.ForeignKey("contacts.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("direction", sa.String(8), nullable=False),
        sa.Column("until", When),
        sa.Column("reason", sa.Text),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("created_at", When, nullable=False),
    )
    op.create_table(
        "templates",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(512), nullable=False),
        sa.Column("language", sa.String(16), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("created_at", When, nullable=False),
        sa.UniqueConstraint("name", "language", name="uq_template_name_language"),
    )
    op.create_table(
        "text_blocks",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("created_at", When, nullable=False),
    )
    words = op.create_table(
        "consent_words",
        sa.Column("word", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("language", sa.String(16), nullable=False),
    )
    rows = []
    seen: set[str] = set()
    for kind, table in (("stop", STOP_WORDS), ("start", START_WORDS)):
        for language, list_ in table.items():
            for word in list_:
                if word not in seen:
                    seen.add(word)
                    rows.append({"word": word, "kind": kind, "language": language})
    op.bulk_insert(words, rows)


def downgrade() -> None:
    for table in ("consent_words", "text_blocks", "templates", "blacklist"):
        op.drop_table(table)
    op.drop_index("ix_member_contact", "channel_members")
    for table in ("channel_members", "channels", "staff_roles"):
        op.drop_table(table)
    with op.batch_alter_table("contacts") as batch:
        for column in ("assigned_to", "remark", "note"):
            batch.drop_column(column)
