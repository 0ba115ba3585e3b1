"""Statistics: the figures of `/stats` (messages, contacts, channels, broadcasts, links) as JSON."""

from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel, ConfigDict, Field

from bridge.api.framework import Call, Resource
from bridge.api.schemas import Record
from bridge.links import SHORT_PATH
from bridge.services import stats
from bridge.types import Role
from storage import stats as store
from storage.stats import BroadcastFunnel, LinkCount

resource = Resource(
    "Statistics",
    "The figures of `/stats` and the statistics page, by UTC day.",
)

BROADCASTS_SHOWN = 10
LINKS_SHOWN = 20


class StatsQuery(BaseModel):
    """The period."""

    model_config = ConfigDict(extra="forbid")

    days: int = Field(
        store.DEFAULT_DAYS,
        ge=1,
        le=store.MAX_DAYS,
        description=f"The last N UTC days, today included (1 to {store.MAX_DAYS}).",
    )


class DayFigures(Record):
    """Messages of one platform on one UTC day (days without any are left out)."""

    day: date
    platform: str
    inbound: int = Field(description="From customers.")
    outbound: int = Field(description="To customers in conversations: replies, automatic answers.")
    broadcast: int = Field(description="Broadcast messages the platform took.")


class PlatformFigures(Record):
    """One platform over the period, and its contacts now."""

    platform: str
    inbound: int
    outbound: int
    broadcast: int
    contacts: int
    active_contacts: int = Field(
        description=f"Contacts who wrote in the last {store.ACTIVE_DAYS} days."
    )


class ChannelFigures(Record):
    """A subscriber channel and its members now."""

    name: str
    members: int


class BroadcastFigures(Record):
    """One of the latest confirmed broadcasts, stage by stage (sent includes delivered and
    read ones; delivered includes read ones)."""

    id: int
    created_at: datetime
    created_by: str
    state: str
    text: str
    template: str | None
    queued: int
    sent: int
    delivered: int
    read: int
    failed: int
    skipped: int
    cancelled: int
    replied: int
    clicks: int
    clicked_by: int = Field(description="Recipients who clicked any of its links.")
    click_rate: float | None = Field(description="clicked_by per message sent; null: none sent.")


class LinkFigures(Record):
    """One of the most clicked short links."""

    code: str
    url: str
    short_url: str | None
    broadcast_id: int | None
    clicks: int = Field(description="Ever.")
    clicked_by: int = Field(description="Known contacts who clicked, ever.")
    clicks_in_period: int
    last_click: datetime | None


class Statistics(Record):
    """The figures of `/stats`, and a few more of the statistics page."""

    days: int
    since: datetime = Field(description="The first day's midnight, UTC.")
    until: datetime = Field(description="The midnight after the last day, UTC.")
    platforms: list[PlatformFigures]
    daily: list[DayFigures]
    channels: list[ChannelFigures] = Field(description="Biggest first.")
    broadcasts: list[BroadcastFigures] = Field(
        description=f"The latest {BROADCASTS_SHOWN} confirmed, newest first."
    )
    links: list[LinkFigures] = Field(description=f"The {LINKS_SHOWN} most clicked.")


def _broadcast(f: BroadcastFunnel) -> BroadcastFigures:
    return BroadcastFigures(
        id=f.id,
        created_at=f.created_at,
        created_by=f.created_by,
        state=f.state,
        text=f.text,
        template=f.template,
        queued=f.queued,
        sent=f.sent,
        delivered=f.delivered,
        read=f.read,
        failed=f.failed,
        skipped=f.skipped,
        cancelled=f.cancelled,
        replied=f.replied,
        clicks=f.clicks,
        clicked_by=f.clickers,
        click_rate=f.click_rate,
    )


def _link(link: LinkCount, public_url: str | None) -> LinkFigures:
    return LinkFigures(
        code=link.code,
        url=link.url,
        short_url=f"{public_url.rstrip('/')}{SHORT_PATH}/{link.code}" if public_url else None,
        broadcast_id=link.broadcast_id,
        clicks=link.clicks,
        clicked_by=link.clickers,
        clicks_in_period=link.recent,
        last_click=link.last_click,
    )


@resource.get(
    "/stats",
    summary="Statistics of the last days",
    role=Role.MANAGER,
    query=StatsQuery,
    response=Statistics,
)
async def show_stats(call: Call) -> Statistics:
    """As `/stats [days]`: messages in and out per platform and UTC day, contacts and those
    active lately, channel sizes, the latest broadcasts stage by stage with
    clicks, and the most clicked short links."""
    days, now = call.query(StatsQuery).days, call.now
    overview = await stats.overview(
        call.services, now, days=days, broadcasts=BROADCASTS_SHOWN, links=LINKS_SHOWN
    )
    totals = store.totals(overview.daily)
    contacts = {c.platform: c for c in overview.contacts}
    platforms = []
    for platform in overview.platforms:
        inbound, outbound, broadcast = totals.get(platform, (0, 0, 0))
        counted = contacts.get(platform)
        platforms.append(
            PlatformFigures(
                platform=platform,
                inbound=inbound,
                outbound=outbound,
                broadcast=broadcast,
                contacts=counted.total if counted else 0,
                active_contacts=counted.active if counted else 0,
            )
        )
    public_url = call.services.settings.bridge.public_url
    return Statistics(
        days=overview.days,
        since=overview.since,
        until=overview.until,
        platforms=platforms,
        daily=[
            DayFigures(
                day=d.day,
                platform=d.platform,
                inbound=d.inbound,
                outbound=d.outbound,
                broadcast=d.broadcast,
            )
            for d in overview.daily
        ],
        channels=[ChannelFigures(name=c.name, members=c.members) for c in overview.channels],
        broadcasts=[_broadcast(f) for f in overview.broadcasts],
        links=[_link(link, public_url) for link in overview.links],
    )
