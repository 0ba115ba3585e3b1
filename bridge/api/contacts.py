"""Contacts: list and search, show, change, export, forget (the `/contact` command's logic)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import ConfigDict, Field

from bridge.api.errors import ApiError, not_found
from bridge.api.framework import Call, Resource
from bridge.api.paging import Page, PageQuery
from bridge.api.schemas import ID_MAX, Body, Record
from bridge.config_sections import PlatformName
from bridge.services import contacts
from bridge.services.contacts import NAME_MAX
from bridge.services.roles import staff_id
from bridge.types import ContactId, Role
from storage.contacts_admin import ContactDetails, ContactLine, ErasureCounts

resource = Resource("Contacts", "Customers on every messenger, as `/contact` shows them.")

Platform = PlatformName


class ContactSummary(Record):
    """A contact as lists show it."""

    id: int
    platform: str
    account: str
    chat_id: str = Field(description="The platform's address: a number (WhatsApp, SMS) or id.")
    display_name: str
    username: str | None
    last_seen: datetime | None


class ContactPage(Page):
    """A page of contacts, by id."""

    items: list[ContactSummary]


class ContactQuery(PageQuery):
    """Filters of the contact list."""

    q: str | None = Field(
        None,
        min_length=1,
        max_length=256,
        description="Part of the name or @username, or digits of the number / chat id.",
    )
    platform: Platform | None = Field(None, description="Only contacts on this messenger.")
    channel: int | None = Field(
        None, ge=1, le=ID_MAX, description="Only current members of the channel with this id."
    )


class Membership(Record):
    """A contact's subscription to a channel (left ones too)."""

    channel: str
    source: str = Field(description="How they joined: a keyword, a deep link, by hand, …")
    joined_at: datetime
    left_at: datetime | None


class BlockState(Record):
    """A blacklist entry in force."""

    direction: Literal["in", "out", "both"]
    until: datetime | None = Field(description="null: permanent.")
    reason: str | None
    created_by: str
    created_at: datetime


class Contact(Record):
    """Everything `/contact show` shows."""

    id: int
    platform: str
    account: str
    chat_id: str
    display_name: str
    username: str | None
    language: str | None
    first_seen: datetime
    last_seen: datetime
    message_count: int
    opt_in_source: str | None
    opt_in_at: datetime | None
    opted_out_at: datetime | None = Field(description="Set while the contact has opted out.")
    opt_out_source: str | None
    note: str | None = Field(description="The team's note.")
    remark: str | None = Field(description="The remark for CRMs.")
    assigned_to: str | None = Field(description="The staff member assigned (Slack or Matrix id).")
    open_conversation_id: int | None
    channels: list[Membership]
    blacklist: BlockState | None


class ContactPatch(Body):
    """The staff fields to change; a field left out stays as it is, null clears it."""

    display_name: str | None = Field(None, min_length=1, max_length=NAME_MAX)
    note: str | None = Field(None, max_length=10_000)
    remark: str | None = Field(None, max_length=10_000)
    assigned_to: str | None = Field(
        None,
        max_length=128,
        description="A Slack user id (U…) or a Matrix id (@user:server); null: nobody.",
    )


class ContactExport(Record):
    """Everything held about a contact, as `/contact export` hands it out."""

    # Whatever the export holds goes out, also what a later version adds to it.
    model_config = ConfigDict(extra="allow", json_schema_serialization_defaults_required=True)

    exported_at: str
    exported_by: str
    contact: dict[str, Any]
    conversations: list[dict[str, Any]]
    messages: list[dict[str, Any]]
    channel_memberships: list[dict[str, Any]]
    blacklist: dict[str, Any] | None
    broadcasts: list[dict[str, Any]]
    link_clicks: list[dict[str, Any]]


class Erasure(Record):
    """What erasing a contact removed."""

    contact_id: int
    conversations: int
    messages: int
    threads: int = Field(description="Staff threads, each left with a tombstone.")
    staff_refs: int
    memberships: int
    blacklisted: int
    outbox: int = Field(description="Queued or finished deliveries (nothing more is sent).")


def summary(line: ContactLine) -> ContactSummary:
    """The list form of a contact."""
    return ContactSummary(
        id=line.id,
        platform=line.platform,
        account=line.account,
        chat_id=line.chat_id,
        display_name=line.display_name,
        username=line.username,
        last_seen=line.last_seen,
    )


async def load(call: Call, contact_id: int) -> Contact:
    """A contact as `GET /contacts/{contact_id}` shows it, or 404."""
    shown = await contacts.card(call.services, ContactId(contact_id))
    details, channels, entry = shown.details, shown.channels, shown.block
    if details is None:
        raise not_found(f"there is no contact {contact_id}")
    block = None
    if entry is not None and (entry.until is None or entry.until > call.now):
        direction: Literal["in", "out", "both"] = (
            "in" if entry.direction == "in" else "out" if entry.direction == "out" else "both"
        )
        block = BlockState(
            direction=direction,
            until=entry.until,
            reason=entry.reason,
            created_by=entry.created_by,
            created_at=entry.created_at,
        )
    return _contact(details, channels, block)


