"""Small values the bridge's parts keep across restarts, in the database's key-value table."""

from __future__ import annotations

import time

from storage import Database


class KvState:
    """A `StateStore` (and `SecretStateStore`) on the database: each put is committed before it
    returns."""

    def __init__(self, db: Database, prefix: str) -> None:
        self._db = db
        self._prefix = prefix

    async def get(self, key: str) -> str | None:
        """The stored value, or None."""
        name = self._prefix + key
        return await self._db.read_tx(lambda tx: tx.kv_get(name))

    async def put(self, key: str, value: str) -> None:
        """Store a value, replacing the old one."""
        name = self._prefix + key
        await self._db.write_tx(lambda tx: tx.kv_put(name, value))

    async def load_secret(self, name: str) -> bytes | None:
        """A stored encryption state, or None."""
        key = self._prefix + name
        return await self._db.read_tx(lambda tx: tx.crypto_get(key))

    async def save_secret(self, name: str, data: bytes) -> None:
        """Store an encryption state, replacing the old one."""
        key = self._prefix + name
        now = time.time()
        await self._db.write_tx(lambda tx: tx.crypto_put(key, data, now))
