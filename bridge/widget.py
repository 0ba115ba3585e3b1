"""The chat widget, `GET /widget/<channel>`: a page for an iframe on the business's website.

It shows one button per configured messenger account, each a click-to-chat link carrying the
channel's join keyword, with a QR code of the link beside it for visitors on a computer. The
page is one self-contained HTML file: inline CSS (allowed by its hash) and QR codes as data:
PNGs, no script, no fonts or images from elsewhere, so it works without JavaScript and a
Content-Security-Policy can forbid every outside load.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from typing import Literal
from urllib.parse import unquote, urlsplit

from aiohttp import web

from bridge.config import WidgetSettings
from bridge.protocols import Connector
from bridge.types import PLATFORMS
from commands.link import payload_problem, qr_png
from storage import Database, subscriptions

log = logging.getLogger(__name__)

WIDGET_PATH = "/widget"
MAX_AGE = 300  # seconds browsers and proxies may keep the page: keyword changes show soon
QR_CACHE = 256  # QR images kept, by link: the same few links are drawn for every visitor
NAME_MAX = 64  # channel names are at most this long

Language = Literal["en", "de"]

_TEXTS: dict[Language, dict[str, str]] = {
    "en": {
        "title": "{name}: chat with us",
        "how": "Tap a button to open the chat, or scan its code with your phone.",
        "keyword": "Or send {keyword} in any of these chats.",
        "new_window": "(opens in a new window)",
        "qr": "QR code: {label}, {handle}",
        "telegram": "Chat on Telegram",
        "whatsapp": "Chat on WhatsApp",
        "messenger": "Chat on Messenger",
        "sms": "Send an SMS",
        "missing_title": "Chat widget not available",
        "missing": (
            "No channel of this name can be joined here. Check the address of the widget"
            " on your website."
        ),
        "no_accounts": "No messenger account can carry this channel's join keyword yet.",
    },
    "de": {
        "title": "{name}: Schreiben Sie uns",
        "how": (
            "Tippen Sie auf eine Schaltfläche, um den Chat zu öffnen, oder scannen Sie den Code"
            " mit dem Handy."
        ),
        "keyword": "Oder senden Sie {keyword} in einem dieser Chats.",
        "new_window": "(öffnet ein neues Fenster)",
        "qr": "QR-Code: {label}, {handle}",
        "telegram": "Auf Telegram schreiben",
        "whatsapp": "Auf WhatsApp schreiben",
        "messenger": "Im Messenger schreiben",
        "sms": "SMS senden",
        "missing_title": "Chat-Widget nicht verfügbar",
        "missing": (
            "Einem Kanal mit diesem Namen kann man hier nicht beitreten. Prüfen Sie die Adresse"
            " des Widgets auf Ihrer Website."
        ),
        "no_accounts": ("Noch kann kein Messenger-Konto das Stichwort dieses Kanals übertragen."),
    },
}

# Button colours chosen for at least 4.5:1 contrast with white text (WCAG AA).
_CSS = """
:root{color-scheme:light}
*{box-sizing:border-box}
body{margin:0;background:#fff;color:#1f2328;
font:16px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
main{padding:16px;max-width:1200px;margin:0 auto}
h1{font-size:1.35em;margin:0 0 .25em}
p{margin:.25em 0 .75em}
.text{font-size:1.05em}
.how,.keyword{color:#4a5560}
.options{list-style:none;margin:12px 0;padding:0;display:grid;gap:12px;
grid-template-columns:repeat(auto-fit,minmax(12rem,1fr))}
.option{display:flex;flex-direction:column;align-items:center;gap:10px;padding:12px;
border:1px solid #d0d7de;border-radius:10px}
.button{display:block;width:100%;min-height:48px;padding:10px 14px;border-radius:8px;
color:#fff;text-decoration:none;text-align:center;font-weight:600}
.button:hover{text-decoration:underline}
.button:focus{outline:3px solid #1f2328;outline-offset:3px}
.button:focus:not(:focus-visible){outline:none}
.button .handle{display:block;font-weight:400;font-size:.9em;overflow-wrap:anywhere}
.telegram{background:#1d6fa5}.whatsapp{background:#0a7c4a}
.messenger{background:#0062e0}.sms{background:#3c4650}
.qr{width:148px;height:148px;image-rendering:pixelated}
kbd{font:inherit;font-weight:600;background:#f0f2f4;border:1px solid #d0d7de;border-radius:4px;
padding:0 .3em;overflow-wrap:anywhere}
.hidden{position:absolute;width:1px;height:1px;overflow:hidden;clip-path:inset(50%);
white-space:nowrap}
@media (max-width:30rem){main{padding:10px}.option{flex-direction:row}
.qr{width:112px;height:112px}}
"""
_STYLE_HASH = base64.b64encode(hashlib.sha256(_CSS.encode()).digest()).decode()
# Nothing loads from anywhere but the page itself: its one style block (by hash) and the
# data: images. `form-action` and `base-uri` close the gaps `default-src` leaves open.
_POLICY = (
    f"default-src 'none'; style-src 'sha256-{_STYLE_HASH}'; img-src data:; base-uri 'none';"
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
        self, db: Database, settings: WidgetSettings, connectors: Sequence[Connector]
    ) -> None:
        self._db = db
        self._settings = settings
        self._connectors = connectors
        self._qr: dict[str, str] = {}
        policy = _POLICY
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
        texts = _TEXTS[language]
        name = request.match_info["channel"]
        channel = None
        if len(name) <= NAME_MAX:
            channel = await self._db.run_read(
                lambda conn: subscriptions.channel_by_name(conn, name)
            )
        if channel is None or not channel.join_keyword:
            return self._refusal(language, texts["missing"])
        buttons = await self._buttons(channel.join_keyword)
        if not buttons:
            return self._refusal(language, texts["no_accounts"])
        body = render(
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

    def _refusal(self, language: Language, message: str) -> web.Response:
        """A 404 page in plain words; not kept, so a channel set up later shows at once."""
        title = _TEXTS[language]["missing_title"]
        return web.Response(
            status=404,
            text=_page(language, title, f"<h1>{escape(title)}</h1><p>{escape(message)}</p>"),
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
    language: Language,
    name: str,
    keyword: str,
    buttons: Sequence[Button],
    text: str | None = None,
) -> str:
    """The whole page. Every string from the database or the settings is escaped here."""
    texts = _TEXTS[language]
    items = []
    for button in buttons:
        label = texts.get(button.platform, button.platform)
        alt = texts["qr"].format(label=label, handle=button.handle)
        items.append(
            '<li class="option">'
            f'<a class="button {escape(button.platform)}" href="{escape(button.url)}"'
            ' target="_blank" rel="noopener noreferrer">'
            f"{escape(label)}"
            f'<span class="handle">{escape(button.handle)}</span>'
            f'<span class="hidden"> {escape(texts["new_window"])}</span></a>'
            f'<img class="qr" src="{button.qr}" width="148" height="148" alt="{escape(alt)}">'
            "</li>"
        )
    keyword_line = escape(texts["keyword"]).replace("{keyword}", f"<kbd>{escape(keyword)}</kbd>")
    body = (
        f"<h1>{escape(name)}</h1>"
        + (f'<p class="text">{escape(text)}</p>' if text else "")
        + f'<p class="how">{escape(texts["how"])}</p>'
        + f'<ul class="options" role="list">{"".join(items)}</ul>'
        + f'<p class="keyword">{keyword_line}</p>'
    )
    return _page(language, texts["title"].format(name=name), body)


def _page(language: Language, title: str, body: str) -> str:
    return (
        f'<!doctype html><html lang="{language}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="robots" content="noindex">'
        # The browser would ask for /favicon.ico on every view of the widget otherwise.
        '<link rel="icon" href="data:,">'
        f"<title>{escape(title)}</title><style>{_CSS}</style></head>"
        f"<body><main>{body}</main></body></html>"
    )
