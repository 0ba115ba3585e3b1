"""The bridge's short links with click counting (click-to-chat links: connectors.chatlinks).

Short links are `{public_url}/s/<code>`: a GET records a click and redirects (302) to the URL.
A broadcast gives each recipient their own `{public_url}/s/<code>/<token>`; the token is the
contact id enciphered and signed with a key kept in the database (like bridge.web.media's), so a
click is attributed to the contact while the link shows nothing of them, and a changed token
still leads to the URL but names nobody.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
import secrets
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TypeVar
from urllib.parse import quote, urlsplit, urlunsplit

from aiohttp import web

from bridge.recent import Recent
from storage import BatchKind, Database, Tx, Writer
from storage.shortlinks import Click, ShortLink

log = logging.getLogger(__name__)
R = TypeVar("R")
CLICK_WINDOW = 60.0  # seconds in which a visitor's clicks on a link count once
CLICK_VISITORS = 100_000  # (link, visitor) pairs remembered at most

# -- short links --------------------------------------------------------------------------------

SHORT_PATH = "/s"
MAX_URL = 2000
_KEY = "links.signing_key"
# A URL in a text: http(s):// and everything up to a space or a character no URL carries
# unescaped (quotes, angle brackets, backticks, braces, |, \ and ^).
_URL_IN_TEXT = re.compile(r"(?i)\bhttps?://[^\s<>\"`{}|\\^]+")
# Punctuation that ends a sentence rather than the URL; a closing bracket belongs to the
# URL only when the URL opened it (https://en.wikipedia.org/wiki/Bridge_(structure)).
_TRAILING = ".,;:!?'\"*"
_CLOSERS = {")": "(", "]": "["}
_CODE = re.compile(r"^[A-Za-z0-9]{1,16}$")
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{22}$")
# What stays as it is when a URL with non-ASCII characters is made fit for a Location header.
_URL_SAFE = "!#$%&'()*+,/:;=?@[]~"
# Link-preview fetchers of messengers, chat tools and search engines: they follow a link when
# it is posted, not when a person clicks it, so they are redirected without counting.
_PREVIEWERS = (
    "telegrambot",
    "whatsapp",
    "facebookexternalhit",
    "facebot",
    "slackbot",
    "slack-imgproxy",
    "twitterbot",
    "discordbot",
    "linkedinbot",
    "skypeuripreview",
    "synapse",
    "googlebot",
    "bingbot",
    "applebot",
    "iframely",
    "embedly",
    "redditbot",
)


def check_url(url: str) -> str:
    """The URL if a short link may lead to it; a ValueError says why not."""
    shown = url if len(url) <= 80 else url[:79] + "…"
    if len(url) > MAX_URL:
        msg = f"the link has {len(url):,} characters; at most {MAX_URL:,} can be shortened"
        raise ValueError(msg)
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        msg = f"a link cannot contain spaces or control characters: {shown}"
        raise ValueError(msg)
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        msg = f"not a link: {shown}"
        raise ValueError(msg) from None
    if "://" not in url:
        msg = f"write the whole link, starting with https:// (or http://), not {shown}"
        raise ValueError(msg)
    if parts.scheme.lower() not in ("http", "https"):
        msg = f"only http:// and https:// links can be shortened, not {shown}"
        raise ValueError(msg)
    if not host or not parts.netloc:
        msg = f"the link has no host name: {shown}"
        raise ValueError(msg)
    return url


def urls_in(text: str) -> list[tuple[int, int, str]]:
    """(start, end, URL) of every http(s) URL in a text, without the punctuation after it."""
    found = []
    for match in _URL_IN_TEXT.finditer(text):
        url = match.group(0)
        while url and _ends_outside(url):
            url = url[:-1]
        start = match.start()
        found.append((start, start + len(url), url))
    return found


def _ends_outside(url: str) -> bool:
    """Whether the URL's last character is punctuation after it rather than part of it."""
    last = url[-1]
    if last in _TRAILING:
        return True
    opener = _CLOSERS.get(last)
    return opener is not None and url.count(opener) < url.count(last)


def is_preview(user_agent: str) -> bool:
    """Whether a request comes from a link-preview fetcher rather than a person."""
    agent = user_agent.lower()
    return any(name in agent for name in _PREVIEWERS)


def ascii_url(url: str) -> str:
    """The URL with a non-ASCII host in IDNA and other non-ASCII characters %-encoded."""
    if url.isascii():
        return url
    parts = urlsplit(url)
    netloc = parts.netloc
    if not netloc.isascii():
        userinfo, at, hostport = netloc.rpartition("@")
        host, colon, port = hostport.partition(":")
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            host = quote(host, safe="")
        netloc = f"{quote(userinfo, safe=_URL_SAFE)}{at}{host}{colon}{port}"
    return urlunsplit(
        (
            parts.scheme,
            netloc,
            quote(parts.path, safe=_URL_SAFE),
            quote(parts.query, safe=_URL_SAFE),
            quote(parts.fragment, safe=_URL_SAFE),
        )
    )


