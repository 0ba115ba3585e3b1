"""Contacts, conversations and messages never hand out an id twice (SQLite AUTOINCREMENT).

Without AUTOINCREMENT SQLite gives a new row the highest id plus one, so erasing a contact
(`/contact forget`), whose rows are usually the newest, freed their ids for the next rows: the
customer writing again got the erased contact's and conversation's ids, and parts of the bridge
that remember an id (the thread of a conversation, a delivery in flight) took the new rows for
the erased ones. PostgreSQL identities never repeat a value; nothing changes there.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# Parents first; the migration runs with SQLite's foreign keys off (storage.db.migrate), so
# dropping the old copy of a table does not cascade into the tables that refer to it.
TABLES = ("contacts", "conversations", "messages")


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for name in TABLES:
        with op.batch_alter_table(
            name, recreate="always", table_kwargs={"sqlite_autoincrement": True}
        ):
            pass


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for name in reversed(TABLES):
        with op.batch_alter_table(
            name, recreate="always", table_kwargs={"sqlite_autoincrement": False}
        ):
            pass
