"""Engines, migrations and connections.

SQLite gets one connection that writes, used by the group-commit writer task: a whole batch's
transaction runs in one synchronous call with the stdlib driver. Measured under load, handing
each statement (aiosqlite) or each transaction (a writer thread) to another thread cost more
than the SQL itself: every hand-off waits for the busy event loop or for the GIL. When another
process writes too (the dispatcher process), a busy lock fails at once and the transaction is
retried after an asyncio sleep, so SQLite never sleeps inside the event loop.
Reads use a small pool; with WAL, readers never wait for the writer and a single writer never
fights for the lock. PostgreSQL gets one ordinary asyncpg pool, and transactions run through
`run_sync` on it.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine
from sqlalchemy.pool import AsyncAdaptedQueuePool

from storage.queries import Tx

log = logging.getLogger(__name__)
R = TypeVar("R")
LOCK_WAIT = 30.0  # seconds a shared SQLite writer waits for the other process's lock
BUSY_TIMEOUT_MS = 10000  # how long an unshared SQLite connection waits for a lock
CHECKPOINT_WAIT = 5.0  # seconds an erasure's WAL checkpoint waits for readers to finish
MIGRATIONS = Path(__file__).parent / "migrations"
# PostgreSQL: the advisory lock migrations hold, so that processes starting together against one
# database migrate one after the other (the later ones find the schema at head).
MIGRATION_LOCK = 0x62726467  # "brdg"


@dataclass(frozen=True, slots=True)
class SchemaState:
    """Where a database's schema stands against this version's migrations."""

    current: str | None  # the database's revision; None: no schema yet
    head: str  # the newest revision this version knows
    pending: tuple[str, ...]  # revisions still to apply, oldest first
    known: bool  # False: the database is at a revision this version does not know (newer)


def backend_name(url: str) -> str:
    """The kind of database a URL names: "sqlite" or "postgresql"."""
    return make_url(url).get_backend_name()


def sqlite_file(url: str) -> str | None:
    """The file an SQLite URL names; None for an in-memory or `file:` URI database, and for
    other databases."""
    parsed = make_url(url)
    file = parsed.database or ""
    if (
        parsed.get_backend_name() != "sqlite"
        or file in ("", ":memory:")
        or file.startswith("file:")
    ):
        return None
    return file


def url_password(url: str) -> str | None:
    """The password a database URL carries, if any (to keep it out of the logs)."""
    password = make_url(url).password
    return str(password) if password else None


def asyncpg_dsn(url: str) -> str:
    """A libpq connection string from the bridge's SQLAlchemy URL (for a bare asyncpg
    connection)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    # WAL lets readers run beside the writer; NORMAL sync is durable across process crashes
    # (only an OS crash may lose the last commits), which is what a kill -9 test checks.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    # Deleted rows are overwritten with zeros, not left in free pages and cells: an erased
    # contact must not be readable from the file (builds differ in their default).
    cursor.execute("PRAGMA secure_delete=ON")
    cursor.close()


