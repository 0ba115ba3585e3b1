"""The statistics page, `GET /stats`: the figures of `/stats` as one HTML page with charts.

People open it with the login link `/stats` answers: `{public_url}/stats?token=<expires>.<sig>`,
where the signature is an HMAC over the expiry with a key kept in the database (like
bridge.web.media's), so every process of the bridge accepts it and nobody can make or extend
one. Scripts may send `Authorization: Bearer <[stats] api_key>` instead. The page is
self-contained: inline CSS and inline SVG, no script, nothing fetched from elsewhere. Its words
and markup are the templates stats*.html and stats.css in bridge/web/templates.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Literal
from urllib.parse import urlencode

from aiohttp import web
from jinja2 import Environment
from markupsafe import Markup

from bridge.charts import BLUE, GREEN, LIGHT_ORANGE, ORANGE, BarChart, Series, bar_svg, hbar_svg
from bridge.config import Settings
from bridge.links import SHORT_PATH, is_preview
from storage import Database
from storage import stats as store
from storage.stats import Overview

log = logging.getLogger(__name__)

STATS_PATH = "/stats"
LOGIN_TTL = 3600  # seconds a login link works: long enough to look around, short if leaked
_KEY = "stats.signing_key"
# More days than this are drawn as weeks: a year of daily bars is a smear at chat size.
MAX_BARS = 62
PERIODS = (7, 14, 30, 90, 365)
_DIGITS = re.compile(r"[0-9]{1,15}")
CHANNELS_DRAWN = 30  # bars in the channel chart; the page counts the rest
# What a page with one message says instead of the figures (the template words it).
Message = Literal["login", "no_api_key", "wrong_api_key", "invalid", "expired", "days", "preview"]


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


class StatsLogin:
    """Makes the login links of GET /stats and checks the credentials a request brings."""

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
            stored = await self._db.read_tx(lambda tx: tx.kv_get(_KEY))
            if stored is None:
                fresh = secrets.token_hex(32)
                stored = await self._db.write_tx(lambda tx: tx.kv_put_new(_KEY, fresh))
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

    def now(self) -> datetime:
        """The time by the bridge's clock, which a test may turn."""
        return self._clock()

    async def refusal(self, request: web.Request) -> tuple[int, Message] | None:
        """Why the request may not see the page (401 or 403, and what to say), or None."""
        if _bearer(request):
            credential = request.headers["Authorization"].partition(" ")[2]
            if self._api_key is None:
                return 403, "no_api_key"
            if not hmac.compare_digest(credential.strip().encode(), self._api_key):
                return 403, "wrong_api_key"
            return None
        token = request.query.get("token")
        if token is None:
            return 401, "login"
        expires_text, _, signature = token.partition(".")
        expires = int(expires_text) if _DIGITS.fullmatch(expires_text) else -1
        key = await self._signing_key()
        expected = self._sign(key, expires).encode()
        if expires < 0 or not hmac.compare_digest(expected, signature.encode()):
            return 403, "invalid"
        if expires < self._clock().timestamp():
            return 403, "expired"
        return None


