"""Short links of the bridge that count their clicks: make one, list them with their clicks."""

from __future__ import annotations

from bridge.errors import Invalid, Refused
from bridge.links import SHORT_PATH, ShortLinks
from bridge.services import Services
from storage import Tx
from storage.shortlinks import LinkStats


def short_links(services: Services) -> ShortLinks:
    """The bridge's short links (they need `[bridge] public_url`)."""
    settings = services.settings
    if not settings.bridge.public_url:
        raise Refused("Short links need the bridge's public address: set [bridge] public_url")
    return ShortLinks(
        services.db, settings.bridge.public_url, writer=services.writer, clock=services.clock
    )


def short_url(services: Services, code: str) -> str | None:
    """A code's whole short link; None without `[bridge] public_url`."""
    public_url = services.settings.bridge.public_url
    return f"{public_url.rstrip('/')}{SHORT_PATH}/{code}" if public_url else None


async def shorten(services: Services, url: str, by: str) -> str:
    """A new short link to an http(s) URL (Invalid names the url when it is not one)."""
    links = short_links(services)
    try:
        return await links.shorten(url, by=by)
    except ValueError as exc:
        raise Invalid(str(exc), field="url") from None


async def latest(services: Services, limit: int) -> tuple[list[LinkStats], int]:
    """The newest links with their clicks, and how many links there are in all."""

    def read(tx: Tx) -> tuple[list[LinkStats], int]:
        return tx.links.latest_links(limit), tx.links.count_links()

    return await services.read(read)


async def links_after(services: Services, after: int | None, limit: int) -> list[LinkStats]:
    """Links by id, oldest first, from after `after`, with their clicks."""
    return await services.read(lambda tx: tx.links.links_after(after=after, limit=limit))


async def link_stats(services: Services, link_id: int) -> LinkStats | None:
    """A link with its clicks."""
    return await services.read(lambda tx: tx.links.link_stats(link_id))


async def link_id_of(services: Services, short: str) -> int | None:
    """The id of the link a short URL (as `shorten` made it) stands for."""
    code = short.rsplit("/", 1)[1]
    made = await services.read(lambda tx: tx.links.link_by_code(code))
    return made.id if made is not None else None
