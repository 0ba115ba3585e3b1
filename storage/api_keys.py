"""REST API keys (only their SHA-256 is stored) and the answers kept per idempotency key."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select, update

from storage.records import Repository
from storage.tables import api_keys, api_requests

KEY_PREFIX = "sbk_"
# What lists show to tell keys apart: "sbk_" and the first 8 characters of the secret part.
PREFIX_LENGTH = len(KEY_PREFIX) + 8


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    """An API key as the bridge knows it: never the key itself."""

    id: int
    name: str
    role: str
    prefix: str
    created_by: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True, slots=True)
class KeptAnswer:
    """The answer given to a request that carried an Idempotency-Key."""

    method: str
    path: str
    fingerprint: str
    status: int
    body: str
    created_at: datetime


def hash_key(key: str) -> str:
    """The SHA-256 (hex) under which a key is stored and looked up."""
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    """A fresh key: the `sbk_` marker and 256 random bits, URL-safe."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def _record(row: object) -> ApiKeyRecord:
    m = row._mapping  # type: ignore[attr-defined]
    return ApiKeyRecord(
        id=int(m["id"]),
        name=m["name"],
        role=m["role"],
        prefix=m["prefix"],
        created_by=m["created_by"],
        created_at=m["created_at"],
        last_used_at=m["last_used_at"],
        revoked_at=m["revoked_at"],
    )


_COLUMNS = (
    api_keys.c.id,
    api_keys.c.name,
    api_keys.c.role,
    api_keys.c.prefix,
    api_keys.c.created_by,
    api_keys.c.created_at,
    api_keys.c.last_used_at,
    api_keys.c.revoked_at,
)


class ApiKeys(Repository):
    """REST API keys and the answers kept per idempotency key."""

    def create_key(self, *, key: str, name: str, role: str, by: str, at: datetime) -> ApiKeyRecord:
        """Store a new key's hash and prefix."""
        new_id = self.conn.execute(
            api_keys.insert()
            .values(
                name=name,
                role=role,
                key_hash=hash_key(key),
                prefix=key[:PREFIX_LENGTH],
                created_by=by,
                created_at=at,
            )
            .returning(api_keys.c.id)
        ).scalar_one()
        found = self.key_by_id(int(new_id))
        assert found is not None
        return found

    def key_by_id(self, key_id: int) -> ApiKeyRecord | None:
        """One key by its id (revoked ones too)."""
        row = self.conn.execute(select(*_COLUMNS).where(api_keys.c.id == key_id)).first()
        return _record(row) if row is not None else None

    def key_by_secret(self, key: str) -> ApiKeyRecord | None:
        """The key a request presents, looked up by its hash (revoked ones too: check)."""
        row = self.conn.execute(
            select(*_COLUMNS).where(api_keys.c.key_hash == hash_key(key))
        ).first()
        return _record(row) if row is not None else None

    def list_keys(
        self, *, after: int | None = None, limit: int | None = None
    ) -> list[ApiKeyRecord]:
        """Keys by id, revoked ones included."""
        query = select(*_COLUMNS).order_by(api_keys.c.id)
        if after is not None:
            query = query.where(api_keys.c.id > after)
        return [_record(r) for r in self.conn.execute(query.limit(limit))]

    def keys_named(self, word: str) -> list[ApiKeyRecord]:
        """Keys `word` may mean: an id (`3`, `#3`) or the start of a prefix (`sbk_Ab12`)."""
        word = word.strip()
        digits = word.removeprefix("#")
        if digits.isdigit() and len(digits) <= 18:
            found = self.key_by_id(int(digits))
            return [found] if found is not None else []
        if len(word) < len(KEY_PREFIX) + 1:
            return []
        rows = self.conn.execute(
            select(*_COLUMNS)
            .where(api_keys.c.prefix.startswith(word[:PREFIX_LENGTH], autoescape=True))
            .order_by(api_keys.c.id)
        )
        return [_record(r) for r in rows]

    def revoke_key(self, key_id: int, at: datetime) -> bool:
        """Revoke a key for good; False when it was revoked already (or is unknown)."""
        result = self.conn.execute(
            update(api_keys)
            .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
            .values(revoked_at=at)
        )
        return bool(result.rowcount)

    def touch_key(self, key_id: int, at: datetime) -> None:
        """Record when a key was last used."""
        self.conn.execute(update(api_keys).where(api_keys.c.id == key_id).values(last_used_at=at))

    # -- answers kept per idempotency key ----------------------------------------------------------

    def kept_answer(self, key_id: int, idem_key: str) -> KeptAnswer | None:
        """The answer kept for a key's Idempotency-Key, if any."""
        r = api_requests.c
        row = self.conn.execute(
            select(r.method, r.path, r.fingerprint, r.status, r.body, r.created_at).where(
                r.api_key_id == key_id, r.idem_key == idem_key
            )
        ).first()
        if row is None:
            return None
        return KeptAnswer(row[0], row[1], row[2], int(row[3]), row[4], row[5])

    def keep_answer(
        self,
        *,
        key_id: int,
        idem_key: str,
        method: str,
        path: str,
        fingerprint: str,
        status: int,
        body: str,
        at: datetime,
    ) -> None:
        """Keep the answer to a request that carried an Idempotency-Key (in its transaction)."""
        self.conn.execute(
            api_requests.insert().values(
                api_key_id=key_id,
                idem_key=idem_key,
                method=method,
                path=path[:512],
                fingerprint=fingerprint,
                status=status,
                body=body,
                created_at=at,
            )
        )

    def forget_answers(self, before: datetime) -> int:
        """Drop answers kept since before `before`; how many went."""
        result = self.conn.execute(delete(api_requests).where(api_requests.c.created_at < before))
        return int(result.rowcount or 0)

    def forget_contact_answers(self, contact_id: int) -> int:
        """Drop kept answers about a contact being erased (a sent message's text, say): those of
        requests to the contact's own resource, `…/contacts/<id>/…`."""
        path = api_requests.c.path
        result = self.conn.execute(
            delete(api_requests).where(
                path.contains(f"/contacts/{contact_id}/", autoescape=True)
                | path.endswith(f"/contacts/{contact_id}", autoescape=True)
            )
        )
        return int(result.rowcount or 0)