def _round(key: bytes, code: str, number: int, half: bytes) -> bytes:
    message = b"round%d:" % number + code.encode() + b":" + half
    return hmac.new(key, message, hashlib.sha256).digest()[:4]


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def _encipher(key: bytes, code: str, block: bytes) -> bytes:
    """A 4-round Feistel permutation of 8 bytes (HMAC rounds), different for every code."""
    left, right = block[:4], block[4:]
    for number in range(4):
        left, right = right, _xor(left, _round(key, code, number, right))
    return left + right


def _decipher(key: bytes, code: str, block: bytes) -> bytes:
    left, right = block[:4], block[4:]
    for number in reversed(range(4)):
        left, right = _xor(right, _round(key, code, number, left)), left
    return left + right


def _tag(key: bytes, code: str, contact_id: int) -> bytes:
    return hmac.new(key, f"click:{code}:{contact_id}".encode(), hashlib.sha256).digest()[:8]


def make_token(key: bytes, code: str, contact_id: int) -> str:
    """22 URL-safe characters: the contact id enciphered for this code, and a signature."""
    if not 0 <= contact_id < 2**63:
        msg = f"not a contact id: {contact_id}"
        raise ValueError(msg)
    sealed = _encipher(key, code, contact_id.to_bytes(8, "big"))
    raw = sealed + _tag(key, code, contact_id)
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def read_token(key: bytes, code: str, token: str) -> int | None:
    """The contact id a token of this code names; None when it is not one the bridge made."""
    if not _TOKEN.match(token):
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "==")
    except ValueError:
        return None
    if len(raw) != 16:
        return None
    contact_id = int.from_bytes(_decipher(key, code, raw[:8]), "big")
    if not hmac.compare_digest(raw[8:], _tag(key, code, contact_id)):
        return None
    return contact_id


class ClickGate:
    """Lets a visitor's click on a link count once a minute: reloading (or a script sending
    GETs) must neither fill the database nor inflate a broadcast's figures. Visitors are kept
    as salted hashes, in memory only, and forgotten after the minute."""

    def __init__(self, window: float = CLICK_WINDOW, capacity: int = CLICK_VISITORS) -> None:
        self._salt = secrets.token_bytes(16)
        # Past the capacity the oldest visitor may count again a little early.
        self._counted = Recent(window, capacity)

    def admit(self, link_id: int, visitor: str, now: float) -> bool:
        """True when this visit counts as a click (the visitor's first in the window)."""
        key = hashlib.sha256(self._salt + f"{link_id}\n{visitor}".encode()).digest()[:16]
        return self._counted.first(key, now)


def visitor_of(request: web.Request, contact_id: int | None) -> str:
    """Who is clicking: the contact their own link's token names, else their address and user
    agent (as the bridge sees them; never stored)."""
    if contact_id is not None:
        return f"contact:{contact_id}"
    return f"client:{request.remote or ''}\n{request.headers.get('User-Agent', '')}"


def _record_clicks(tx: Tx, clicks: Sequence[Click]) -> list[None]:
    tx.links.record_clicks(clicks)
    return [None] * len(clicks)


# The writer's kind for clicks: the clicks of one group commit are one INSERT.
CLICKS: BatchKind[Click, None] = BatchKind("link_clicks", _record_clicks)


