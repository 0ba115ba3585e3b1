"""Files at signed, expiring URLs of the bridge: how MMS media reaches Twilio.

Twilio takes outbound media only as a URL it fetches itself. The bridge stores the file in its
database and hands out `{public_url}/media/<id>/<expires>/<signature>/<name>`; the signature is
an HMAC over id and expiry with a key kept in the database, so the dispatcher process that
publishes and the web process that serves agree on it, and a URL cannot be guessed or extended.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import time
from urllib.parse import quote

from aiohttp import web

from bridge.types import FileData
from storage import Database

log = logging.getLogger(__name__)

MEDIA_PATH = "/media"
_KEY = "media.signing_key"
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
# Long enough for a platform's retries, short enough that a leaked link soon stops working.
DEFAULT_TTL = 3600.0
MAX_TTL = 7 * 24 * 3600.0


class MediaStore:
    """Stores files and serves them at signed URLs until they expire."""

    def __init__(self, db: Database, public_url: str | None) -> None:
        self._db = db
        self._public_url = public_url.rstrip("/") if public_url else None
        self._key: bytes | None = None

    async def _signing_key(self) -> bytes:
        if self._key is None:
            fresh = secrets.token_hex(32)
            stored = await self._db.write_tx(lambda tx: tx.kv_put_new(_KEY, fresh))
            self._key = bytes.fromhex(stored)
        return self._key

    def _sign(self, key: bytes, media_id: int, expires: int) -> str:
        return hmac.new(key, f"{media_id}:{expires}".encode(), hashlib.sha256).hexdigest()[:32]

    async def publish(self, file: FileData, *, ttl: float = DEFAULT_TTL) -> str:
        """Store the file; return the absolute URL that serves it for `ttl` seconds."""
        if self._public_url is None:
            msg = "serving media needs [bridge] public_url"
            raise RuntimeError(msg)
        ttl = min(max(ttl, 60.0), MAX_TTL)
        key = await self._signing_key()
        now = time.time()
        name = _SAFE_NAME.sub("_", file.filename).strip("._") or "file"
        media_id = await self._db.write_tx(
            lambda tx: tx.put_media(name[:200], file.mime_type, file.data, now, ttl)
        )
        expires = int(now + ttl)
        signature = self._sign(key, media_id, expires)
        return f"{self._public_url}{MEDIA_PATH}/{media_id}/{expires}/{signature}/{quote(name)}"

    def routes(self) -> list[web.RouteDef]:
        """GET /media/<id>/<expires>/<signature>/<name>."""
        # Bounded numbers: a longer run of digits names no file (and int() refuses 4300+).
        path = MEDIA_PATH + r"/{id:\d{1,19}}/{expires:\d{1,12}}/{sig:[0-9a-f]{1,64}}/{name}"
        return [web.get(path, self._serve)]

    async def _serve(self, request: web.Request) -> web.Response:
        media_id = int(request.match_info["id"])
        expires = int(request.match_info["expires"])
        key = await self._signing_key()
        expected = self._sign(key, media_id, expires)
        if not hmac.compare_digest(expected, request.match_info["sig"]):
            return web.Response(status=403, text="bad signature")
        if expires < time.time():
            return web.Response(status=410, text="this link has expired")
        found = await self._db.read_tx(lambda tx: tx.media(media_id))
        if found is None:
            return web.Response(status=404, text="no such file")
        filename, mime_type, data, _ = found
        # Whoever sent the file chose its bytes and its type: an HTML or SVG file must not run
        # as a page of the bridge's origin. Platforms fetching media read the type and bytes
        # and ignore the rest; a browser saves the file instead of showing it.
        return web.Response(
            body=data,
            headers={
                "Content-Type": mime_type,
                "Content-Disposition": f"attachment; filename*=UTF-8''{quote(filename)}",
                "X-Content-Type-Options": "nosniff",
                "Content-Security-Policy": "default-src 'none'; sandbox",
                "Cache-Control": "private, max-age=300",
            },
        )
