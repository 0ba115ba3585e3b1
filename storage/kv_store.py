"""Small durable values (kv, early delivery statuses) and served media files."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, select, update

from storage.records import (
    TxBase,
)
from storage.tables import (
    crypto_state,
    kv,
    media_files,
)


class ValueQueries(TxBase):
    """Key-value and media statements of `Tx`."""

    # -- early statuses: a platform may report on a message before the bridge has recorded
    # the id it answered the send with (WhatsApp's `sent` webhook races the send's answer).

    def keep_early_status(self, key: str, value: str) -> None:
        """Remember a status for an external id the bridge does not know yet."""
        self.kv_put(key, value)

    def kv_put(self, key: str, value: str) -> None:
        """Store a value under a key, replacing what was there."""
        self.conn.execute(delete(kv).where(kv.c.key == key))
        self.conn.execute(kv.insert().values(key=key, value=value))

    def take_early_statuses(self, keys: Sequence[str]) -> dict[str, str]:
        """Statuses kept for these keys, removed as they are taken."""
        if not keys:
            return {}
        found = {
            row.key: row.value
            for row in self.conn.execute(select(kv).where(kv.c.key.in_(list(keys))))
        }
        if found:
            self.conn.execute(delete(kv).where(kv.c.key.in_(list(found))))
        return found

    # -- small durable values -------------------------------------------------------------

    def kv_get(self, key: str) -> str | None:
        """A stored value."""
        return self.conn.execute(select(kv.c.value).where(kv.c.key == key)).scalar()

    def kv_put_new(self, key: str, value: str) -> str:
        """Store a value unless the key has one; return the value that is stored."""
        current = self.kv_get(key)
        if current is not None:
            return current
        self.conn.execute(kv.insert().values(key=key, value=value))
        return value

    # -- end-to-end encryption state ------------------------------------------------------

    def crypto_get(self, name: str) -> bytes | None:
        """A surface's stored encryption state."""
        data = self.conn.execute(
            select(crypto_state.c.data).where(crypto_state.c.name == name)
        ).scalar()
        return bytes(data) if data is not None else None

    def crypto_put(self, name: str, data: bytes, now: float) -> None:
        """Store a surface's encryption state, replacing the old one."""
        changed = self.conn.execute(
            update(crypto_state)
            .where(crypto_state.c.name == name)
            .values(data=data, updated_at=now)
        ).rowcount
        if not changed:
            self.conn.execute(crypto_state.insert().values(name=name, data=data, updated_at=now))

    # -- media files ----------------------------------------------------------------------

    def put_media(self, filename: str, mime_type: str, data: bytes, now: float, ttl: float) -> int:
        """Store a file to serve; expired files are dropped on the way."""
        self.conn.execute(delete(media_files).where(media_files.c.expires_at < now))
        result = self.conn.execute(
            media_files.insert()
            .values(
                filename=filename,
                mime_type=mime_type,
                data=data,
                created_at=now,
                expires_at=now + ttl,
            )
            .returning(media_files.c.id)
        )
        return int(result.scalar_one())

    def media(self, media_id: int) -> tuple[str, str, bytes, float] | None:
        """A stored file: name, type, bytes and expiry."""
        row = self.conn.execute(
            select(
                media_files.c.filename,
                media_files.c.mime_type,
                media_files.c.data,
                media_files.c.expires_at,
            ).where(media_files.c.id == media_id)
        ).first()
        return (row[0], row[1], bytes(row[2]), float(row[3])) if row is not None else None