class ShortLinks:
    """Makes short links, rewrites the URLs of a text into them, and follows them (GET /s/…)."""

    def __init__(
        self,
        db: Database,
        public_url: str | None,
        *,
        writer: Writer | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        """With a `writer`, links and clicks are written in its group commits (the web
        process); without one, each in a transaction of its own."""
        self._db = db
        self._public_url = public_url.rstrip("/") if public_url else None
        self._writer = writer
        self._clock = clock or (lambda: datetime.now(UTC))
        self._key: bytes | None = None
        self._gate = ClickGate()

    @property
    def prefix(self) -> str:
        """`{public_url}/s/`, what every short link starts with."""
        if self._public_url is None:
            msg = "short links need [bridge] public_url"
            raise RuntimeError(msg)
        return f"{self._public_url}{SHORT_PATH}/"

    async def _write(self, fn: Callable[[Tx], R]) -> R:
        if self._writer is not None:
            return await self._writer.call(fn)
        return await self._db.write_tx(fn)

    async def _signing_key(self) -> bytes:
        if self._key is None:
            fresh = secrets.token_hex(32)
            stored = await self._db.write_tx(lambda tx: tx.kv_put_new(_KEY, fresh))
            self._key = bytes.fromhex(stored)
        return self._key

    async def shorten(self, url: str, *, broadcast_id: int | None = None, by: str) -> str:
        """The short link to `url`: a new one, or for a broadcast its link to that URL."""
        check_url(url)
        prefix = self.prefix
        at = self._clock()
        if broadcast_id is None:
            link = await self._write(
                lambda tx: tx.links.create_link(url, broadcast_id=None, by=by, at=at)
            )
        else:
            link = await self._write(
                lambda tx: tx.links.link_for(url, broadcast_id=broadcast_id, by=by, at=at)
            )
        return prefix + link.code

    async def rewrite(
        self, text: str, *, broadcast_id: int | None, by: str
    ) -> tuple[str, list[str]]:
        """The text with each http(s) URL replaced by its short link, and the codes used.

        A URL that appears twice gets one link (for a broadcast: one per broadcast and URL);
        the bridge's own short links and what cannot be shortened stay as they are.
        """
        prefix = self.prefix
        found = []
        for start, end, url in urls_in(text):
            if url.startswith(prefix):
                continue
            try:
                check_url(url)
            except ValueError:
                continue
            found.append((start, end, url))
        if not found:
            return text, []
        distinct = list(dict.fromkeys(url for _, _, url in found))
        at = self._clock()

        def make(tx: Tx) -> dict[str, ShortLink]:
            made = {}
            for url in distinct:
                if broadcast_id is None:
                    made[url] = tx.links.create_link(url, broadcast_id=None, by=by, at=at)
                else:
                    made[url] = tx.links.link_for(url, broadcast_id=broadcast_id, by=by, at=at)
            return made

        links = await self._write(make)
        parts = []
        position = 0
        for start, end, url in found:
            parts.append(text[position:start])
            parts.append(prefix + links[url].code)
            position = end
        parts.append(text[position:])
        return "".join(parts), [links[url].code for url in distinct]

    async def recipient_url(self, short_url: str, contact_id: int) -> str:
        """The contact's own copy of a short link: `/s/<code>/<token>`; its clicks name them."""
        prefix = self.prefix
        code = short_url[len(prefix) :] if short_url.startswith(prefix) else ""
        if not _CODE.match(code):
            msg = f"not a short link of this bridge: {short_url}"
            raise ValueError(msg)
        key = await self._signing_key()
        return f"{short_url}/{make_token(key, code, contact_id)}"

    async def recipient_text(self, text: str, codes: Sequence[str], contact_id: int) -> str:
        """A rewritten text with the short links of `codes` made the contact's own."""
        if not codes:
            return text
        prefix = re.escape(self.prefix)
        wanted = "|".join(re.escape(code) for code in codes)
        key = await self._signing_key()
        return re.sub(
            rf"{prefix}({wanted})(?![A-Za-z0-9/])",
            lambda m: f"{m.group(0)}/{make_token(key, m.group(1), contact_id)}",
            text,
        )

    def routes(self) -> list[web.RouteDef]:
        """GET /s/<code> and GET /s/<code>/<token>."""
        return [
            web.get(SHORT_PATH + "/{code}", self._follow),
            web.get(SHORT_PATH + "/{code}/{token}", self._follow),
        ]

    async def _follow(self, request: web.Request) -> web.Response:
        code = request.match_info["code"]
        link = None
        if _CODE.match(code):
            link = await self._db.read_tx(lambda tx: tx.links.link_by_code(code))
        if link is None:
            return web.Response(
                status=404,
                text=(
                    "This short link does not exist. Check that the address was copied"
                    " completely; letters in it are case-sensitive.\n"
                ),
                headers={"Cache-Control": "no-store"},
            )
        # HEAD requests and preview fetchers are no clicks: redirect without counting.
        if request.method == "GET" and not is_preview(request.headers.get("User-Agent", "")):
            token = request.match_info.get("token")
            contact_id = None
            if token is not None:
                contact_id = read_token(await self._signing_key(), code, token)
            at = self._clock()
            if self._gate.admit(link.id, visitor_of(request, contact_id), at.timestamp()):
                await self._record(code, Click(link_id=link.id, at=at, contact_id=contact_id))
        return web.Response(
            status=302,
            headers={
                "Location": ascii_url(link.url),
                "Cache-Control": "no-store",
                "Referrer-Policy": "no-referrer",
            },
        )

    async def _record(self, code: str, click: Click) -> None:
        try:
            if self._writer is not None:  # grouped with the other clicks of the moment
                await self._writer.submit(CLICKS, click)
            else:
                await self._db.write_tx(lambda tx: tx.links.record_clicks([click]))
        except Exception:  # the customer gets where they wanted to go all the same
            log.exception("recording a click on short link %s failed", code)
