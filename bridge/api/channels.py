"""Subscriber channels and their members (the `/channel` command's logic and consent rules)."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from bridge.api.errors import not_found
from bridge.api.framework import Answer, Call, Resource
from bridge.api.paging import Page, PageQuery
from bridge.api.schemas import ID_MAX, Body, Record
from bridge.config_sections import PlatformName
from bridge.services import channels, contacts
from bridge.services.channels import CONSENT_MAX, KEYWORD_MAX, NAME_PATTERN, keyword_or_none
from bridge.types import ContactId, Role
from storage import ContactRecord
from storage.channels_extra import MemberRecord
from storage.subscriptions import ChannelRecord

resource = Resource(
    "Channels",
    "Subscriber channels customers join and leave by keyword, and their members.",
)

Platform = PlatformName


class Channel(Record):
    """A subscriber channel with its keywords, texts and member counts."""

    id: int
    name: str
    join_keyword: str | None = Field(description="The whole message that joins the channel.")
    leave_keyword: str | None = Field(description="The whole message that leaves it.")
    join_reply: str | None = Field(description="The confirmation after joining; null: default.")
    leave_reply: str | None = Field(description="The confirmation after leaving; null: default.")
    platform: str | None = Field(description="Customers signing up on it join by themselves.")
    created_by: str
    created_at: datetime
    members: dict[str, int] = Field(description="Current members per platform.")
    member_count: int


class ChannelPage(Page):
    """A page of channels, by id."""

    items: list[Channel]


class ChannelCreate(Body):
    """A new channel, as `/channel create` takes it."""

    name: str = Field(pattern=f"^{NAME_PATTERN}$", examples=["news"])
    join_keyword: str | None = Field(None, min_length=1, max_length=KEYWORD_MAX)
    leave_keyword: str | None = Field(None, min_length=1, max_length=KEYWORD_MAX)
    platform: Platform | None = None


class ChannelDeleted(Record):
    """A deleted channel and how many members it dropped."""

    id: int
    name: str
    members_dropped: int


class Member(Record):
    """A current member of a channel."""

    contact_id: int
    display_name: str
    platform: str
    source: str = Field(description="How they joined: a keyword, a deep link, by hand, …")
    joined_at: datetime


class MemberPage(Page):
    """A page of members, by contact id."""

    items: list[Member]


class MemberAdd(Body):
    """A contact to subscribe by hand, with how they agreed to get messages."""

    contact_id: int = Field(ge=1, le=ID_MAX)
    consent: str = Field(
        min_length=1,
        max_length=CONSENT_MAX,
        description="How the contact agreed, e.g. 'asked for it by phone on 2026-11-25'.",
        examples=["signed up at the counter"],
    )


def _channel(found: ChannelRecord, counts: dict[int, dict[str, int]]) -> Channel:
    mine = counts.get(found.id, {})
    return Channel(
        id=found.id,
        name=found.name,
        join_keyword=found.join_keyword,
        leave_keyword=found.leave_keyword,
        join_reply=found.join_reply,
        leave_reply=found.leave_reply,
        platform=found.platform,
        created_by=found.created_by,
        created_at=found.created_at,
        members=dict(sorted(mine.items())),
        member_count=sum(mine.values()),
    )


def _member(m: MemberRecord) -> Member:
    return Member(
        contact_id=m.contact_id,
        display_name=m.display_name,
        platform=m.platform,
        source=m.source,
        joined_at=m.joined_at,
    )


async def _known(call: Call) -> ChannelRecord:
    channel_id = call.id("channel_id")
    found = await channels.channel_by_id(call.services, channel_id)
    if found is None:
        raise not_found(f"there is no channel {channel_id}")
    return found


async def _contact(call: Call, contact_id: int) -> ContactRecord:
    found = await contacts.contact(call.services, ContactId(contact_id))
    if found is None:
        raise not_found(f"there is no contact {contact_id}")
    return found


async def _show(call: Call, channel_id: int) -> Channel:
    found, counts = await channels.channel_counted(call.services, channel_id)
    if found is None:
        raise not_found(f"there is no channel {channel_id}")
    return _channel(found, counts)


@resource.get(
    "/channels",
    summary="List channels",
    role=Role.AGENT,
    query=PageQuery,
    response=ChannelPage,
)
async def list_channels(call: Call) -> ChannelPage:
    """By id, with member counts per platform."""
    after, limit = call.after(), call.limit
    found, counts = await channels.all_channels(call.services)
    # Channels are few (each is a keyword customers type): one read, sorted here.
    rows = sorted((c for c in found if after is None or c.id > after), key=lambda c: c.id)
    return call.page(
        ChannelPage, rows[: limit + 1], key=lambda c: c.id, item=lambda c: _channel(c, counts)
    )


@resource.post(
    "/channels",
    summary="Create a channel",
    role=Role.MANAGER,
    body=ChannelCreate,
    response=Channel,
    status=201,
    errors=(409,),
)
async def create_channel(call: Call) -> Channel:
    """Checked as `/channel create` checks it: a keyword is unique and not a stop or start
    word (409 when it is taken), join and leave keywords differ."""
    body = call.body(ChannelCreate)
    with call.field("join_keyword"):
        keyword_or_none(body.join_keyword)
    with call.field("leave_keyword"):
        created = await channels.create_channel(
            call.services,
            body.name,
            body.join_keyword,
            body.leave_keyword,
            body.platform,
            who=call.who,
            now=call.now,
        )
    return await _show(call, created.id)


@resource.get(
    "/channels/{channel_id}",
    summary="Show a channel",
    role=Role.AGENT,
    response=Channel,
)
async def show_channel(call: Call) -> Channel:
    """Its keywords, confirmation texts, binding and member counts."""
    return await _show(call, call.id("channel_id"))


@resource.delete(
    "/channels/{channel_id}",
    summary="Delete a channel",
    role=Role.MANAGER,
    response=ChannelDeleted,
)
async def delete_channel(call: Call) -> ChannelDeleted:
    """As `/channel delete --confirm`: its members are dropped."""
    found = await _known(call)
    deleted, count = await channels.delete_channel(call.services, found.name, confirmed=True)
    return ChannelDeleted(id=deleted.id, name=deleted.name, members_dropped=count)


@resource.get(
    "/channels/{channel_id}/members",
    summary="List a channel's members",
    role=Role.AGENT,
    query=PageQuery,
    response=MemberPage,
)
async def list_members(call: Call) -> MemberPage:
    """Current members, by contact id."""
    found = await _known(call)
    after, limit = call.after(), call.limit
    rows = await channels.members_after(call.services, found.id, after, limit + 1)
    return call.page(MemberPage, rows, key=lambda m: int(m.contact_id), item=_member)


@resource.post(
    "/channels/{channel_id}/members",
    summary="Subscribe a contact by hand",
    role=Role.MANAGER,
    body=MemberAdd,
    response=Member,
    status=201,
    also=(200,),
)
async def add_member(call: Call) -> Member | Answer:
    """As `/channel add … --consent`: the consent they gave is kept as the source. A contact
    who opted out is refused (422): they opt in again themselves. 200 when they were a member
    already."""
    found = await _known(call)
    body = call.body(MemberAdd)
    contact = await _contact(call, body.contact_id)
    with call.field("consent"):
        _, joined = await channels.add_member(
            call.services, found.name, contact, body.consent, who=call.who, now=call.now
        )
    rows = await channels.members_after(call.services, found.id, contact.id - 1, 1)
    member = rows[0] if rows and rows[0].contact_id == contact.id else None
    if member is None:
        raise not_found(f"contact {contact.id} is not a member of {found.name}")
    return _member(member) if joined else Answer(200, _member(member))


@resource.delete(
    "/channels/{channel_id}/members/{contact_id}",
    summary="Take a contact out of a channel",
    role=Role.MANAGER,
    status=204,
)
async def remove_member(call: Call) -> None:
    """As `/channel remove`; 404 when the contact is not a member."""
    found = await _known(call)
    contact = await _contact(call, call.id("contact_id"))
    _, ended = await channels.remove_member(
        call.services, found.name, contact, who=call.who, now=call.now
    )
    if not ended:
        raise not_found(f"contact {contact.id} is not a member of {found.name}")
