"""The chat widget, `GET /widget/<channel>`: a page for an iframe on the business's website.

It shows one button per configured messenger account, each a click-to-chat link carrying the
channel's join keyword, with a QR code of the link beside it for visitors on a computer. The
page is one self-contained HTML file: inline CSS (allowed by its hash) and QR codes as data:
PNGs, no script, no fonts or images from elsewhere, so it works without JavaScript and a
Content-Security-Policy can forbid every outside load. Its words and markup are the templates
widget*.html and widget.css in bridge/web/templates.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal
from urllib.parse import unquote, urlsplit

from aiohttp import web
from jinja2 import Environment

from bridge.config import WidgetSettings
from bridge.config_sections import PLATFORMS
from bridge.protocols import Connector
from bridge.services.click_to_chat import payload_problem, qr_png
from storage import Database

log = logging.getLogger(__name__)

WIDGET_PATH = "/widget"
MAX_AGE = 300  # seconds browsers and proxies may keep the page: keyword changes show soon
QR_CACHE = 256  # QR images kept, by link: the same few links are drawn for every visitor
NAME_MAX = 64  # channel names are at most this long

Language = Literal["en", "de"]
# Why a widget page is missing, as its template words it.
Missing = Literal["missing", "no_accounts"]
# Nothing loads from anywhere but the page itself: its one style block (by hash) and the
# data: images. `form-action` and `base-uri` close the gaps `default-src` leaves open.
_POLICY = (
    "default-src 'none'; style-src 'sha256-{style_hash}'; img-src data:; base-uri 'none';"
    " form-action 'none'"
)


@dataclass(frozen=True, slots=True)
class Button:
    """One account's click-to-chat link, as the widget shows it."""

    platform: str
    url: str
    handle: str
    qr: str  # a data: URL of the link's QR code


class Widget:
    """Serves GET /widget/<channel>: click-to-chat buttons and QR codes for another site."""

    def __init__(
        self,
        db: Database,
        settings: WidgetSettings,
        connectors: Sequence[Connector],
        templates: Environment,
    ) -> None:
        self._db = db
        self._settings = settings
        self._connectors = connectors
        self._templates = templates
        self._qr: dict[str, str] = {}
        # The page's one style block is the template widget.css, allowed by its hash.
        css = templates.get_template("widget.css").render()
        style_hash = base64.b64encode(hashlib.sha256(css.encode()).digest()).decode()
        policy = _POLICY.format(style_hash=style_hash)
        if settings.allowed_origins:
            policy += "; frame-ancestors " + " ".join(settings.allowed_origins)
        # Without the setting no frame-ancestors at all: any site may frame the page.
        self._headers = {
            "Content-Security-Policy": policy,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            # A site that isolates itself (COEP) may embed the page too.
            "Cross-Origin-Resource-Policy": "cross-origin",
        }

    def routes(self) -> list[web.RouteDef]:
        """GET /widget/<channel>."""
        return [web.get(WIDGET_PATH + "/{channel}", self._serve)]

    async def _serve(self, request: web.Request) -> web.Response:
        language = choose_language(request)
        name = request.match_info["channel"]
        channel = None
        if len(name) <= NAME_MAX:
            channel = await self._db.read_tx(lambda tx: tx.subscriptions.channel_by_name(name))
        if channel is None or not channel.join_keyword:
            return self._refusal(language, "missing")
        buttons = await self._buttons(channel.join_keyword)
        if not buttons:
            return self._refusal(language, "no_accounts")
        body = render(
            self._templates,
            language,
            channel.name,
            channel.join_keyword,
            buttons,
            self._settings.text_for(channel.name),
        )
        return web.Response(
            text=body,
            content_type="text/html",
            headers={
                **self._headers,
                "Cache-Control": f"public, max-age={MAX_AGE}",
                "Vary": "Accept-Language",
                "Content-Language": language,
            },
        )

    async def _buttons(self, keyword: str) -> list[Button]:
        """A button per account whose links can carry the keyword, platform by platform."""
        buttons = []
        order = {platform: index for index, platform in enumerate(PLATFORMS)}
        for connector in sorted(self._connectors, key=lambda c: order.get(c.platform, len(order))):
            platform = connector.platform
            if payload_problem(platform, keyword) is not None:
                log.debug("widget: %s links cannot carry the keyword %r", platform, keyword)
                continue
            try:
                url = connector.chat_link(keyword)
            except ValueError:
                url = None
            if url is None:  # no public address configured, or not learned yet
                continue
            buttons.append(Button(platform, url, handle_of(url), await self._qr_of(url)))
        return buttons

    async def _qr_of(self, url: str) -> str:
        """The link's QR code as a data: URL, drawn off the event loop once."""
        found = self._qr.get(url)
        if found is None:
            png = await asyncio.to_thread(qr_png, url)
            found = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
            if len(self._qr) >= QR_CACHE:
                del self._qr[next(iter(self._qr))]
            self._qr[url] = found
        return found

    def _refusal(self, language: Language, reason: Missing) -> web.Response:
        """A 404 page in plain words; not kept, so a channel set up later shows at once."""
        page = self._templates.get_template("widget_missing.html")
        return web.Response(
            status=404,
            text=page.render(language=language, reason=reason),
            content_type="text/html",
            headers={
                **self._headers,
                "Cache-Control": "no-store",
                "Vary": "Accept-Language",
                "Content-Language": language,
            },
        )


def choose_language(request: web.Request) -> Language:
    """German or English: `?lang=` first, then the best of Accept-Language; English else."""
    asked = request.query.get("lang", "").strip().lower().partition("-")[0]
    if asked in ("en", "de"):
        return "de" if asked == "de" else "en"
    best: tuple[float, int, Language] | None = None
    for index, part in enumerate(request.headers.get("Accept-Language", "").split(",")):
        tag, _, params = part.partition(";")
        primary = tag.strip().lower().partition("-")[0]
        if primary not in ("en", "de"):
            continue
        weight = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        if weight <= 0:
            continue
        # Highest weight wins; among equal weights the one listed first.
        language: Language = "de" if primary == "de" else "en"
        candidate = (weight, -index, language)
        if best is None or candidate[:2] > best[:2]:
            best = candidate
    return best[2] if best is not None else "en"


def handle_of(url: str) -> str:
    """How a customer knows the account a link opens: +number, @bot or the page's name."""
    parts = urlsplit(url)
    if parts.scheme == "sms":
        return parts.path
    name = unquote(parts.path.strip("/"))
    if parts.hostname == "wa.me":
        return "+" + name
    if parts.hostname == "t.me":
        return "@" + name
    return name


def render(
    templates: Environment,
    language: Language,
    name: str,
    keyword: str,
    buttons: Sequence[Button],
    text: str | None = None,
) -> str:
    """The whole page; the template escapes every value it writes."""
    page = templates.get_template("widget.html")
    return page.render(language=language, name=name, keyword=keyword, buttons=buttons, text=text)
