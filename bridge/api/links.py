"""Short links that count their clicks: make one, list them, show one (the `/shorten` logic)."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from bridge.api.errors import not_found
from bridge.api.framework import Call, Resource
from bridge.api.paging import Page, PageQuery
from bridge.api.schemas import Body, Record
from bridge.links import MAX_URL
from bridge.services import links
from bridge.types import Role
from storage.shortlinks import LinkStats

resource = Resource(
    "Short links",
    "The bridge's short links (`<public_url>/s/<code>`): each click is counted, and a"
    " broadcast's links count which recipients clicked.",
)


class ShortLink(Record):
    """A short link with its clicks."""

    id: int
    code: str
    url: str = Field(description="Where it leads.")
    short_url: str | None = Field(description="The link to hand out; null without public_url.")
    broadcast_id: int | None = Field(description="The broadcast whose text it is in.")
    created_by: str
    created_at: datetime
    clicks: int
    clicked_by: int = Field(description="Known contacts who clicked (a recipient's own copy).")
    last_click: datetime | None


class ShortLinkPage(Page):
    """A page of short links, oldest first."""

    items: list[ShortLink]


class ShortLinkCreate(Body):
    """A URL to shorten, as `/shorten` takes it."""

    url: str = Field(min_length=1, max_length=MAX_URL, examples=["https://example.org/spring-sale"])


def _link(call: Call, stats: LinkStats) -> ShortLink:
    link = stats.link
    return ShortLink(
        id=link.id,
        code=link.code,
        url=link.url,
        short_url=links.short_url(call.services, link.code),
        broadcast_id=link.broadcast_id,
        created_by=link.created_by,
        created_at=link.created_at,
        clicks=stats.clicks,
        clicked_by=stats.contacts,
        last_click=stats.last_click,
    )


async def _show(call: Call, link_id: int) -> ShortLink:
    found = await links.link_stats(call.services, link_id)
    if found is None:
        raise not_found(f"there is no short link {link_id}")
    return _link(call, found)


@resource.get(
    "/links",
    summary="List short links with their clicks",
    role=Role.AGENT,
    query=PageQuery,
    response=ShortLinkPage,
)
async def list_links(call: Call) -> ShortLinkPage:
    """By id, oldest first (the broadcasts' links too), each with its clicks."""
    after, limit = call.after(), call.limit
    rows = await links.links_after(call.services, after, limit + 1)
    return call.page(ShortLinkPage, rows, key=lambda s: s.link.id, item=lambda s: _link(call, s))


@resource.post(
    "/links",
    summary="Make a short link",
    role=Role.AGENT,
    body=ShortLinkCreate,
    response=ShortLink,
    status=201,
)
async def create_link(call: Call) -> ShortLink:
    """As `/shorten <url>`: a new link to an http(s) URL, whose every click is counted. Needs
    the bridge's `public_url` (422 without)."""
    url = call.body(ShortLinkCreate).url
    short = await links.shorten(call.services, url, call.who)
    made = await links.link_id_of(call.services, short)
    if made is None:
        raise not_found(f"there is no short link {short.rsplit('/', 1)[1]}")
    return await _show(call, made)


@resource.get(
    "/links/{link_id}",
    summary="Show a short link with its clicks",
    role=Role.AGENT,
    response=ShortLink,
)
async def show_link(call: Call) -> ShortLink:
    """How often it was clicked, by how many known contacts, and when last."""
    return await _show(call, call.id("link_id"))
