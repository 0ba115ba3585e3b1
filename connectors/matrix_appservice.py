"""Matrix appservice mode: the homeserver pushes transactions of events to the bridge, and the
bridge shows each customer as a Matrix user of its own (a puppet) that it registers and speaks as.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import re
import secrets
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import quote

from aiohttp import web

from bridge import bodies
from bridge.config import Settings
from bridge.errors import PermanentError, RateLimited, TransientError
from bridge.types import MirrorPost, StaffMessageRef
from connectors.matrix_api import Homeserver
from connectors.matrix_render import post_content, txn_id
from connectors.staff import SeenIds

log = logging.getLogger(__name__)

# The transactions taken already, in the surface's state: a retried one is answered, not redone.
TXN_KEY = "appservice_txns"
SEEN_TXNS = 200
# 200 events of at most 64 KiB, with room for the envelope.
TRANSACTION_BODY_MAX = 16 * 1024 * 1024


class Transactions:
    """The endpoints the homeserver pushes to, proven by the hs_token; each event of a new
    transaction goes to `on_event`, in order, one transaction at a time."""

    def __init__(
        self,
        hs_token: bytes,
        seen: SeenIds,
        on_event: Callable[[Mapping[str, Any]], Awaitable[None]],
    ) -> None:
        self._hs_token = hs_token
        self._seen = seen
        self._on_event = on_event
        self._lock = asyncio.Lock()

    def routes(self, base: str) -> list[web.RouteDef]:
        """The appservice API under `base` (the settings' listen_path)."""
        # The hs_token is checked before the body is read; a transaction holds up to 100
        # events and 100 ephemeral ones of at most 64 KiB each (Synapse's limits).
        transaction = bodies.guarded(self._transaction, cap=TRANSACTION_BODY_MAX)
        return [
            web.put(f"{base}/_matrix/app/v1/transactions/{{txn}}", transaction),
            web.put(f"{base}/transactions/{{txn}}", transaction),  # before spec r0.1
            web.get(f"{base}/_matrix/app/v1/users/{{user}}", self._query),
            web.get(f"{base}/_matrix/app/v1/rooms/{{alias}}", self._query),
            web.post(f"{base}/_matrix/app/v1/ping", self._ping),
        ]

    def _authorized(self, request: web.Request) -> web.Response | None:
        """The homeserver proves itself with the hs_token (a header; a query before v1.4)."""
        header = request.headers.get("Authorization", "")
        given = header[7:] if header.startswith("Bearer ") else request.query.get("access_token")
        if not given:
            return web.json_response(
                {"errcode": "M_UNAUTHORIZED", "error": "missing token"}, status=401
            )
        if not hmac.compare_digest(given.encode(), self._hs_token):
            return web.json_response({"errcode": "M_FORBIDDEN", "error": "bad token"}, status=403)
        return None

    async def _transaction(self, request: web.Request) -> web.Response:
        """One transaction of events; a retried one (same id) is answered, not redone."""
        refused = self._authorized(request)
        if refused is not None:
            return refused
        txn = request.match_info["txn"]
        try:
            body = await request.json()
        except (ValueError, RecursionError):
            return web.json_response({"errcode": "M_NOT_JSON", "error": "not JSON"}, status=400)
        events = body.get("events") if isinstance(body, dict) else None
        if not isinstance(events, list):
            return web.json_response(
                {"errcode": "M_BAD_JSON", "error": "events is missing"}, status=400
            )
        # One transaction at a time, in order; a retried one (same id) is answered, not redone.
        async with self._lock:
            if await self._seen.seen(txn):
                return web.json_response({})
            try:
                for event in events:
                    if isinstance(event, dict):
                        await self._on_event(event)
            except Exception:
                log.exception("Matrix: transaction %s not stored; the homeserver retries", txn)
                return web.json_response(
                    {"errcode": "M_UNKNOWN", "error": "not stored"}, status=500
                )
            await self._seen.remember(txn)
        return web.json_response({})

    async def _query(self, request: web.Request) -> web.Response:
        """The bridge creates its users and rooms itself; it knows of no others."""
        refused = self._authorized(request)
        if refused is not None:
            return refused
        return web.json_response({"errcode": "M_NOT_FOUND", "error": "unknown"}, status=404)

    async def _ping(self, request: web.Request) -> web.Response:
        refused = self._authorized(request)
        return refused if refused is not None else web.json_response({})


class Puppets:
    """The customers as Matrix users of the bridge's namespace, registered on first use."""

    def __init__(self, homeserver: Homeserver, prefix: str, key: bytes, server: str) -> None:
        self._hs = homeserver
        self.prefix = prefix
        self._key = key
        self._server = server
        self._in: set[tuple[str, str]] = set()

    def user_id(self, customer: str) -> str:
        """The Matrix user a customer (`<platform>_<chat id>`) appears as, e.g.
        @customer_5f0c…:example.org: a keyed hash, because a homeserver never forgets a user
        id (membership history keeps it), and a phone number in it would outlive an erasure.
        Users made before under readable ids keep their past events; new posts use these."""
        digest = hmac.new(self._key, customer.encode(), "sha256").hexdigest()
        return f"{self.prefix}{digest[:32]}:{self._server}"

    async def ready(self, room: str, customer: str, name: str) -> str:
        """The customer's user, registered, named and in the room (each step idempotent)."""
        user = self.user_id(customer)
        if (user, room) in self._in:
            return user
        local = user[1:].partition(":")[0]
        try:
            await self._hs.api(
                "POST",
                "/_matrix/client/v3/register",
                json={"type": "m.login.application_service", "username": local},
            )
        except PermanentError as exc:
            if exc.code != "M_USER_IN_USE":
                raise
        await self._hs.api(
            "PUT",
            f"/_matrix/client/v3/profile/{quote(user)}/displayname",
            params={"user_id": user},
            json={"displayname": name[:200] or customer},
        )
        try:
            await self._hs.api(
                "POST", f"/_matrix/client/v3/rooms/{quote(room)}/invite", json={"user_id": user}
            )
        except (PermanentError, TransientError) as exc:
            if isinstance(exc, RateLimited) or "already in the room" not in str(exc):
                raise
        await self._hs.api(
            "POST", f"/_matrix/client/v3/join/{quote(room)}", params={"user_id": user}, json={}
        )
        self._in.add((user, room))
        return user

    async def send_as(
        self, user: str, room: str, content: dict[str, Any], txn: str, kind: str = "m.room.message"
    ) -> str:
        """Send an event as the customer's user (`user_id`: appservice identity assertion)."""
        await self._hs.guard.check(room)
        answer = await self._hs.api(
            "PUT",
            f"/_matrix/client/v3/rooms/{quote(room)}/send/{quote(kind)}/{quote(txn)}",
            params={"user_id": user},
            json=content,
        )
        return str(answer["event_id"])

    async def post(self, room: str, root: str, post: MirrorPost) -> StaffMessageRef:
        assert post.customer is not None
        # Before the customer's user is made and files uploaded.
        await self._hs.guard.check(room)
        user = await self.ready(room, post.customer, post.author)
        first: str | None = None
        if post.text or not post.files:
            content = post_content(root, post, as_customer=True)
            first = await self.send_as(user, room, content, txn_id("post", post.marker))
        for index, file in enumerate(post.files):
            content = await self._hs.file_content(root, file, post.marker)
            event = await self.send_as(
                user, room, content, txn_id("file", post.marker, index) if post.marker else txn_id()
            )
            first = first or event
        assert first is not None
        return StaffMessageRef(f"{room}/{first}")

    async def redact(self, room: str, event: str, user: str, reason: str = "data erasure") -> None:
        """Redact an event as the customer's user that sent it."""
        await self._hs.api(
            "PUT",
            f"/_matrix/client/v3/rooms/{quote(room)}/redact/"
            f"{quote(event)}/{txn_id('erase', event)}",
            params={"user_id": user},
            json={"reason": reason},
        )

    async def erase(self, room: str, users: set[str]) -> None:
        """Rename erased customers' users and take them out of the room: the customer's name
        lives on in the user's profile and room membership."""
        for user in users:
            await self._hs.api(
                "PUT",
                f"/_matrix/client/v3/profile/{quote(user)}/displayname",
                params={"user_id": user},
                json={"displayname": "Erased customer"},
            )
            with contextlib.suppress(PermanentError):
                await self._hs.api(
                    "POST",
                    f"/_matrix/client/v3/rooms/{quote(room)}/leave",
                    params={"user_id": user},
                    json={},
                )
            self._in.discard((user, room))


def registration(settings: Settings) -> tuple[str, list[str]]:
    """The appservice registration file for the homeserver (YAML), and notes for the person.

    Tokens come from the settings; missing ones are made here and must go into the settings
    too (the notes say so).
    """
    mx = settings.matrix
    notes: list[str] = []
    if mx.user_id is None or ":" not in mx.user_id:
        msg = "[matrix] user_id (the bridge's bot, e.g. @support-bridge:example.org) is needed"
        raise ValueError(msg)
    tokens = {}
    for key in ("as_token", "hs_token"):
        value = getattr(mx, key)
        if value is None:
            tokens[key] = secrets.token_urlsafe(32)
            notes.append(f'add to [matrix] in your settings: {key} = "{tokens[key]}"')
        else:
            tokens[key] = value.get_secret_value()
    if mx.mode != "appservice":
        notes.append('add to [matrix] in your settings: mode = "appservice"')
    base = settings.bridge.public_url or f"http://{settings.bridge.listen}"
    if settings.bridge.public_url is None:
        notes.append(f"no [bridge] public_url: the homeserver is told to call {base}")
    local, _, server = mx.user_id[1:].partition(":")
    users = "@" + re.escape(mx.user_prefix) + ".*:" + re.escape(server)
    text = "\n".join(
        [
            "# Matrix application service registration of the support bridge.",
            "# Add its path to app_service_config_files in homeserver.yaml and restart it.",
            "id: support-bridge",
            f"url: {json.dumps(base.rstrip('/') + mx.listen_path)}",
            f"as_token: {json.dumps(tokens['as_token'])}",
            f"hs_token: {json.dumps(tokens['hs_token'])}",
            f"sender_localpart: {json.dumps(local)}",
            "rate_limited: false",
            "namespaces:",
            "  users:",
            "    - exclusive: true",
            f"      regex: {json.dumps(users)}",
            "  aliases: []",
            "  rooms: []",
            "",
        ]
    )
    return text, notes
