"""`/stats`: messages, contacts, channels, broadcasts and link clicks, with a chart and a page."""

from __future__ import annotations

import re

from bridge.charts import bar_png
from bridge.links import SHORT_PATH
from bridge.services import stats as stats_service
from bridge.staffio import Reply
from bridge.types import FileData, MediaKind
from bridge.web.stats_page import LOGIN_TTL, StatsLogin, chart_of, percent
from commands.base import Context, Role, command
from storage import stats as store
from storage.stats import BroadcastFunnel, LinkCount, Overview

stats = command(
    "stats", "Messages, contacts, channels, broadcasts and clicks, with a chart", default=""
)

# Surfaces that show a slash command's answer to the caller alone. The login link goes only
# there: Slack shares the chart's comment (title and lines) in the channel but keeps the fields
# in the private answer, while a Matrix room shows every answer to everyone in it.
CHANNELS_SHOWN = 8
BROADCASTS_SHOWN = 3
LINKS_SHOWN = 5


@stats.sub(
    "",
    usage="[days]",
    summary=(
        f"messages in and out per platform, active contacts, channel sizes, the latest"
        f" broadcasts and the most clicked links over the last days ({store.DEFAULT_DAYS} unless"
        f" given, at most {store.MAX_DAYS}), with a chart and a link to a page with more"
    ),
    example="/stats 30",
    role=Role.MANAGER,
)
async def _stats(ctx: Context, args: list[str]) -> Reply:
    days = _days(ctx, args)
    now = ctx.now
    overview = await stats_service.overview(
        ctx.services, now, days=days, broadcasts=BROADCASTS_SHOWN, links=LINKS_SHOWN
    )
    settings = ctx.services.settings
    public_url = settings.bridge.public_url
    lines = summary(overview, public_url)
    fields: tuple[tuple[str, str], ...] = ()
    if not public_url:
        lines.append("Set `[bridge] public_url` to get a link to a page with charts and tables.")
    elif ctx.request.private_answers and ctx.request.thread is None:
        # The link logs anyone in: only where the answer is the caller's alone (a slash
        # command, a direct room), never in a thread, where the answer is posted for all.
        login = StatsLogin(ctx.services.db, settings, clock=ctx.services.clock)
        url, until = await login.login_url(days=days, ttl=LOGIN_TTL)
        valid = f"valid for {LOGIN_TTL // 60} minutes, until {until:%H:%M} UTC"
        fields = (("Charts and tables (only you see this link)", f"{url}\n{valid}"),)
    else:
        lines.append("Type `/stats` in Slack for a link to the page with charts and tables.")
    last = overview.day_list[-1]
    return Reply(
        title=_title(overview),
        lines=tuple(lines),
        fields=fields,
        file=FileData(
            kind=MediaKind.IMAGE,
            filename=f"stats-{last:%Y-%m-%d}-{days}d.png",
            mime_type="image/png",
            data=bar_png(chart_of(overview)),
        ),
    )


def _days(ctx: Context, args: list[str]) -> int:
    """The number of days asked for; a usage error says what is wrong with it."""
    if not args:
        return store.DEFAULT_DAYS
    if len(args) > 1:
        raise ctx.usage(f"give one number of days, not {' '.join(args)}")
    word = args[0]
    if not re.fullmatch(r"-?[0-9]{1,9}", word):
        raise ctx.usage(f"{word} is not a number of days")
    days = int(word)
    if not 1 <= days <= store.MAX_DAYS:
        raise ctx.usage(f"the number of days is 1 to {store.MAX_DAYS}, not {days}")
    return days


def _title(overview: Overview) -> str:
    first, last = overview.day_list[0], overview.day_list[-1]
    if overview.days == 1:
        return f"Statistics of today, {last:%d %b %Y} (UTC)"
    return f"Statistics of the last {overview.days} days, {first:%d %b} to {last:%d %b %Y} (UTC)"


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def summary(overview: Overview, public_url: str | None) -> list[str]:
    """The figures in a few lines: per platform, channels, broadcasts, links."""
    totals = store.totals(overview.daily)
    contacts = {c.platform: c for c in overview.contacts}
    lines = []
    for platform in overview.platforms:
        inbound, outbound, broadcast = totals.get(platform, (0, 0, 0))
        line = f"*{platform}*: {inbound:,} in, {outbound:,} out"
        if broadcast:
            line += f", {_plural(broadcast, 'broadcast message')}"
        counted = contacts.get(platform)
        if counted is not None:
            line += (
                f"; {counted.active:,} of {_plural(counted.total, 'contact')} active in the last"
                f" {store.ACTIVE_DAYS} days"
            )
        lines.append(line)
    if len(overview.platforms) > 1:
        active = sum(c.active for c in overview.contacts)
        total = sum(c.total for c in overview.contacts)
        lines.append(
            f"*All*: {sum(t[0] for t in totals.values()):,} in,"
            f" {sum(t[1] for t in totals.values()):,} out"
            + (
                f", {_plural(sum(t[2] for t in totals.values()), 'broadcast message')}"
                if any(t[2] for t in totals.values())
                else ""
            )
            + f"; {active:,} of {_plural(total, 'contact')} active"
        )
    if not lines:
        lines.append("No messages and no contacts yet.")
    if overview.channels:
        shown = " · ".join(f"{c.name} {c.members:,}" for c in overview.channels[:CHANNELS_SHOWN])
        more = len(overview.channels) - CHANNELS_SHOWN
        lines.append(f"*Channels* (members): {shown}" + (f" · and {more} more" if more > 0 else ""))
    lines.extend(_funnel(f) for f in overview.broadcasts)
    prefix = f"{public_url.rstrip('/')}{SHORT_PATH}/" if public_url else f"{SHORT_PATH}/"
    clicked = [link for link in overview.links if link.clicks]
    if clicked:
        lines.append("*Most clicked links*:")
        lines.extend(_link(prefix, link) for link in clicked)
    return lines


def _funnel(f: BroadcastFunnel) -> str:
    line = (
        f"*Broadcast #{f.id}* ({f.state}, {f.created_at:%d %b}): queued {f.queued:,} → sent"
        f" {f.sent:,} → delivered {f.delivered:,} → read {f.read:,}"
    )
    aside = [
        f"{label} {n:,}"
        for label, n in (
            ("failed", f.failed),
            ("skipped", f.skipped),
            ("cancelled", f.cancelled),
        )
        if n
    ]
    if aside:
        line += f" ({', '.join(aside)})"
    clicks = f"{_plural(f.clicks, 'click')} by {_plural(f.clickers, 'recipient')}"
    line += f"; replied {f.replied:,}; {clicks}"
    if f.click_rate is not None:
        line += f", click rate {percent(f.click_rate)}"
    return line


def _link(prefix: str, link: LinkCount) -> str:
    url = link.url if len(link.url) <= 60 else link.url[:59] + "…"
    where = f" (broadcast #{link.broadcast_id})" if link.broadcast_id is not None else ""
    by = f" by {_plural(link.clickers, 'contact')}" if link.clickers else ""
    return f"{prefix}{link.code} → {url}: {_plural(link.clicks, 'click')}{by}{where}"
