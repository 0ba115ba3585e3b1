"""Engines, migrations and connections.

SQLite gets one connection that writes (the group-commit writer owns it) and a small pool of
readers: with WAL, readers never wait for the writer, and a single writer never fights for the
lock. PostgreSQL gets one ordinary pool.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import event, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine
from sqlalchemy.pool import AsyncAdaptedQueuePool

log = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).parent / "migrations"


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    # WAL lets readers run beside the writer; NORMAL sync is durable across process crashes
    # (only an OS crash may lose the last commits), which is what a kill -9 test checks.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


class Database:
    """The bridge's database: a writer connection source and a reader pool."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        parsed = make_url(url)
        self.dialect = parsed.get_backend_name()
        if self.dialect == "sqlite":
            database = parsed.database or ""
            if database and database != ":memory:" and not database.startswith("file:"):
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            self.write_engine = create_async_engine(
                url, echo=echo, poolclass=AsyncAdaptedQueuePool, pool_size=1, max_overflow=0
            )
            self.read_engine = create_async_engine(
                url, echo=echo, poolclass=AsyncAdaptedQueuePool, pool_size=4, max_overflow=4
            )
            for engine in (self.write_engine, self.read_engine):
                event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        else:
            self.write_engine = create_async_engine(url, echo=echo, pool_size=8, max_overflow=8)
            self.read_engine = self.write_engine

    async def migrate(self) -> None:
        """Bring the schema to the newest revision (Alembic)."""
        async with self.write_engine.begin() as conn:
            await conn.run_sync(_upgrade)

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """A connection in a transaction that commits on success."""
        async with self.write_engine.begin() as conn:
            yield conn

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A connection for reads."""
        async with self.read_engine.connect() as conn:
            yield conn

    async def ping(self) -> bool:
        """True when the database answers."""
        try:
            async with self.read() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception:
            log.warning("database ping failed", exc_info=True)
            return False
        return True

    async def close(self) -> None:
        """Close every connection."""
        await self.write_engine.dispose()
        if self.read_engine is not self.write_engine:
            await self.read_engine.dispose()


def _upgrade(connection: Connection) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, "head")