def _contact(
    d: ContactDetails,
    channels: list[tuple[str, str, datetime, datetime | None]],
    block: BlockState | None,
) -> Contact:
    return Contact(
        id=d.id,
        platform=d.platform,
        account=d.account,
        chat_id=d.chat_id,
        display_name=d.display_name,
        username=d.username,
        language=d.language,
        first_seen=d.first_seen,
        last_seen=d.last_seen,
        message_count=d.message_count,
        opt_in_source=d.opt_in_source,
        opt_in_at=d.opt_in_at,
        opted_out_at=d.opted_out_at,
        opt_out_source=d.opt_out_source,
        note=d.note,
        remark=d.remark,
        assigned_to=d.assigned_to,
        open_conversation_id=d.open_conversation,
        channels=[
            Membership(channel=name, source=source, joined_at=joined, left_at=left)
            for name, source, joined, left in channels
        ],
        blacklist=block,
    )


@resource.get(
    "/contacts",
    summary="List contacts, optionally searched and filtered",
    role=Role.AGENT,
    query=ContactQuery,
    response=ContactPage,
)
async def list_contacts(call: Call) -> ContactPage:
    """By id, oldest first; `q` searches as `/contact find` does."""
    query = call.query(ContactQuery)
    after = call.after()
    rows = await contacts.page(
        call.services,
        text=query.q,
        platform=query.platform,
        channel_id=query.channel,
        after=after,
        limit=query.limit + 1,
    )
    return call.page(ContactPage, rows, key=lambda c: int(c.id), item=summary)


@resource.get(
    "/contacts/{contact_id}",
    summary="Show a contact",
    role=Role.AGENT,
    response=Contact,
)
async def show_contact(call: Call) -> Contact:
    """The card of `/contact show`: ids, opt-in, channels, blacklist, notes."""
    return await load(call, call.id("contact_id"))


@resource.patch(
    "/contacts/{contact_id}",
    summary="Change a contact's name, note, remark or assignee",
    role=Role.MANAGER,
    body=ContactPatch,
    response=Contact,
)
async def change_contact(call: Call) -> Contact:
    """As `/contact name`, `note`, `remark` and `!assign` do; the open thread's card follows."""
    contact_id = call.id("contact_id")
    body = call.body(ContactPatch)
    given = body.model_fields_set
    if not given:
        problem = "say what to change: display_name, note, remark or assigned_to"
        raise ApiError(422, "invalid", problem, field="body")
    values: dict[str, str | None] = {}
    if "display_name" in given:
        name = (body.display_name or "").strip()
        if not name:
            raise ApiError(422, "invalid", "a name may not be empty", field="display_name")
        values["display_name"] = name
    for text_field in ("note", "remark"):
        if text_field in given:
            value = getattr(body, text_field)
            values[text_field] = (value.strip() or None) if value is not None else None
    if "assigned_to" in given:
        values["assigned_to"] = _assignee(call, body.assigned_to)
    await contacts.change_contact(call.services, ContactId(contact_id), **values)
    return await load(call, contact_id)


def _assignee(call: Call, typed: str | None) -> str | None:
    """A staff member's id as `!assign` takes it (a key is nobody: `me` means no one here)."""
    if typed is None or not typed.strip():
        return None
    if typed.strip().lower() in ("me", "myself"):
        raise ApiError(422, "invalid", "an API key is not a staff member", field="assigned_to")
    with call.field("assigned_to"):
        # Never "me" here (refused above), so the caller's own id is not needed.
        return staff_id(typed.strip(), "")


@resource.get(
    "/contacts/{contact_id}/export",
    summary="Export everything held about a contact",
    role=Role.AGENT,
    response=ContactExport,
)
async def export_contact(call: Call) -> ContactExport:
    """The document of `/contact export` (for a data request)."""
    document = await contacts.export_document(
        call.services, ContactId(call.id("contact_id")), call.who, call.now
    )
    return ContactExport.model_validate(document)


@resource.delete(
    "/contacts/{contact_id}",
    summary="Erase a contact and everything stored about them",
    role=Role.ADMIN,
    response=Erasure,
)
async def forget_contact(call: Call) -> Erasure:
    """As `/contact forget --confirm`: every table, the outbox included; each of their staff
    threads keeps a tombstone. It cannot be undone."""
    contact_id = call.id("contact_id")
    counts: ErasureCounts = await contacts.forget_contact(
        call.services, ContactId(contact_id), call.who, call.now
    )
    return Erasure(
        contact_id=contact_id,
        conversations=counts.conversations,
        messages=counts.messages,
        threads=counts.threads,
        staff_refs=counts.staff_refs,
        memberships=counts.memberships,
        blacklisted=counts.blacklisted,
        outbox=counts.outbox,
    )
