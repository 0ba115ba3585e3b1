"""`/apikey`: keys for the REST API. A key is shown once, only to whoever created it; the bridge
keeps its SHA-256 and a prefix to tell keys apart, never the key."""

from __future__ import annotations

from datetime import UTC, datetime

from bridge.services import keys
from bridge.services.keys import NAME, ROLES
from bridge.staffio import Reply
from commands.base import Context, NotFound, Role, command
from storage.api_keys import ApiKeyRecord

apikey = command("apikey", "Keys for the REST API: create, list and revoke them (admin)")


def _when(value: datetime | None) -> str:
    return f"{value.astimezone(UTC):%Y-%m-%d %H:%M} UTC" if value is not None else "never"


def _line(key: ApiKeyRecord) -> str:
    state = f"revoked {_when(key.revoked_at)}" if key.revoked_at else "active"
    return (
        f"`#{key.id}` *{key.name}* ({key.role}) `{key.prefix}…`: {state}; created"
        f" {_when(key.created_at)} by {key.created_by}, last used {_when(key.last_used_at)}"
    )


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
    if NAME.fullmatch(name) is None:
        raise ctx.usage(f"{name} is not a key name: 1-64 letters, digits, ., - or _")
    if role not in ROLES:
        raise ctx.usage(f"{args[1]} is not a role for a key; choose one of {', '.join(ROLES)}")
    key, record = await keys.create_key(ctx.services, name, role, ctx.who, ctx.now)
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
    every = await keys.list_keys(ctx.services)
    if not every:
        return Reply(
            title="No API keys yet.", lines=("Create one with `/apikey create crm agent`.",)
        )
    active = sum(1 for k in every if k.revoked_at is None)
    return Reply(
        title=f"{len(every)} API key{'s' if len(every) != 1 else ''}, {active} active",
        lines=tuple(_line(k) for k in every),
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
    found = await keys.keys_named(ctx.services, word)
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
    await keys.revoke_key(ctx.services, key.id, ctx.now)
    return Reply(title=f"API key #{key.id} {key.name} revoked: requests with it are refused.")