class StatsPage:
    """Serves GET /stats to the holders of a login link or of the API key."""

    def __init__(
        self,
        db: Database,
        settings: Settings,
        templates: Environment,
        *,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._db = db
        self._templates = templates
        self.login = StatsLogin(db, settings, clock=clock)

    def routes(self) -> list[web.RouteDef]:
        """GET /stats."""
        return [web.get(STATS_PATH, self._serve)]

    async def _serve(self, request: web.Request) -> web.Response:
        refused = await self.login.refusal(request)
        if refused is not None:
            status, why = refused
            log.info("GET /stats refused (%s)", status)
            # Scripts learn how to authenticate; a browser shows the page's words.
            challenge = {"WWW-Authenticate": 'Bearer realm="stats"'} if status == 401 else {}
            return self._message(status, why, challenge)
        raw = request.query.get("days", str(store.DEFAULT_DAYS))
        if not _DIGITS.fullmatch(raw) or not 1 <= int(raw) <= store.MAX_DAYS:
            return self._message(400, "days")
        days = int(raw)
        if is_preview(request.headers.get("User-Agent", "")):
            # A chat's link preview would show the figures to whoever sees the preview.
            return self._message(200, "preview")
        now = self.login.now()
        overview = await self._db.read_tx(
            lambda tx: tx.stats.overview(now, days=days, broadcasts=10, links=20)
        )
        token = None if _bearer(request) else request.query.get("token")
        return web.Response(
            text=render(self._templates, overview, now=now, token=token),
            content_type="text/html",
            headers=_HEADERS,
        )

    def _message(
        self, status: int, message: Message, headers: dict[str, str] | None = None
    ) -> web.Response:
        """A short page with one message (the refusals and the preview answer)."""
        page = self._templates.get_template("stats_message.html")
        return web.Response(
            status=status,
            text=page.render(reason=message, max_days=store.MAX_DAYS),
            content_type="text/html",
            headers={**_HEADERS, **(headers or {})},
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


def _number(value: int) -> str:
    return f"{value:,}"


def percent(value: float | None) -> str:
    """A share as people read it: 25%, 0.4% (one decimal below 10%), — when there is none."""
    if value is None:
        return "—"
    return f"{value:.0%}" if value >= 0.1 or value == 0 else f"{value:.1%}"


def render(
    templates: Environment, overview: Overview, *, now: datetime, token: str | None = None
) -> str:
    """The whole page; the template escapes every value it writes, the charts are drawn here."""
    totals = store.totals(overview.daily)
    periods = []
    for days in PERIODS:
        query = {"days": str(days)}
        if token is not None:
            query = {"token": token, **query}
        periods.append((days, None if days == overview.days else f"?{urlencode(query)}"))
    platforms = [p for p in totals if p]
    platform_charts = []
    if len(platforms) > 1:
        platform_charts = [
            Markup(bar_svg(chart_of(overview, p), width=600, height=300)) for p in platforms
        ]
    return templates.get_template("stats.html").render(
        overview=overview,
        days=overview.days,
        first=overview.day_list[0],
        last=overview.day_list[-1],
        now=now,
        periods=periods,
        inbound=sum(t[0] for t in totals.values()),
        outbound=sum(t[1] for t in totals.values()),
        broadcast=sum(t[2] for t in totals.values()),
        active=sum(c.active for c in overview.contacts),
        contacts=sum(c.total for c in overview.contacts),
        active_days=store.ACTIVE_DAYS,
        totals=totals,
        short_path=SHORT_PATH,
        # charts.py escapes the text it puts into its SVG.
        messages_chart=Markup(bar_svg(chart_of(overview))),
        platform_charts=platform_charts,
        channels_chart=_channels(overview),
        more_channels=len(overview.channels) - CHANNELS_DRAWN,
        funnel_chart=_funnel(overview),
        number=_number,
        percent=percent,
    )


def _channels(overview: Overview) -> Markup | None:
    """Members per channel, the largest first; None before the first channel."""
    if not overview.channels:
        return None
    rows = [(c.name, c.members) for c in overview.channels[:CHANNELS_DRAWN]]
    return Markup(hbar_svg("Members per channel", rows, color=GREEN))


def _funnel(overview: Overview) -> Markup | None:
    """The latest broadcast, stage by stage; None before the first."""
    if not overview.broadcasts:
        return None
    latest = overview.broadcasts[0]
    stages = [
        ("queued", latest.queued),
        ("sent", latest.sent),
        ("delivered", latest.delivered),
        ("read", latest.read),
        ("clicked", latest.clickers),
        ("replied", latest.replied),
    ]
    title = f"Broadcast #{latest.id}, stage by stage"
    return Markup(hbar_svg(title, stages, color=ORANGE))
