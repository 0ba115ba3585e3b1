"""API keys: create, list, find and revoke them. A key is shown once; the bridge keeps its
SHA-256 and a prefix to tell keys apart, never the key."""

from __future__ import annotations

import re
from datetime import datetime

from bridge.errors import Conflict, NotFound, Refused
from bridge.services import Services
from storage import Tx
from storage.api_keys import ApiKeyRecord, new_key

ROLES = ("admin", "manager", "agent")
NAME_PATTERN = r"[A-Za-z0-9_.-]{1,64}"
NAME = re.compile(NAME_PATTERN)


async def create_key(
    services: Services, name: str, role: str, by: str, now: datetime
) -> tuple[str, ApiKeyRecord]:
    """A new key for the API: the key itself (to show once) and what is stored of it."""
    if NAME.fullmatch(name) is None:
        msg = f"{name} is not a key name: 1-64 letters, digits, ., - or _"
        raise Refused(msg)
    if role not in ROLES:
        raise Refused(f"{role} is not a role for a key; choose one of {', '.join(ROLES)}")
    key = new_key()

    def write(tx: Tx) -> ApiKeyRecord:
        existing = tx.api_keys.list_keys()
        active = [k for k in existing if k.name == name and k.revoked_at is None]
        if active:
            raise Conflict(f"There is an active key named {name} already (#{active[0].id}).")
        return tx.api_keys.create_key(key=key, name=name, role=role, by=by[:128], at=now)

    record = await services.write(write)
    return key, record


async def revoke_key(services: Services, key_id: int, now: datetime) -> ApiKeyRecord:
    """Revoke a key for good (again is no error); the key as it is now."""

    def write(tx: Tx) -> ApiKeyRecord | None:
        tx.api_keys.revoke_key(key_id, now)
        return tx.api_keys.key_by_id(key_id)

    found = await services.write(write)
    if found is None:
        raise NotFound(f"There is no API key #{key_id}.")
    return found


async def list_keys(
    services: Services, *, after: int | None = None, limit: int | None = None
) -> list[ApiKeyRecord]:
    """Every key, revoked ones too, by id (from after `after`, at most `limit`)."""
    return await services.read(lambda tx: tx.api_keys.list_keys(after=after, limit=limit))


async def keys_named(services: Services, word: str) -> list[ApiKeyRecord]:
    """The keys whose `#id` or prefix is `word`."""
    return await services.read(lambda tx: tx.api_keys.keys_named(word))