class Database:
    """The bridge's database: a writer connection source and a reader pool."""

    def __init__(self, url: str, *, echo: bool = False, shared: bool = False) -> None:
        """`shared`: another process writes to this database too (see `run_write`)."""
        self.url = url
        parsed = make_url(url)
        self.dialect = parsed.get_backend_name()
        self._chores: set[asyncio.Task[None]] = set()
        if self.dialect == "sqlite":
            file = sqlite_file(url)
            if file is not None:
                Path(file).parent.mkdir(parents=True, exist_ok=True)
            self.write_engine = create_async_engine(
                url, echo=echo, poolclass=AsyncAdaptedQueuePool, pool_size=1, max_overflow=0
            )
            self.read_engine = create_async_engine(
                url, echo=echo, poolclass=AsyncAdaptedQueuePool, pool_size=4, max_overflow=4
            )
            # The writer's own engine: the stdlib driver, one connection.
            self.shared = shared
            self.sync_writer: Engine | None = create_engine(
                parsed.set(drivername="sqlite+pysqlite"),
                echo=echo,
                pool_size=1,
                max_overflow=0,
                connect_args={"check_same_thread": False},
            )
            for sync_engine in (
                self.write_engine.sync_engine,
                self.read_engine.sync_engine,
                self.sync_writer,
            ):
                event.listen(sync_engine, "connect", _sqlite_pragmas)
            if shared:
                # Never let SQLite sleep on the other process's lock inside the event loop:
                # fail at once and let run_write wait with asyncio instead.
                event.listen(self.sync_writer, "connect", _no_busy_wait)
        else:
            self.write_engine = create_async_engine(url, echo=echo, pool_size=8, max_overflow=8)
            self.read_engine = self.write_engine
            self.sync_writer = None
            self.shared = shared

    async def migrate(self, revision: str = "head") -> None:
        """Bring the schema to the newest revision (Alembic), or up to `revision`.

        SQLite migrates with its foreign keys off: a migration that rebuilds a table (SQLite
        alters little in place) drops the old copy, and with the keys on that would cascade
        into every table that refers to it. The references are checked before the commit."""
        await self._alembic(partial(_upgrade, revision=revision))

    async def downgrade(self, revision: str) -> None:
        """Take the schema back to `revision` ("base": no tables); newer tables' data is lost."""
        await self._alembic(partial(_downgrade, revision=revision))

    async def schema_state(self) -> SchemaState:
        """The database's revision against this version's migrations; changes nothing."""
        async with self.read() as conn:
            return await conn.run_sync(_schema_state)

    async def _alembic(self, step: Callable[[Connection], None]) -> None:
        """Run an Alembic command in one transaction (see `migrate`)."""
        if self.dialect != "sqlite":
            async with self.write_engine.begin() as conn:
                # Held until the commit: a second process waits here, then finds nothing to do.
                await conn.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK}
                )
                await conn.run_sync(step)
            return
        async with self.write_engine.connect() as conn:
            # Outside a transaction: SQLite ignores this pragma inside one.
            await conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
            try:
                # Begun explicitly: the driver would only begin at the first INSERT or UPDATE,
                # leaving the DDL before it outside the transaction, not undone by a rollback.
                await conn.exec_driver_sql("BEGIN")
                await conn.run_sync(step)
                broken = (await conn.exec_driver_sql("PRAGMA foreign_key_check")).fetchall()
                if broken:
                    msg = f"the migration left rows without the rows they refer to: {broken[:5]}"
                    raise RuntimeError(msg)
                await conn.commit()
            except BaseException:
                await conn.rollback()
                raise
            finally:
                await conn.exec_driver_sql("PRAGMA foreign_keys=ON")
                await conn.commit()

    async def run_write(self, fn: Callable[[Connection], R]) -> R:
        """Run `fn` in one transaction that commits when it returns (rolls back if it raises)."""
        if self.sync_writer is not None:
            engine = self.sync_writer

            def transaction() -> R:
                with engine.begin() as conn:
                    return fn(conn)

            # Synchronous on purpose (see the module docstring): a batch takes a few ms.
            if not self.shared:
                return transaction()
            deadline = time.monotonic() + LOCK_WAIT
            while True:
                try:
                    return transaction()  # rolled back on error; safe to run again
                except OperationalError as exc:
                    if not _is_busy(exc) or time.monotonic() > deadline:
                        raise
                await asyncio.sleep(random.uniform(0.0005, 0.002))
        async with self.write_engine.begin() as conn:
            return await conn.run_sync(fn)

    async def scrub(self, tables: Sequence[str]) -> None:
        """Make deleted rows unreadable where the engine allows it, after an erasure.

        SQLite: the write-ahead log still holds the old page images, so it is checkpointed
        into the (secure-delete) main file and truncated. PostgreSQL: the tables are vacuumed
        in the background, outside a transaction; a plain VACUUM does not lock out readers or
        writers. It marks dead tuples free for reuse, it does not zero them on disk, and WAL
        segments and backups keep the old data until they rotate."""
        if self.sync_writer is not None:
            await self._checkpoint(self.sync_writer)
            return
        names = ", ".join(_quoted(name) for name in tables)
        task = asyncio.create_task(self._vacuum(names), name="vacuum-after-erasure")
        self._chores.add(task)
        task.add_done_callback(self._chores.discard)

    async def _checkpoint(self, engine: Engine) -> None:
        """Checkpoint the WAL and truncate it; readers in the middle of a read hold it back,
        so it is tried again (never waiting inside the event loop: no busy handler)."""
        wait = 0 if self.shared else BUSY_TIMEOUT_MS
        deadline = time.monotonic() + CHECKPOINT_WAIT
        while True:
            with engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA busy_timeout=0")
                try:
                    row = conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").first()
                except OperationalError as exc:
                    if not _is_busy(exc):
                        raise
                    row = None
                finally:
                    conn.exec_driver_sql(f"PRAGMA busy_timeout={wait}")
                    conn.commit()
            if row is not None and row[0] == 0:
                return
            if time.monotonic() > deadline:
                log.warning("the write-ahead log could not be truncated after an erasure")
                return
            await asyncio.sleep(0.02)

    async def _vacuum(self, names: str) -> None:
        try:
            async with self.write_engine.connect() as conn:
                auto = await conn.execution_options(isolation_level="AUTOCOMMIT")
                await auto.exec_driver_sql(f"VACUUM {names}")
        except Exception:
            log.warning("VACUUM after an erasure failed", exc_info=True)

    async def run_read(self, fn: Callable[[Connection], R]) -> R:
        """Run `fn` on a read connection."""
        async with self.read_engine.connect() as conn:
            return await conn.run_sync(fn)

    async def read_tx(self, fn: Callable[[Tx], R]) -> R:
        """Run `fn` with the statements (`Tx` and its repositories) on a read connection."""
        return await self.run_read(lambda conn: fn(Tx(conn)))

    async def write_tx(self, fn: Callable[[Tx], R]) -> R:
        """Run `fn` with the statements in one transaction, outside the group-commit writer
        (for chores that must not wait behind webhooks' writes, or that run before it starts)."""
        return await self.run_write(lambda conn: fn(Tx(conn)))

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
        """Close every connection (a VACUUM still running is let finish)."""
        if self._chores:
            await asyncio.wait(list(self._chores), timeout=30)
        await self.write_engine.dispose()
        if self.read_engine is not self.write_engine:
            await self.read_engine.dispose()
        if self.sync_writer is not None:
            self.sync_writer.dispose()


def _quoted(name: str) -> str:
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
        msg = f"not a table name: {name!r}"
        raise ValueError(msg)
    return f'"{name}"'


def _no_busy_wait(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA busy_timeout=0")
    cursor.close()


def _is_busy(exc: OperationalError) -> bool:
    text = str(exc.orig).lower()
    return "locked" in text or "busy" in text


def _config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def _upgrade(connection: Connection, revision: str = "head") -> None:
    command.upgrade(_config(connection), revision)


def _downgrade(connection: Connection, revision: str) -> None:
    command.downgrade(_config(connection), revision)


def _schema_state(connection: Connection) -> SchemaState:
    script = ScriptDirectory.from_config(_config())
    head = script.get_current_head()
    if head is None:
        msg = "no migrations found"
        raise RuntimeError(msg)
    # walk_revisions goes from the head down; the history is one line, no branches.
    order = [r.revision for r in reversed(list(script.walk_revisions()))]
    current = MigrationContext.configure(connection).get_current_revision()
    if current is None:
        return SchemaState(None, head, tuple(order), True)
    if current not in order:
        return SchemaState(current, head, (), False)
    return SchemaState(current, head, tuple(order[order.index(current) + 1 :]), True)
