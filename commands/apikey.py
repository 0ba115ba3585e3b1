"""`/apikey`: keys for the REST API. A key is shown once, only to whoever created it; the bridge
keeps its SHA-256 and a prefix to tell keys apart, never the key."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy.engine import Connection

from bridge.staffio import Reply
from commands.base import CommandError, Conflict, Context, NotFound, Role, command
from storage import api_keys
from storage.api_keys import ApiKeyRecord

if TYPE_CHECKING:
    from commands.services import Services

apikey = command("apikey", "Keys for the REST API: create, list and revoke them (admin)")

ROLES = ("admin", "manager", "agent")
NAME_PATTERN = r"[A-Za-z0-9_.-]{1,64}"
_NAME = re.compile(NAME_PATTERN)


def _when(value: datetime | None) -> str:
    return f"{value.astimezone(UTC):%Y-%m-%d %H:%M} UTC" if value is not None else "never"


def _line(key: ApiKeyRecord) -> str:
    state = f"revoked {_when(key.revoked_at)}" if key.revoked_at else "active"
    return (
        f"`#{key.id}` *{key.name}* ({key.role}) `{key.prefix}…`: {state}; created"
        f" {_when(key.created_at)} by {key.created_by}, last used {_when(key.last_used_at)}"
    )


async def create_key(
    services: Services, name: str, role: str, by: str, now: datetime
) -> tuple[str, ApiKeyRecord]:
    """A new key for the API: the key itself (to show once) and what is stored of it."""
    if _NAME.fullmatch(name) is None:
        msg = f"{name} is not a key name: 1-64 letters, digits, ., - or _"
        raise CommandError(msg)
    if role not in ROLES:
        raise CommandError(f"{role} is not a role for a key; choose one of {', '.join(ROLES)}")
    key = api_keys.new_key()

    def write(tx: Connection) -> ApiKeyRecord:
        active = [k for k in api_keys.list_keys(tx) if k.name == name and k.revoked_at is None]
        if active:
            raise Conflict(f"There is an active key named {name} already (#{active[0].id}).")
        return api_keys.create_key(tx, key=key, name=name, role=role, by=by[:128], at=now)

    record = await services.write(lambda tx: write(tx.conn))
    return key, record


async def revoke_key(services: Services, key_id: int, now: datetime) -> ApiKeyRecord:
    """Revoke a key for good (again is no error); the key as it is now."""

    def write(tx: Connection) -> ApiKeyRecord | None:
        api_keys.revoke_key(tx, key_id, now)
        return api_keys.key_by_id(tx, key_id)

    found = await services.write(lambda tx: write(tx.conn))
    if found is None:
        raise NotFound(f"There is no API key #{key_id}.")
    return found


@apikey.sub(
    "create",
    usage="<name> <admin|manager|agent>",
    summary="a new key with a role; shown once, only to you (the bridge keeps only its hash)",
    example="/apikey create crm agent",
    role=Role.ADMIN,
    private=True,  # the answer holds the key
)
async def _create(ctx: Context, args: list[str]) -> Reply:
    ctx.need(args, 2)
    if len(args) > 2:
        raise ctx.usage(f"too many arguments: {' '.join(args[2:])}")
    name, role = args[0], args[1].lower()
    if _NAME.fullmatch(name) is None:
        raise ctx.usage(f"{name} is not a key name: 1-64 letters, digits, ., - or _")
    if role not in ROLES:
        raise ctx.usage(f"{args[1]} is not a role for a key; choose one of {', '.join(ROLES)}")
    key, record = await create_key(ctx.services, name, role, ctx.who, ctx.now)
    base = (ctx.services.settings.bridge.public_url or "").rstrip("/")
    return Reply(
        title=f"API key #{record.id} {name} created ({role})",
        lines=(
            f"`{key}`",
            "This is the only time the key is shown: store it now. The bridge keeps only its"
            " hash and cannot show it again.",
            f"Send it as `Authorization: Bearer <key>`; `{base}/api/v1/openapi.json` describes"
            f" the API. `/apikey revoke {record.prefix}` ends the key.",
        ),
        private=True,
    )


@apikey.sub(
    "list",
    summary="every key with its role, prefix, creator and last use (revoked ones too)",
    example="/apikey list",
    role=Role.ADMIN,
)
async def _list(ctx: Context, args: list[str]) -> Reply:
    if args:
        raise ctx.usage(f"list takes no arguments (got {' '.join(args)})")
    keys = await ctx.services.read(lambda conn: api_keys.list_keys(conn))
    if not keys:
        return Reply(
            title="No API keys yet.", lines=("Create one with `/apikey create crm agent`.",)
        )
    active = sum(1 for k in keys if k.revoked_at is None)
    return Reply(
        title=f"{len(keys)} API key{'s' if len(keys) != 1 else ''}, {active} active",
        lines=tuple(_line(k) for k in keys),
    )


@apikey.sub(
    "revoke",
    usage="<#id | prefix>",
    summary="end a key at once: requests with it are refused from now on",
    example="/apikey revoke sbk_Ab12Cd34",
    role=Role.ADMIN,
)
async def _revoke(ctx: Context, args: list[str]) -> Reply:
    ctx.need(args, 1)
    if len(args) > 1:
        raise ctx.usage("one key at a time")
    word = args[0]
    found = await ctx.services.read(lambda conn: api_keys.keys_named(conn, word))
    if not found:
        raise NotFound(f"No API key has the id or prefix {word}. `/apikey list` shows them.")
    if len(found) > 1:
        return Reply(
            ok=False,
            title=f"{word} names {len(found)} keys; use the #id",
            lines=tuple(_line(k) for k in found),
        )
    [key] = found
    if key.revoked_at is not None:
        return Reply(title=f"API key #{key.id} {key.name} was revoked already.")
    await revoke_key(ctx.services, key.id, ctx.now)
    return Reply(title=f"API key #{key.id} {key.name} revoked: requests with it are refused.")
