"""Alembic environment: migrations run on the connection the bridge hands over at start."""

from __future__ import annotations

from alembic import context

from storage.models import Base

target_metadata = Base.metadata
connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - the bridge always passes its connection
    msg = "run migrations through storage.db.migrate(), which passes the connection"
    raise RuntimeError(msg)
context.configure(
    connection=connection,
    target_metadata=target_metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
