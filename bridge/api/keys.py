"""API keys: the calling key itself, and (admin) list, create and revoke keys, as `/apikey`."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from bridge.api.errors import ApiError
from bridge.api.framework import Call, Resource
from bridge.api.paging import Page, PageQuery
from bridge.api.schemas import Body, Record
from bridge.services import keys
from bridge.services.keys import NAME_PATTERN
from bridge.types import Role
from storage.api_keys import ApiKeyRecord

resource = Resource("API keys", "Keys for this API; each has a role like a staff member.")

KeyRole = Literal["admin", "manager", "agent"]


class ApiKey(Record):
    """A key as the bridge knows it (never the key itself)."""

    id: int
    name: str
    role: KeyRole
    prefix: str = Field(description="The key's first characters, to tell keys apart.")
    created_by: str
    created_at: datetime
    last_used_at: datetime | None = Field(description="Updated at most once a minute.")
    revoked_at: datetime | None


class ApiKeyPage(Page):
    """A page of keys, by id (revoked ones too)."""

    items: list[ApiKey]


class ApiKeyCreate(Body):
    """A new key."""

    name: str = Field(pattern=f"^{NAME_PATTERN}$", examples=["crm"])
    role: KeyRole


class ApiKeyCreated(Record):
    """A new key: `key` is shown this once (only its hash is kept)."""

    key: str = Field(description="Send it as `Authorization: Bearer <key>`; store it now.")
    api_key: ApiKey


def _key(record: ApiKeyRecord) -> ApiKey:
    role: KeyRole = (
        "admin" if record.role == "admin" else "manager" if record.role == "manager" else "agent"
    )
    return ApiKey(
        id=record.id,
        name=record.name,
        role=role,
        prefix=record.prefix,
        created_by=record.created_by,
        created_at=record.created_at,
        last_used_at=record.last_used_at,
        revoked_at=record.revoked_at,
    )


@resource.get("/me", summary="The key this request is made with", role=Role.AGENT, response=ApiKey)
async def show_me(call: Call) -> ApiKey:
    """A cheap way to check a key and see its role."""
    if call.key is None:
        raise ApiError(401, "unauthorized", "no API key")
    return _key(call.key)


@resource.get(
    "/api-keys",
    summary="List API keys",
    role=Role.ADMIN,
    query=PageQuery,
    response=ApiKeyPage,
)
async def list_keys(call: Call) -> ApiKeyPage:
    """Every key, revoked ones included, as `/apikey list`."""
    after, limit = call.after(), call.limit
    rows = await keys.list_keys(call.services, after=after, limit=limit + 1)
    return call.page(ApiKeyPage, rows, key=lambda k: k.id, item=_key)


@resource.post(
    "/api-keys",
    summary="Create an API key",
    role=Role.ADMIN,
    body=ApiKeyCreate,
    response=ApiKeyCreated,
    status=201,
    errors=(409,),
)
async def create_key(call: Call) -> ApiKeyCreated:
    """As `/apikey create`; the answer is the only place the key appears. 409 when an active
    key has the name."""
    body = call.body(ApiKeyCreate)
    key, record = await keys.create_key(call.services, body.name, body.role, call.who, call.now)
    return ApiKeyCreated(key=key, api_key=_key(record))


@resource.delete(
    "/api-keys/{key_id}",
    summary="Revoke an API key",
    role=Role.ADMIN,
    response=ApiKey,
)
async def revoke_key(call: Call) -> ApiKey:
    """As `/apikey revoke`: requests with it are refused (401) from now on."""
    record = await keys.revoke_key(call.services, call.id("key_id"), call.now)
    return _key(record)
