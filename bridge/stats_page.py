"""The statistics page, `GET /stats`: the figures of `/stats` as one HTML page with charts.

People open it with the login link `/stats` answers: `{public_url}/stats?token=<expires>.<sig>`,
where the signature is an HMAC over the expiry with a key kept in the database (like
bridge.media's), so every process of the bridge accepts it and nobody can make or extend one.
Scripts may send `Authorization: Bearer <[stats] api_key>` instead. The page is self-contained:
inline CSS and inline SVG, no script, nothing fetched from elsewhere.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from html import escape
from urllib.parse import urlencode

from aiohttp import web

from bridge.charts import BLUE, GREEN, LIGHT_ORANGE, ORANGE, BarChart, Series, bar_svg, hbar_svg
from bridge.config import Settings
from bridge.links import SHORT_PATH, is_preview
from storage import Database, Tx
from storage import stats as store
from storage.stats import BroadcastFunnel, LinkCount, Overview

log = logging.getLogger(__name__)

STATS_PATH = "/stats"
LOGIN_TTL = 3600  # seconds a login link works: long enough to look around, short if leaked
_KEY = "stats.signing_key"
# More days than this are drawn as weeks: a year of daily bars is a smear at chat size.
MAX_BARS = 62
PERIODS = (7, 14, 30, 90, 365)
_DIGITS = re.compile(r"[0-9]{1,15}")


def chart_of(overview: Overview, platform: str | None = None) -> BarChart:
    """Messages in and out per day (per week for long periods), one platform or all."""
    days = overview.day_list
    per_day: dict[date, list[int]] = {d: [0, 0, 0] for d in days}
    for count in overview.daily:
        if platform is None or count.platform == platform:
            slot = per_day.get(count.day)
            if slot is not None:
                slot[0] += count.inbound
                slot[1] += count.outbound
                slot[2] += count.broadcast
    width = 7 if len(days) > MAX_BARS else 1
    labels: list[str] = []
    values: list[list[int]] = [[], [], []]
    for start in range(0, len(days), width):
        chunk = days[start : start + width]
        labels.append(f"{chunk[0].day} {chunk[0]:%b}")
        for part in range(3):
            values[part].append(sum(per_day[d][part] for d in chunk))
    inbound, outbound, broadcast = (tuple(v) for v in values)
    out_stack = [Series(f"out: {sum(outbound):,}", ORANGE, outbound)]
    if any(broadcast):
        out_stack.append(Series(f"out, broadcasts: {sum(broadcast):,}", LIGHT_ORANGE, broadcast))
    last = days[-1]
    what = "per week" if width > 1 else "per day"
    scope = f"{platform} messages" if platform else "Messages"
    title = f"{scope} {what}, {days[0]:%d %b} to {last:%d %b %Y} (UTC)"
    if len(days) == 1:
        title = f"{scope} on {last:%d %b %Y} (UTC)"
    return BarChart(
        title=title,
        labels=tuple(labels),
        bars=((Series(f"in: {sum(inbound):,}", BLUE, inbound),), tuple(out_stack)),
        empty_note="no messages in this period",
    )


class StatsPage:
    """Serves GET /stats and makes the login links that open it."""

    def __init__(
        self, db: Database, settings: Settings, *, clock: Callable[[], datetime] | None = None
    ) -> None:
        self._db = db
        public_url = settings.bridge.public_url
        self._public_url = public_url.rstrip("/") if public_url else None
        api_key = settings.stats.api_key
        self._api_key = api_key.get_secret_value().encode() if api_key else None
        self._clock = clock or (lambda: datetime.now(UTC))
        self._key: bytes | None = None

    async def _signing_key(self) -> bytes:
        if self._key is None:
            stored = await self._db.run_read(lambda conn: Tx(conn).kv_get(_KEY))
            if stored is None:
                fresh = secrets.token_hex(32)
                stored = await self._db.run_write(lambda conn: Tx(conn).kv_put_new(_KEY, fresh))
            self._key = bytes.fromhex(stored)
        return self._key

    @staticmethod
    def _sign(key: bytes, expires: int) -> str:
        return hmac.new(key, f"stats:{expires}".encode(), hashlib.sha256).hexdigest()[:32]

    async def token(self, expires: int) -> str:
        """A login token that works until `expires` (Unix time)."""
        return f"{expires}.{self._sign(await self._signing_key(), expires)}"

    async def login_url(
        self, *, days: int = store.DEFAULT_DAYS, ttl: int = LOGIN_TTL
    ) -> tuple[str, datetime]:
        """An absolute link that opens the page for `ttl` seconds, and when it stops working."""
        if self._public_url is None:
            msg = "a login link needs [bridge] public_url"
            raise RuntimeError(msg)
        expires = int(self._clock().timestamp()) + ttl
        query = {"token": await self.token(expires)}
        if days != store.DEFAULT_DAYS:
            query["days"] = str(days)
        url = f"{self._public_url}{STATS_PATH}?{urlencode(query)}"
        return url, datetime.fromtimestamp(expires, UTC)

    def routes(self) -> list[web.RouteDef]:
        """GET /stats."""
        return [web.get(STATS_PATH, self._serve)]

    async def _refusal(self, request: web.Request) -> web.Response | None:
        """Why the request may not see the page (401/403), or None when it may."""
        if _bearer(request):
            credential = request.headers["Authorization"].partition(" ")[2]
            if self._api_key is None:
                return _message(403, "No API key is set up for this page ([stats] api_key).")
            if not hmac.compare_digest(credential.strip().encode(), self._api_key):
                return _message(403, "This API key is not valid.")
            return None
        token = request.query.get("token")
        if token is None:
            return _message(
                401,
                "This page needs a login link: type /stats in Slack and open the link it"
                " answers (it works for an hour).",
                headers={"WWW-Authenticate": 'Bearer realm="stats"'},
            )
        expires_text, _, signature = token.partition(".")
        expires = int(expires_text) if _DIGITS.fullmatch(expires_text) else -1
        key = await self._signing_key()
        expected = self._sign(key, expires).encode()
        if expires < 0 or not hmac.compare_digest(expected, signature.encode()):
            return _message(403, "This login link is not valid. Type /stats again for a fresh one.")
        if expires < self._clock().timestamp():
            return _message(403, "This login link has expired. Type /stats again for a fresh one.")
        return None

    async def _serve(self, request: web.Request) -> web.Response:
        refused = await self._refusal(request)
        if refused is not None:
            log.info("GET /stats refused (%s)", refused.status)
            return refused
        raw = request.query.get("days", str(store.DEFAULT_DAYS))
        if not _DIGITS.fullmatch(raw) or not 1 <= int(raw) <= store.MAX_DAYS:
            return _message(400, f"days must be a number from 1 to {store.MAX_DAYS}.")
        days = int(raw)
        if is_preview(request.headers.get("User-Agent", "")):
            # A chat's link preview would show the figures to whoever sees the preview.
            return _message(200, "Statistics of the support bridge: open the link in a browser.")
        now = self._clock()
        overview = await self._db.run_read(
            lambda conn: store.overview(conn, now, days=days, broadcasts=10, links=20)
        )
        token = None if _bearer(request) else request.query.get("token")
        return web.Response(
            text=render(overview, now=now, token=token),
            content_type="text/html",
            headers=_HEADERS,
        )


def _bearer(request: web.Request) -> bool:
    """Whether the request authenticates with `Authorization: Bearer …`."""
    scheme = request.headers.get("Authorization", "").partition(" ")[0]
    return scheme.lower() == "bearer"


# The page may use only its own inline styles and images: nothing loads from anywhere, nothing
# runs, and the token never leaves in a Referer header.
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none';"
        " form-action 'none'; frame-ancestors 'none'"
    ),
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Robots-Tag": "noindex, nofollow",
}


def _message(status: int, text: str, headers: dict[str, str] | None = None) -> web.Response:
    """A short HTML page with one message (the refusals and the preview answer)."""
    body = _page("Statistics", f'<p class="message">{escape(text)}</p>')
    return web.Response(
        status=status,
        text=body,
        content_type="text/html",
        headers={**_HEADERS, **(headers or {})},
    )


_CSS = """
:root{color-scheme:light;--ink:#1f2328;--muted:#59636e;--line:#e4e7eb;--card:#f6f8fa}
*{box-sizing:border-box}
body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--ink)}
main{max-width:1100px;margin:0 auto;padding:16px}
h1{font-size:1.5em;margin:.2em 0}
h2{font-size:1.15em;margin:1.6em 0 .5em;border-bottom:1px solid var(--line);padding-bottom:.2em}
.sub,.note{color:var(--muted)}
nav a{margin-right:.6em}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(150px,1fr));gap:10px;margin:1em 0}
.card{background:var(--card);border-radius:8px;padding:10px 12px}
.card b{display:block;font-size:1.6em}
.card span{color:var(--muted)}
.chart{width:100%;height:auto;display:block;margin:.5em 0}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(320px,1fr));gap:12px}
.scroll{overflow-x:auto}
table{border-collapse:collapse;width:100%;margin:.5em 0}
th,td{text-align:left;padding:4px 8px;border-bottom:1px solid var(--line);vertical-align:top}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
.url{word-break:break-all}
.message{font-size:1.1em;margin:3em 0}
@media (max-width:600px){body{font-size:14px}main{padding:10px}th,td{padding:3px 5px}}
"""


def _page(title: str, body: str) -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="robots" content="noindex, nofollow">'
        f"<title>{escape(title)}</title><style>{_CSS}</style></head>"
        f"<body><main>{body}</main></body></html>"
    )


def _n(value: int) -> str:
    return f"{value:,}"


def percent(value: float | None) -> str:
    """A share as people read it: 25%, 0.4% (one decimal below 10%), — when there is none."""
    if value is None:
        return "—"
    return f"{value:.0%}" if value >= 0.1 or value == 0 else f"{value:.1%}"


def _table(head: Sequence[str], rows: Sequence[Sequence[str]], numeric: set[int]) -> str:
    """A table; cells are HTML already (escape user text before)."""

    def cell(tag: str, i: int, value: str) -> str:
        return f'<{tag} class="n">{value}</{tag}>' if i in numeric else f"<{tag}>{value}</{tag}>"

    header = "".join(cell("th", i, h) for i, h in enumerate(head))
    body = "".join(
        "<tr>" + "".join(cell("td", i, v) for i, v in enumerate(r)) + "</tr>" for r in rows
    )
    table = f"<table><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table>"
    return f'<div class="scroll">{table}</div>'


def render(overview: Overview, *, now: datetime, token: str | None = None) -> str:
    """The whole page. Every string that comes from the database is escaped here."""
    first, last = overview.day_list[0], overview.day_list[-1]
    totals = store.totals(overview.daily)
    inbound = sum(t[0] for t in totals.values())
    outbound = sum(t[1] for t in totals.values())
    broadcast = sum(t[2] for t in totals.values())
    active = sum(c.active for c in overview.contacts)
    contacts = sum(c.total for c in overview.contacts)

    def period_link(days: int) -> str:
        query = {"days": str(days)}
        if token is not None:
            query = {"token": token, **query}
        label = f"{days} days"
        if days == overview.days:
            return f"<strong>{label}</strong>"
        return f'<a href="?{escape(urlencode(query))}">{label}</a>'

    parts = [
        "<h1>Statistics</h1>",
        f'<p class="sub">The last {overview.days} day{"" if overview.days == 1 else "s"}:'
        f" {first:%d %b %Y} to {last:%d %b %Y} (UTC), as of {now:%Y-%m-%d %H:%M} UTC</p>",
        "<nav>Period: " + " ".join(period_link(d) for d in PERIODS) + "</nav>",
        '<section class="cards">',
        f'<div class="card"><b>{_n(inbound)}</b><span>messages in</span></div>',
        f'<div class="card"><b>{_n(outbound)}</b><span>messages out in conversations</span></div>',
        f'<div class="card"><b>{_n(broadcast)}</b><span>broadcast messages sent</span></div>',
        f'<div class="card"><b>{_n(active)}</b><span>contacts active in the last'
        f" {store.ACTIVE_DAYS} days, of {_n(contacts)}</span></div>",
        "</section>",
        "<h2>Messages</h2>",
        bar_svg(chart_of(overview)),
    ]
    parts.append(_messages_table(totals))
    platforms = [p for p in totals if p]
    if len(platforms) > 1:
        parts.append('<div class="grid">')
        parts.extend(bar_svg(chart_of(overview, p), width=600, height=300) for p in platforms)
        parts.append("</div>")
    parts.append("<h2>Contacts</h2>")
    if overview.contacts:
        parts.append(
            _table(
                ("Platform", f"Active (last {store.ACTIVE_DAYS} days)", "All"),
                [(escape(c.platform), _n(c.active), _n(c.total)) for c in overview.contacts],
                {1, 2},
            )
        )
    else:
        parts.append('<p class="note">No contacts yet.</p>')
    parts.append("<h2>Channels</h2>")
    if overview.channels:
        parts.append(
            hbar_svg(
                "Members per channel",
                [(c.name, c.members) for c in overview.channels[:30]],
                color=GREEN,
            )
        )
        if len(overview.channels) > 30:
            parts.append(f'<p class="note">and {len(overview.channels) - 30} more channels.</p>')
    else:
        parts.append('<p class="note">No channels yet.</p>')
    parts.append("<h2>Broadcasts</h2>")
    parts.append(_broadcasts(overview.broadcasts))
    parts.append("<h2>Links</h2>")
    parts.append(_links(overview.links, overview.days))
    return _page("Statistics · Support Bridge", "".join(parts))


def _messages_table(totals: dict[str, tuple[int, int, int]]) -> str:
    if not totals:
        return '<p class="note">No messages in this period.</p>'
    rows = [(escape(platform), _n(i), _n(o), _n(b)) for platform, (i, o, b) in totals.items()]
    return _table(("Platform", "In", "Out", "Broadcast messages"), rows, {1, 2, 3})


def _broadcasts(funnels: Sequence[BroadcastFunnel]) -> str:
    if not funnels:
        return '<p class="note">No broadcasts yet.</p>'
    rows = []
    for f in funnels:
        what = f"template {f.template}" if f.template else f.text
        shown = what if len(what) <= 80 else what[:79] + "…"
        rows.append(
            (
                f"#{f.id}",
                f"{f.created_at:%Y-%m-%d %H:%M}",
                escape(f.created_by),
                escape(f.state),
                f'<span title="{escape(what)}">{escape(shown)}</span>',
                _n(f.queued),
                _n(f.sent),
                _n(f.delivered),
                _n(f.read),
                _n(f.failed),
                _n(f.skipped),
                _n(f.replied),
                _n(f.clicks),
                _n(f.clickers),
                percent(f.click_rate),
            )
        )
    head = (
        "#",
        "Created (UTC)",
        "By",
        "State",
        "Text",
        "Queued",
        "Sent",
        "Delivered",
        "Read",
        "Failed",
        "Skipped",
        "Replied",
        "Clicks",
        "Clickers",
        "Click rate",
    )
    table = _table(head, rows, set(range(5, 15)))
    latest = funnels[0]
    funnel = hbar_svg(
        f"Broadcast #{latest.id}, stage by stage",
        [
            ("queued", latest.queued),
            ("sent", latest.sent),
            ("delivered", latest.delivered),
            ("read", latest.read),
            ("clicked", latest.clickers),
            ("replied", latest.replied),
        ],
        color=ORANGE,
    )
    note = (
        '<p class="note">Sent counts every message the platform took (delivered and read ones'
        " too); click rate is the share of those recipients who clicked one of its links."
        " Telegram reports no delivery, so its messages stay at sent.</p>"
    )
    return table + funnel + note


def _links(links: Sequence[LinkCount], days: int) -> str:
    if not links:
        return '<p class="note">No short links yet.</p>'
    rows = [
        (
            f"<code>{escape(SHORT_PATH)}/{escape(link.code)}</code>",
            f'<span class="url">{escape(link.url)}</span>',
            f"#{link.broadcast_id}" if link.broadcast_id is not None else "—",
            _n(link.clicks),
            _n(link.clickers),
            _n(link.recent),
            f"{link.last_click:%Y-%m-%d %H:%M}" if link.last_click else "—",
        )
        for link in links
    ]
    head = (
        "Link",
        "Leads to",
        "Broadcast",
        "Clicks",
        "Contacts",
        f"Last {days} days",
        "Last click (UTC)",
    )
    return _table(head, rows, {3, 4, 5})
