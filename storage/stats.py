"""Figures for `/stats` and the stats page: messages per day, contacts, channels, broadcasts, links.

Every method of `Stats` is one or a few GROUP BY statements on a synchronous connection; none reads
the rows it counts into Python. Days are UTC calendar days on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import case, func, literal_column, select
from sqlalchemy.sql.elements import ColumnElement

from storage.records import Repository
from storage.tables import (
    broadcast_sends,
    broadcasts,
    channels,
    contacts,
    link_clicks,
    members,
    messages,
    short_links,
)

DEFAULT_DAYS = 14
MAX_DAYS = 365
ACTIVE_DAYS = 30
# A broadcast message counts as out once the platform took it; failed and skipped ones do not.
ACCEPTED = ("sent", "delivered", "read")


@dataclass(frozen=True, slots=True)
class DayCount:
    """Messages of one platform on one UTC day."""

    day: date
    platform: str
    inbound: int  # from customers
    outbound: int  # to customers in conversations: staff replies and automatic answers
    broadcast: int  # broadcast messages the platform accepted


@dataclass(frozen=True, slots=True)
class ContactCount:
    """Contacts of one platform: all of them, and those who wrote in the last ACTIVE_DAYS."""

    platform: str
    total: int
    active: int


@dataclass(frozen=True, slots=True)
class ChannelSize:
    """A subscriber channel and how many contacts are in it now."""

    name: str
    members: int


@dataclass(frozen=True, slots=True)
class BroadcastFunnel:
    """What became of one broadcast, stage by stage, and how its links were clicked.

    The stages are cumulative: `sent` counts every message the platform took (delivered and
    read ones included), `delivered` those that also reached the phone, `read` those read.
    """

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
    clickers: int  # distinct contacts who clicked one of its links (their own copy)

    @property
    def click_rate(self) -> float | None:
        """Distinct clickers per message the platform took; None before any was sent."""
        return self.clickers / self.sent if self.sent else None


@dataclass(frozen=True, slots=True)
class LinkCount:
    """A short link with its clicks: all of them, by how many contacts, and in the period."""

    code: str
    url: str
    broadcast_id: int | None
    clicks: int
    clickers: int
    recent: int
    last_click: datetime | None


@dataclass(frozen=True, slots=True)
class Overview:
    """Everything `/stats` and the stats page show, for the `days` UTC days ending today."""

    days: int
    since: datetime  # the first day's midnight, UTC
    until: datetime  # the midnight after the last day
    daily: tuple[DayCount, ...]
    contacts: tuple[ContactCount, ...]
    channels: tuple[ChannelSize, ...]
    broadcasts: tuple[BroadcastFunnel, ...]
    links: tuple[LinkCount, ...]

    @property
    def day_list(self) -> tuple[date, ...]:
        """Every day of the period, oldest first."""
        first = self.since.date()
        return tuple(first + timedelta(days=n) for n in range(self.days))

    @property
    def platforms(self) -> tuple[str, ...]:
        """Platforms with messages in the period or with contacts, in name order."""
        return tuple(sorted({d.platform for d in self.daily} | {c.platform for c in self.contacts}))


def period(now: datetime, days: int) -> tuple[datetime, datetime]:
    """The first midnight and the midnight after the last of `days` UTC days ending today."""
    today = now.astimezone(UTC).date()
    since = datetime.combine(today - timedelta(days=days - 1), time.min, UTC)
    return since, since + timedelta(days=days)


class Stats(Repository):
    """Figures for `/stats` and the stats page, each from one or a few GROUP BY statements."""

    def _day(self, column: Any) -> ColumnElement[Any]:
        """The UTC day of a timestamp column as YYYY-MM-DD text.

        Literal columns, not bound parameters: PostgreSQL only sees the SELECT expression and the
        GROUP BY expression as the same when their SQL text is the same.
        """
        if self.dialect == "postgresql":
            return func.to_char(
                func.timezone(literal_column("'UTC'"), column), literal_column("'YYYY-MM-DD'")
            )
        # SQLite keeps UTC as "YYYY-MM-DD HH:MM:SS[.ffffff]" text (see storage.models.UTCDateTime).
        return func.date(column)

    def daily_messages(self, since: datetime, until: datetime) -> list[DayCount]:
        """Messages in and out per platform and UTC day; only days with any are listed."""
        found: dict[tuple[str, str], list[int]] = {}
        m = messages.c
        day = self._day(m.sent_at).label("day")
        rows = self.conn.execute(
            select(day, m.platform, m.direction, func.count())
            .where(m.sent_at >= since, m.sent_at < until, m.direction.in_(("in", "out")))
            .group_by(day, m.platform, m.direction)
        )
        for text, platform, direction, n in rows:
            counts = found.setdefault((str(text), str(platform)), [0, 0, 0])
            counts[0 if direction == "in" else 1] += int(n)
        b = broadcast_sends.c
        day = self._day(b.at).label("day")
        rows = self.conn.execute(
            select(day, b.platform, func.count())
            .where(b.at >= since, b.at < until, b.state.in_(ACCEPTED))
            .group_by(day, b.platform)
        )
        for text, platform, n in rows:
            found.setdefault((str(text), str(platform)), [0, 0, 0])[2] += int(n)
        return [
            DayCount(date.fromisoformat(text), platform, *counts)
            for (text, platform), counts in sorted(found.items())
        ]

    def contact_counts(self, now: datetime, active_days: int = ACTIVE_DAYS) -> list[ContactCount]:
        """Per platform: how many contacts there are, and how many wrote within `active_days`."""
        c = contacts.c
        cutoff = now - timedelta(days=active_days)
        rows = self.conn.execute(
            select(c.platform, func.count(), func.count(case((c.last_seen >= cutoff, 1))))
            .group_by(c.platform)
            .order_by(c.platform)
        )
        return [
            ContactCount(str(platform), int(total), int(active)) for platform, total, active in rows
        ]

    def channel_sizes(self) -> list[ChannelSize]:
        """Every channel with its current members (those who have not left), biggest first."""
        size = func.count(members.c.contact_id)
        rows = self.conn.execute(
            select(channels.c.name, size)
            .select_from(
                channels.outerjoin(
                    members,
                    (members.c.channel_id == channels.c.id) & members.c.left_at.is_(None),
                )
            )
            .group_by(channels.c.id, channels.c.name)
            .order_by(size.desc(), channels.c.name)
        )
        return [ChannelSize(str(name), int(n)) for name, n in rows]

    def broadcast_funnels(self, limit: int = 5) -> list[BroadcastFunnel]:
        """The newest broadcasts that were confirmed (drafts are left out), newest first."""
        rows = self.conn.execute(
            select(
                broadcasts.c.id,
                broadcasts.c.created_at,
                broadcasts.c.created_by,
                broadcasts.c.state,
                broadcasts.c.text,
                broadcasts.c.template,
                broadcasts.c.queued,
            )
            .where(broadcasts.c.state != "draft")
            .order_by(broadcasts.c.id.desc())
            .limit(limit)
        ).all()
        if not rows:
            return []
        ids = [int(r.id) for r in rows]
        b = broadcast_sends.c
        states: dict[int, dict[str, int]] = {i: {} for i in ids}
        replied: dict[int, int] = dict.fromkeys(ids, 0)
        for broadcast_id, state, n, answered in self.conn.execute(
            select(b.broadcast_id, b.state, func.count(), func.count(b.replied_at))
            .where(b.broadcast_id.in_(ids))
            .group_by(b.broadcast_id, b.state)
        ):
            states[int(broadcast_id)][str(state)] = int(n)
            replied[int(broadcast_id)] += int(answered)
        k = link_clicks.c
        clicked = {
            int(broadcast_id): (int(n), int(people))
            for broadcast_id, n, people in self.conn.execute(
                select(
                    short_links.c.broadcast_id, func.count(), func.count(k.contact_id.distinct())
                )
                .select_from(link_clicks.join(short_links, short_links.c.id == k.link_id))
                .where(short_links.c.broadcast_id.in_(ids))
                .group_by(short_links.c.broadcast_id)
            )
        }
        out = []
        for r in rows:
            per = states[int(r.id)]
            clicks, clickers = clicked.get(int(r.id), (0, 0))
            template = r.template.get("name") if isinstance(r.template, dict) else None
            out.append(
                BroadcastFunnel(
                    id=int(r.id),
                    created_at=r.created_at,
                    created_by=str(r.created_by),
                    state=str(r.state),
                    text=str(r.text or ""),
                    template=str(template) if template else None,
                    queued=int(r.queued or 0),
                    sent=sum(per.get(s, 0) for s in ACCEPTED),
                    delivered=per.get("delivered", 0) + per.get("read", 0),
                    read=per.get("read", 0),
                    failed=per.get("failed", 0),
                    skipped=per.get("skipped", 0),
                    cancelled=per.get("cancelled", 0),
                    replied=replied[int(r.id)],
                    clicks=clicks,
                    clickers=clickers,
                )
            )
        return out

    def link_counts(self, since: datetime, limit: int = 10) -> list[LinkCount]:
        """The most clicked short links first (then the newest), with clicks since `since`."""
        s, k = short_links.c, link_clicks.c
        clicks = func.count(k.id)
        rows = self.conn.execute(
            select(
                s.code,
                s.url,
                s.broadcast_id,
                clicks,
                func.count(k.contact_id.distinct()),
                func.count(case((k.at >= since, 1))),
                func.max(k.at),
            )
            .select_from(short_links.outerjoin(link_clicks, k.link_id == s.id))
            .group_by(s.id, s.code, s.url, s.broadcast_id)
            .order_by(clicks.desc(), s.id.desc())
            .limit(limit)
        )
        return [
            LinkCount(
                code=str(code),
                url=str(url),
                broadcast_id=int(broadcast_id) if broadcast_id is not None else None,
                clicks=int(n),
                clickers=int(people),
                recent=int(recent),
                last_click=last,
            )
            for code, url, broadcast_id, n, people, recent, last in rows
        ]

    def overview(
        self,
        now: datetime,
        *,
        days: int = DEFAULT_DAYS,
        broadcasts: int = 5,
        links: int = 10,
    ) -> Overview:
        """All figures at once, for the `days` UTC days ending on the day of `now`."""
        if not 1 <= days <= MAX_DAYS:
            msg = f"days must be 1 to {MAX_DAYS}, not {days}"
            raise ValueError(msg)
        since, until = period(now, days)
        return Overview(
            days=days,
            since=since,
            until=until,
            daily=tuple(self.daily_messages(since, until)),
            contacts=tuple(self.contact_counts(now)),
            channels=tuple(self.channel_sizes()),
            broadcasts=tuple(self.broadcast_funnels(broadcasts)),
            links=tuple(self.link_counts(since, links)),
        )


def totals(daily: Sequence[DayCount]) -> dict[str, tuple[int, int, int]]:
    """Per platform: (in, out, broadcast) over the given days."""
    found: dict[str, tuple[int, int, int]] = {}
    for d in daily:
        inbound, outbound, broadcast = found.get(d.platform, (0, 0, 0))
        found[d.platform] = (inbound + d.inbound, outbound + d.outbound, broadcast + d.broadcast)
    return dict(sorted(found.items()))
