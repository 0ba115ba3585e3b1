"""The blacklist: list, add and remove entries (the `/blacklist` command's logic)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import Field, model_validator

from bridge.api.errors import not_found
from bridge.api.framework import ORIGIN, Call, Resource
from bridge.api.paging import Page, PageQuery
from bridge.api.schemas import ID_MAX, Body, Record, Time
from bridge.services import blacklist as blacklist_service
from bridge.services import contacts
from bridge.services.blacklist import (
    REASON_MAX,
    Caller,
    Terms,
    check_until,
    in_force,
    parse_duration,
)
from bridge.types import ContactId, Role
from storage import ContactRecord
from storage.subscriptions import BlockRecord

resource = Resource(
    "Blacklist",
    "Blocked contacts: inbound (kept, not shown, no rule fires), outbound (nothing is sent) or"
    " both; permanently or until a time.",
)

Direction = Literal["in", "out", "both"]


class Block(Record):
    """A blacklist entry in force."""

    contact_id: int
    display_name: str
    platform: str
    direction: Direction
    until: datetime | None = Field(description="When it lifts itself; null: permanent.")
    reason: str | None
    created_by: str
    created_at: datetime


class BlockPage(Page):
    """A page of entries in force, by contact id."""

    items: list[Block]


class BlockAdd(Body):
    """A block, as `/blacklist add` takes it (it replaces the contact's earlier entry)."""

    contact_id: int = Field(ge=1, le=ID_MAX)
    direction: Direction = "both"
    until: Time | None = Field(
        None, description="When it ends (ISO 8601; UTC unless it says); at most 10 years away."
    )
    duration: str | None = Field(
        None,
        pattern=r"^\d{1,7}[mhdw]$",
        description="How long it lasts instead of `until`: 30m, 12h, 7d, 2w.",
    )
    reason: str | None = Field(None, min_length=1, max_length=REASON_MAX)

    @model_validator(mode="after")
    def _one_end(self) -> BlockAdd:
        if self.until is not None and self.duration is not None:
            msg = "give until or duration, not both"
            raise ValueError(msg)
        return self


def _block(entry: BlockRecord, platform: str, name: str) -> Block:
    direction: Direction = (
        "in" if entry.direction == "in" else "out" if entry.direction == "out" else "both"
    )
    return Block(
        contact_id=entry.contact_id,
        display_name=name,
        platform=platform,
        direction=direction,
        until=entry.until,
        reason=entry.reason,
        created_by=entry.created_by,
        created_at=entry.created_at,
    )


async def _in_force(call: Call) -> list[tuple[BlockRecord, str, str]]:
    now = call.now
    # A write: reading the list also drops the entries that expired (as /blacklist list does).
    entries = await in_force(call.services, now)
    return sorted(entries, key=lambda e: int(e[0].contact_id))


def _caller(call: Call) -> Caller:
    return Caller(call.who, call.now, ORIGIN)


async def _contact(call: Call, contact_id: int) -> ContactRecord:
    found = await contacts.contact(call.services, ContactId(contact_id))
    if found is None:
        raise not_found(f"there is no contact {contact_id}")
    return found


@resource.get(
    "/blacklist",
    summary="List the blacklist",
    role=Role.AGENT,
    query=PageQuery,
    response=BlockPage,
)
async def list_blocks(call: Call) -> BlockPage:
    """The entries in force, by contact id (expired ones lift themselves)."""
    after, limit = call.after(), call.limit
    rows = [e for e in await _in_force(call) if after is None or e[0].contact_id > after]
    return call.page(
        BlockPage,
        rows[: limit + 1],
        key=lambda e: int(e[0].contact_id),
        item=lambda e: _block(*e),
    )


@resource.post(
    "/blacklist",
    summary="Block a contact",
    role=Role.MANAGER,
    body=BlockAdd,
    response=Block,
    status=201,
)
async def add_block(call: Call) -> Block:
    """As `/blacklist add`: both directions and permanent unless said otherwise; the contact's
    open thread is told and its card shows the block."""
    body = call.body(BlockAdd)
    contact = await _contact(call, body.contact_id)
    until = None
    if body.duration is not None:
        with call.field("duration"):
            until = call.now + parse_duration(body.duration)
    elif body.until is not None:
        moment = body.until if body.until.tzinfo else body.until.replace(tzinfo=UTC)
        with call.field("until"):
            until = check_until(moment.astimezone(UTC), call.now)
    terms = Terms(body.direction, until, body.reason.strip() if body.reason else None)
    await blacklist_service.put_on(call.services, contact, terms, _caller(call))
    for entry, platform, name in await _in_force(call):
        if entry.contact_id == contact.id:
            return _block(entry, platform, name)
    raise not_found(f"contact {contact.id} is not on the blacklist")


@resource.delete(
    "/blacklist/{contact_id}",
    summary="Take a contact off the blacklist",
    role=Role.MANAGER,
    status=204,
)
async def remove_block(call: Call) -> None:
    """As `/blacklist remove`; 404 when the contact is not on it."""
    contact = await _contact(call, call.id("contact_id"))
    await blacklist_service.take_off(call.services, contact, _caller(call))
