"""Which process runs the loops that must run once: Slack Socket Mode, Telegram long polling
and the Matrix /sync loop.

With SQLite there is one process, and it runs them. With PostgreSQL any number of processes may
serve the same bridge; one of them holds a session-level advisory lock on a connection of its
own and runs the loops. When that process dies its connection closes, PostgreSQL releases the
lock, and the next process that asks for it (every `interval` seconds) takes the loops over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import asyncpg

from storage.db import asyncpg_dsn

log = logging.getLogger(__name__)

# The advisory lock's key: any 64-bit number, the same in every process of one bridge.
LOCK_KEY = 0x6272696467650001
INTERVAL = 2.0


class Leadership:
    """Runs `lead` while this process holds the lock, `follow` when it loses it."""

    def __init__(
        self,
        url: str,
        lead: Callable[[], Awaitable[None]],
        follow: Callable[[], Awaitable[None]],
        *,
        key: int = LOCK_KEY,
        interval: float = INTERVAL,
    ) -> None:
        self._dsn = asyncpg_dsn(url)
        self._lead, self._follow = lead, follow
        self._key, self._interval = key, interval
        self.leading = False
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start asking for the lock (in the background)."""
        self._task = asyncio.create_task(self._run(), name="leadership")

    async def stop(self) -> None:
        """Stop the loops if this process runs them, and let the lock go."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(self._dsn, timeout=10)
                while not await conn.fetchval("SELECT pg_try_advisory_lock($1)", self._key):
                    await asyncio.sleep(self._interval)
                log.info("this process runs the polling loops now")
                self.leading = True
                await self._lead()
                # Held as long as the connection lives: look at it now and then.
                while True:
                    await asyncio.sleep(self._interval)
                    await conn.fetchval("SELECT 1", timeout=self._interval * 2)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("leadership: %s; asking again in %gs", exc, self._interval)
            finally:
                if self.leading:
                    self.leading = False
                    try:
                        await asyncio.shield(self._follow())
                    except Exception:
                        log.exception("stopping the polling loops failed")
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.shield(conn.close(timeout=5))
            await asyncio.sleep(self._interval)
