"""A faithful fake of Slack (Web API, Events API over HTTP, Socket Mode) for tests.

The real slack-sdk / slack-bolt talk to it through ``base_url``.  Wire facts it follows
(checked against slack_sdk 3.x sources):

* AsyncWebClient sends ``chat.postMessage``/``chat.update``/``views.*`` as a JSON body and
  most other methods as URL query parameters (``params=``), even on POST; a few methods
  are GET.  The token travels as ``Authorization: Bearer``.  The fake merges query, form,
  multipart and JSON parameters, so any of them work.
* Errors are HTTP 200 ``{"ok": false, "error": ...}``; rate limits are HTTP 429 with a
  ``Retry-After`` header and ``{"ok": false, "error": "ratelimited"}``.
* ``files_upload_v2``: files.getUploadURLExternal (query params) -> POST raw bytes to
  ``upload_url`` without a token (answered ``text/plain`` ``OK - <size>``) ->
  files.completeUploadExternal (``files`` is a JSON string in the query).
* Socket Mode: apps.connections.open (app token) -> ws URL; the server sends ``hello``,
  then envelopes; the client acks ``{"envelope_id", "payload"?}``.
* What a person types reaches the app in Slack's markup (``as_slack_sends``): ``&``, ``<``
  and ``>`` escaped, links as ``<url>``, e-mail addresses as ``<mailto:…|…>``, emoji as
  ``:shortcode:``; in message events and, with ``should_escape``, in slash commands.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import math
import mimetypes
import re
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
import emoji
from aiohttp import web

from tests.fakes.meta import corpus_sample
from tests.fakes.slack_rich import rich_text_of, slack_text_of
from tests.fakes.slack_samples import (
    bot_post_event,
    broadcast_changed_event,
    deleted_event,
    file_share_event,
    thread_broadcast_event,
)

_TS_RE = re.compile(r"^\d+\.\d+$")
_NEVER_STORMED = frozenset({"auth.test", "apps.connections.open"})
_MAX_TEXT = 40000
_MAX_BLOCKS = 50

Params = dict[str, Any]

# A mention picked from Slack's autocomplete is markup already when it is sent.
_PICKED = re.compile(r"<[@#][A-Z0-9]+(?:\|[^<>]*)?>")
# What Slack's clients turn into links: web addresses (without the punctuation after them)
# and e-mail addresses.
_LINKED = re.compile(r"https?://[^\s<>]*[^\s<>.,;:!?)\]'\"]|[\w.+-]+@[\w-]+(?:\.[\w-]+)+")


def _escaped(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _linked(typed: str) -> str:
    out: list[str] = []
    pos = 0
    for match in _LINKED.finditer(typed):
        out.append(_escaped(typed[pos : match.start()]))
        link = _escaped(match.group())
        out.append(f"<{link}>" if "://" in link else f"<mailto:{link}|{link}>")
        pos = match.end()
    out.append(_escaped(typed[pos:]))
    return "".join(out)


def as_slack_sends(typed: str) -> str:
    """The `text` Slack sends for what a person typed ("Formatting text for app surfaces",
    https://api.slack.com/reference/surfaces/formatting): `&`, `<` and `>` escaped, links
    wrapped as `<url>`, e-mail addresses as `<mailto:…|…>`, emoji as `:shortcode:`. A
    mention written as `<@U…>` or `<#C…>` counts as picked from the autocomplete."""
    typed = emoji.demojize(typed, language="alias")
    out: list[str] = []
    pos = 0
    for match in _PICKED.finditer(typed):
        out.append(_linked(typed[pos : match.start()]))
        out.append(match.group())
        pos = match.end()
    out.append(_linked(typed[pos:]))
    return "".join(out)


class SlackError(Exception):
    """An API error answered as HTTP 200 {"ok": false, "error": ...}."""

    def __init__(self, error: str, **extra: Any) -> None:
        super().__init__(error)
        self.error = error
        self.extra = extra


@dataclass
class SlackMessage:
    """One message stored in the fake workspace."""

    channel: str
    ts: str
    thread_ts: str | None = None
    text: str = ""
    blocks: list[dict[str, Any]] | None = None
    user: str | None = None
    bot_id: str | None = None
    username: str | None = None
    icon_url: str | None = None
    files: list[dict[str, Any]] = field(default_factory=list)
    reactions: list[str] = field(default_factory=list)
    history: list[str] = field(default_factory=list)
    deleted: bool = False
    icon_emoji: str | None = None
    reply_broadcast: bool = False
    metadata: dict[str, Any] | None = None
    edited_ts: str | None = None
    client_msg_id: str | None = None

    @property
    def is_reply(self) -> bool:
        """True when this message is a thread reply (thread_ts differs from ts)."""
        return self.thread_ts is not None and self.thread_ts != self.ts


@dataclass
class _Connection:
    ws: web.WebSocketResponse
    connected_at: float
    pending: set[str] = field(default_factory=set)
    closed: asyncio.Event = field(default_factory=asyncio.Event)


class FakeSlack:
    """An aiohttp server on 127.0.0.1 that behaves like Slack for the real SDKs."""

    def __init__(
        self,
        *,
        bot_token: str = "xoxb-1-test",
        app_token: str = "xapp-1-test",
        signing_secret: str = "test-signing-secret",
        team_id: str = "T0001",
        bot_user_id: str = "UBOT",
        bot_id: str = "BBOT",
    ) -> None:
        self.bot_token = bot_token
        self.app_token = app_token
        self.signing_secret = signing_secret
        self.team_id = team_id
        self.team_domain = "fake"
        self.team_name = "Fake Workspace"
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id
        self.api_app_id = "A0001"
        self.verification_token = "fake-verification-token"
        self.scopes = (
            "chat:write,chat:write.customize,channels:history,groups:history,im:history,"
            "reactions:write,users:read,files:read,files:write,commands"
        )

        self.events_url: str | None = None
        self.echo_bot_messages = False
        self.ack_timeout = 5.0
        self.http_timeout = 10.0
        self.unauthorized_file_status = 403

        # records
        self.messages: list[SlackMessage] = []
        self.calls: list[tuple[str, Params]] = []
        self.uploaded: dict[str, tuple[str, bytes]] = {}
        self.responses: list[dict[str, Any]] = []
        self.views: list[dict[str, Any]] = []
        self.ephemerals: list[dict[str, Any]] = []
        self.deleted_files: list[str] = []
        # Seconds to wait before answering a Web API method (a slow Slack).
        self.delays: dict[str, float] = {}
        self.envelopes: list[dict[str, Any]] = []
        self.acks: list[dict[str, Any]] = []
        self.deliveries: list[tuple[str, dict[str, Any], int, str]] = []
        self.rate_limited_count = 0
        self.socket_connect_count = 0
        self.socket_connected = asyncio.Event()

        self._users: dict[str, dict[str, Any]] = {}
        self._channels: dict[str, str] = {}
        # conversations.open: one direct-message channel per user with the bot, kept.
        self.ims: dict[str, str] = {}
        self._files: dict[str, dict[str, Any]] = {}
        self._file_bytes: dict[str, bytes] = {}
        self._pending_uploads: dict[str, dict[str, Any]] = {}
        self._limits: dict[str, tuple[float, float]] = {}
        self._buckets: dict[tuple[str, str], tuple[float, float]] = {}
        self._storm_until = 0.0
        self._storm_methods: frozenset[str] | None = None
        self._fail: dict[str, list[str]] = {}
        self._lose: dict[str, int] = {}
        self._tickets: set[str] = set()
        self._connections: list[_Connection] = []
        self._ack_waiters: dict[str, asyncio.Future[dict[str, Any] | None]] = {}
        self._response_urls: dict[str, int] = {}
        # What the app posted to each response_url, by its path; the paths of the slash
        # commands delivered, in order.
        self.responses_at: dict[str, list[dict[str, Any]]] = {}
        self.slash_paths: list[str] = []
        self._triggers: dict[str, float] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._last_ts_us = 0
        self._counter = 0

        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.port = 0

        self.add_user(bot_user_id, "Support Bridge", "bridge", is_bot=True)

    # ------------------------------------------------------------------ lifecycle

    @property
    def root_url(self) -> str:
        """The fake's own origin, e.g. "http://127.0.0.1:PORT"."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """What AsyncWebClient(base_url=...) takes: "http://127.0.0.1:PORT/api/"."""
        return f"{self.root_url}/api/"

    async def start(self) -> None:
        """Start serving on a free port."""
        app = web.Application(client_max_size=1024**3)
        app.router.add_route("*", "/api/{method}", self._handle_api)
        app.router.add_post("/upload/v1/{file_id}", self._handle_upload)
        app.router.add_get("/files-pri/{team_file}/{name}", self._handle_file)
        app.router.add_get("/files-pri/{team_file}/download/{name}", self._handle_file)
        app.router.add_get("/socket", self._handle_socket)
        app.router.add_post("/commands/{team}/{n}/{secret}", self._handle_response_url)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._session = aiohttp.ClientSession()

    async def stop(self) -> None:
        """Close sockets, finish background deliveries and stop the server."""
        await self.wait_idle(timeout=2.0)
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
        for conn in list(self._connections):
            with contextlib.suppress(Exception):
                await conn.ws.close(code=aiohttp.WSCloseCode.GOING_AWAY)
        for fut in self._ack_waiters.values():
            if not fut.done():
                fut.set_result(None)
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeSlack:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def wait_idle(self, timeout: float = 5.0) -> None:
        """Wait until background deliveries (bot echoes) have finished."""
        deadline = time.monotonic() + timeout
        while self._tasks and time.monotonic() < deadline:
            await asyncio.wait(set(self._tasks), timeout=max(0.0, deadline - time.monotonic()))

    # ------------------------------------------------------------------ setup helpers

    def add_user(
        self,
        user_id: str,
        real_name: str,
        display_name: str | None = None,
        *,
        is_bot: bool = False,
        image_72: str | None = None,
    ) -> None:
        """Register a workspace user answered by users.info."""
        display = display_name or ""
        self._users[user_id] = {
            "id": user_id,
            "team_id": self.team_id,
            "name": (display or real_name).lower().replace(" ", "."),
            "deleted": False,
            "real_name": real_name,
            "is_bot": is_bot,
            "is_app_user": False,
            "tz": "Europe/Berlin",
            "profile": {
                "real_name": real_name,
                "real_name_normalized": real_name,
                "display_name": display,
                "display_name_normalized": display,
                "image_72": image_72 or f"https://fake.slack.com/avatars/{user_id}_72.png",
                "image_192": f"https://fake.slack.com/avatars/{user_id}_192.png",
                "team": self.team_id,
            },
        }

    def add_channel(self, channel_id: str, name: str) -> None:
        """Give a channel a name (used by conversations.info and slash commands)."""
        self._channels[channel_id] = name

    def set_rate_limit(
        self, method: str = "chat.postMessage", per_channel: float | None = None, burst: float = 1
    ) -> None:
        """Limit `method` to `per_channel` calls per second per channel (token bucket)."""
        if per_channel is None:
            self._limits.pop(method, None)
        else:
            self._limits[method] = (float(per_channel), float(burst))
        self._buckets = {k: v for k, v in self._buckets.items() if k[0] != method}

    def storm(self, seconds: float, methods: set[str] | None = None) -> None:
        """Answer 429 to every call (of `methods`, or all but auth/connect) for `seconds`."""
        self._storm_until = time.monotonic() + seconds
        self._storm_methods = frozenset(methods) if methods is not None else None

    def fail_next(self, method: str, error: str, times: int = 1) -> None:
        """Make the next `times` calls of `method` answer {"ok": false, "error": error}."""
        self._fail.setdefault(method, []).extend([error] * times)

    def lose_answer_next(self, method: str, times: int = 1) -> None:
        """Carry out the next `times` calls of `method`, then answer 500 instead of the
        result: the call took effect, but the caller never learns it (as when the bridge
        dies between a post and recording it)."""
        self._lose[method] = self._lose.get(method, 0) + times

    # ------------------------------------------------------------------ queries

    def find(self, channel: str, ts: str) -> SlackMessage | None:
        """The stored message with this channel and ts (deleted ones included)."""
        for msg in self.messages:
            if msg.channel == channel and msg.ts == ts:
                return msg
        return None

    def roots(self, channel: str) -> list[SlackMessage]:
        """Top-level, not deleted messages of a channel, oldest first."""
        return [
            m for m in self.messages if m.channel == channel and not m.is_reply and not m.deleted
        ]

    def replies(self, channel: str, thread_ts: str) -> list[SlackMessage]:
        """Not deleted replies in a thread, oldest first."""
        return [
            m
            for m in self.messages
            if m.channel == channel and m.is_reply and m.thread_ts == thread_ts and not m.deleted
        ]

    def count(self, method: str) -> int:
        """How many calls of `method` arrived (rejected ones included)."""
        return sum(1 for name, _ in self.calls if name == method)

    def file_bytes(self, file_id: str) -> bytes | None:
        """The content of any stored file (bot-uploaded or staff-posted)."""
        return self._file_bytes.get(file_id)

    @property
    def socket_connections(self) -> int:
        """Number of open Socket Mode connections."""
        return len(self._connections)

    # ------------------------------------------------------------------ ids / ts

    def _next_ts(self) -> str:
        now_us = int(time.time() * 1_000_000) // 100 * 100
        self._last_ts_us = max(now_us, self._last_ts_us + 100)
        return f"{self._last_ts_us // 1_000_000}.{self._last_ts_us % 1_000_000:06d}"

    def _next_id(self, prefix: str) -> str:
        self._counter += 1
        return f"{prefix}{self._counter:08d}"

    def _new_trigger_id(self) -> str:
        trigger = f"{self._counter}.{secrets.randbelow(10**10)}.{secrets.token_hex(16)}"
        self._triggers[trigger] = time.monotonic()
        return trigger

    # ------------------------------------------------------------------ Web API plumbing

    async def _read_params(self, request: web.Request) -> Params:
        params: Params = dict(request.query)
        if request.method != "POST" or not request.can_read_body:
            return params
        ctype = request.content_type
        if ctype == "application/json":
            raw = await request.read()
            if raw.strip():
                body = json.loads(raw)
                if isinstance(body, dict):
                    params.update(body)
        elif ctype == "multipart/form-data":
            reader = await request.multipart()
            async for part in reader:
                if not isinstance(part, aiohttp.BodyPartReader) or part.name is None:
                    continue
                if part.filename is not None:
                    params[part.name] = (part.filename, await part.read())
                else:
                    params[part.name] = await part.text()
        else:
            form = await request.post()
            for key in form:
                params[key] = form[key]
        return params

    def _json(
        self, data: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None
    ) -> web.Response:
        hdrs = {"X-OAuth-Scopes": self.scopes, **(headers or {})}
        return web.json_response(data, status=status, headers=hdrs)

    def _rate_check(self, method: str, params: Params) -> int | None:
        now = time.monotonic()
        if now < self._storm_until:
            stormed = (
                method not in _NEVER_STORMED
                if self._storm_methods is None
                else method in self._storm_methods
            )
            if stormed:
                return max(1, math.ceil(self._storm_until - now))
        limit = self._limits.get(method)
        if limit is None:
            return None
        rate, burst = limit
        channel = str(params.get("channel") or params.get("channel_id") or "")
        key = (method, channel)
        tokens, last = self._buckets.get(key, (burst, now))
        tokens = min(burst, tokens + (now - last) * rate)
        if tokens >= 1:
            self._buckets[key] = (tokens - 1, now)
            return None
        self._buckets[key] = (tokens, now)
        return max(1, math.ceil((1 - tokens) / rate))

    async def _handle_api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        try:
            params = await self._read_params(request)
        except (ValueError, json.JSONDecodeError):
            return self._json({"ok": False, "error": "invalid_json"})
        token = params.pop("token", None)
        auth = request.headers.get("Authorization", "")
        if not token and auth.startswith("Bearer "):
            token = auth[len("Bearer ") :].strip()
        self.calls.append((method, dict(params)))
        if self.delays.get(method):
            await asyncio.sleep(self.delays[method])

        handler: Callable[[Params], dict[str, Any]] | None = getattr(
            self, "_api_" + method.replace(".", "_"), None
        )
        if handler is None:
            return self._json({"ok": False, "error": "unknown_method"})
        if not token:
            return self._json({"ok": False, "error": "not_authed"})
        wanted = self.app_token if method == "apps.connections.open" else self.bot_token
        if token != wanted:
            known = token in (self.app_token, self.bot_token)
            return self._json(
                {"ok": False, "error": "not_allowed_token_type" if known else "invalid_auth"}
            )
        retry_after = self._rate_check(method, params)
        if retry_after is not None:
            self.rate_limited_count += 1
            return self._json(
                {"ok": False, "error": "ratelimited"},
                status=429,
                headers={"Retry-After": str(retry_after)},
            )
        queued = self._fail.get(method)
        if queued:
            return self._json({"ok": False, "error": queued.pop(0)})
        try:
            data = handler(params)
        except SlackError as exc:
            return self._json({"ok": False, "error": exc.error, **exc.extra})
        if self._lose.get(method):
            self._lose[method] -= 1
            return web.Response(status=500, text="upstream connect error")
        return self._json({"ok": True, **data})

    # ------------------------------------------------------------------ param helpers

    @staticmethod
    def _str(params: Params, key: str, *, required: bool = False) -> str | None:
        value = params.get(key)
        if value is None or value == "":
            if required:
                raise SlackError("invalid_arguments")
            return None
        return str(value)

    @staticmethod
    def _bool(params: Params, key: str) -> bool:
        value = params.get(key)
        if isinstance(value, bool):
            return value
        return str(value).lower() in ("1", "true", "yes") if value is not None else False

    @staticmethod
    def _json_param(params: Params, key: str, error: str) -> Any:
        value = params.get(key)
        if value is None or value == "":
            return None
        if isinstance(value, str):
            try:
                return json.loads(value)
            except json.JSONDecodeError as exc:
                raise SlackError(error) from exc
        return value

    def _channel(self, params: Params, key: str = "channel") -> str:
        channel = self._str(params, key)
        if channel is None or channel[0] not in "CGD":
            raise SlackError("channel_not_found")
        return channel

    def _blocks(self, params: Params) -> list[dict[str, Any]] | None:
        blocks = self._json_param(params, "blocks", "invalid_blocks")
        if blocks is None:
            return None
        if not isinstance(blocks, list) or not all(isinstance(b, dict) for b in blocks):
            raise SlackError("invalid_blocks")
        if len(blocks) > _MAX_BLOCKS:
            raise SlackError("invalid_blocks")
        return blocks

    def _live(self, channel: str, ts: str | None) -> SlackMessage:
        msg = self.find(channel, ts) if ts else None
        if msg is None or msg.deleted:
            raise SlackError("message_not_found")
        return msg

    # ------------------------------------------------------------------ message shapes

    def message_dict(self, msg: SlackMessage) -> dict[str, Any]:
        """The message as Slack's Web API shows it (conversations.*, chat.* responses)."""
        out: dict[str, Any] = {"type": "message", "text": msg.text, "ts": msg.ts}
        if msg.bot_id is not None:
            out["subtype"] = "bot_message"
            out["bot_id"] = msg.bot_id
            out["app_id"] = self.api_app_id
            if msg.username is not None:
                out["username"] = msg.username
            icons: dict[str, str] = {}
            if msg.icon_url:
                icons["image_48"] = msg.icon_url
            if msg.icon_emoji:
                icons["emoji"] = msg.icon_emoji
            if icons:
                out["icons"] = icons
        if msg.user is not None:
            out["user"] = msg.user
            out["team"] = self.team_id
        if msg.client_msg_id:
            out["client_msg_id"] = msg.client_msg_id
        if msg.thread_ts is not None:
            out["thread_ts"] = msg.thread_ts
        if msg.blocks is not None:
            out["blocks"] = msg.blocks
        if msg.files:
            out["files"] = msg.files
            out["upload"] = False
        if msg.metadata is not None:
            out["metadata"] = msg.metadata
        if msg.edited_ts is not None:
            out["edited"] = {"user": msg.user or self.bot_user_id, "ts": msg.edited_ts}
        if msg.reactions:
            out["reactions"] = [
                {"name": n, "users": [self.bot_user_id], "count": 1} for n in msg.reactions
            ]
        return out

    def _channel_type(self, channel: str) -> str:
        return {"D": "im", "G": "group"}.get(channel[:1], "channel")

    def _message_event(self, msg: SlackMessage) -> dict[str, Any]:
        event = self.message_dict(msg)
        event.pop("reactions", None)
        event.pop("edited", None)
        event["channel"] = msg.channel
        event["channel_type"] = self._channel_type(msg.channel)
        event["event_ts"] = msg.ts
        parent = self.find(msg.channel, msg.thread_ts) if msg.is_reply and msg.thread_ts else None
        if parent is not None:
            event["parent_user_id"] = parent.user or self.bot_user_id
        if msg.bot_id is None and msg.files:
            return file_share_event(event)
        return event

    # ------------------------------------------------------------------ Web API methods

    def _api_auth_test(self, p: Params) -> dict[str, Any]:
        return {
            "url": f"https://{self.team_domain}.slack.com/",
            "team": self.team_name,
            "user": "bridge",
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": self.bot_id,
            "is_enterprise_install": False,
        }

    def _api_chat_postMessage(self, p: Params) -> dict[str, Any]:
        channel = self._channel(p)
        text = self._str(p, "text") or ""
        blocks = self._blocks(p)
        if not text and blocks is None and not p.get("attachments"):
            raise SlackError("no_text")
        if len(text) > _MAX_TEXT:
            raise SlackError("msg_too_long")
        thread_ts = self._str(p, "thread_ts")
        if thread_ts is not None:
            if not _TS_RE.match(thread_ts):
                raise SlackError("invalid_thread_ts")
            parent = self.find(channel, thread_ts)
            if parent is not None and parent.is_reply:
                thread_ts = parent.thread_ts
        metadata = self._json_param(p, "metadata", "invalid_metadata_format")
        msg = SlackMessage(
            channel=channel,
            ts=self._next_ts(),
            thread_ts=thread_ts,
            text=text,
            blocks=blocks,
            bot_id=self.bot_id,
            username=self._str(p, "username"),
            icon_url=self._str(p, "icon_url"),
            icon_emoji=self._str(p, "icon_emoji"),
            reply_broadcast=self._bool(p, "reply_broadcast"),
            metadata=metadata if isinstance(metadata, dict) else None,
        )
        self.messages.append(msg)
        self._echo(msg)
        return {"channel": channel, "ts": msg.ts, "message": self.message_dict(msg)}

    def _api_chat_postEphemeral(self, p: Params) -> dict[str, Any]:
        channel = self._channel(p)
        user = self._str(p, "user")
        if user is None:
            raise SlackError("user_not_in_channel")
        record = {
            "channel": channel,
            "user": user,
            "text": self._str(p, "text") or "",
            "blocks": self._blocks(p),
            "thread_ts": self._str(p, "thread_ts"),
        }
        self.ephemerals.append(record)
        return {"message_ts": self._next_ts()}

    def _api_chat_update(self, p: Params) -> dict[str, Any]:
        channel = self._channel(p)
        msg = self._live(channel, self._str(p, "ts"))
        if msg.bot_id != self.bot_id:
            raise SlackError("cant_update_message")
        text = self._str(p, "text")
        blocks = self._blocks(p)
        if text is None and blocks is None and not p.get("attachments"):
            raise SlackError("no_text")
        if text is not None and len(text) > _MAX_TEXT:
            raise SlackError("msg_too_long")
        previous = self._message_event(msg)
        msg.history.append(msg.text)
        if text is not None:
            msg.text = text
        if blocks is not None:
            msg.blocks = blocks
        msg.edited_ts = self._next_ts()
        if self.echo_bot_messages:
            self._spawn(self._quietly(self._deliver_changed(msg, previous, msg.edited_ts)))
        message = self.message_dict(msg)
        return {"channel": channel, "ts": msg.ts, "text": msg.text, "message": message}

    def _api_chat_delete(self, p: Params) -> dict[str, Any]:
        channel = self._channel(p)
        msg = self._live(channel, self._str(p, "ts"))
        if msg.bot_id != self.bot_id:
            raise SlackError("cant_delete_message")
        msg.deleted = True
        return {"channel": channel, "ts": msg.ts}

    def _api_chat_getPermalink(self, p: Params) -> dict[str, Any]:
        channel = self._channel(p)
        msg = self._live(channel, self._str(p, "message_ts"))
        link = f"https://fake.slack.com/archives/{channel}/p{msg.ts.replace('.', '')}"
        if msg.is_reply:
            link += f"?thread_ts={msg.thread_ts}&cid={channel}"
        return {"channel": channel, "permalink": link}

    def _api_reactions_add(self, p: Params) -> dict[str, Any]:
        channel = self._channel(p)
        name = self._str(p, "name")
        if name is None:
            raise SlackError("invalid_name")
        msg = self._live(channel, self._str(p, "timestamp"))
        name = name.strip(":")
        if name in msg.reactions:
            raise SlackError("already_reacted")
        msg.reactions.append(name)
        return {}

    def _api_reactions_remove(self, p: Params) -> dict[str, Any]:
        channel = self._channel(p)
        name = (self._str(p, "name") or "").strip(":")
        msg = self._live(channel, self._str(p, "timestamp"))
        if name not in msg.reactions:
            raise SlackError("no_reaction")
        msg.reactions.remove(name)
        return {}

    def _api_users_info(self, p: Params) -> dict[str, Any]:
        user = self._users.get(self._str(p, "user") or "")
        if user is None:
            raise SlackError("user_not_found")
        return {"user": json.loads(json.dumps(user))}

    def _api_conversations_info(self, p: Params) -> dict[str, Any]:
        # The channel object of the documented answer (tests/corpus/slack), this channel's.
        channel = self._channel(p)
        kind = channel[0]
        name = self._channels.get(channel, f"channel-{channel.lower()}")
        found = corpus_sample("slack", "conversations_info")["channel"]
        found.update(
            id=channel,
            name=name,
            name_normalized=name,
            is_channel=kind == "C",
            is_group=kind == "G",
            is_im=kind == "D",
            is_private=kind in "GD",
            is_general=False,
            is_member=True,
            context_team_id=self.team_id,
            shared_team_ids=[self.team_id],
        )
        return {"channel": found}

    def _api_conversations_open(self, p: Params) -> dict[str, Any]:
        # Slack: `users` (comma-separated) opens or resumes a DM (1 user) or an MPIM; a DM with
        # the same user is always the same D… channel. Needs the `im:write` scope.
        users = [u for u in (self._str(p, "users") or "").split(",") if u]
        if not users and self._str(p, "channel") is None:
            raise SlackError("users_list_not_supplied")
        if len(users) != 1:
            raise SlackError("not_implemented")
        if users[0] not in self._users:
            raise SlackError("user_not_found")
        channel = self.ims.setdefault(users[0], self._next_id("D"))
        return {"channel": {"id": channel}, "already_open": False, "no_op": False}

    def dm_messages(self, user: str) -> list[SlackMessage]:
        """Messages the bot posted in its direct-message channel with `user`, oldest first."""
        channel = self.ims.get(user)
        return [m for m in self.messages if channel is not None and m.channel == channel]

    def _api_conversations_replies(self, p: Params) -> dict[str, Any]:
        channel = self._channel(p)
        root = self.find(channel, self._str(p, "ts") or "")
        if root is None or root.deleted:
            raise SlackError("thread_not_found")
        thread_ts = root.thread_ts or root.ts
        parent = self.find(channel, thread_ts) or root
        msgs = [parent, *self.replies(channel, thread_ts)]
        return {"messages": [self.message_dict(m) for m in msgs], "has_more": False}

    def _api_conversations_history(self, p: Params) -> dict[str, Any]:
        channel = self._channel(p)
        limit = int(p.get("limit") or 100)
        msgs = list(reversed(self.roots(channel)))[:limit]
        return {"messages": [self.message_dict(m) for m in msgs], "has_more": False}

    def _api_views_open(self, p: Params) -> dict[str, Any]:
        trigger = self._str(p, "trigger_id")
        if trigger is None:
            raise SlackError("invalid_arguments")
        issued = self._triggers.get(trigger)
        if issued is not None and time.monotonic() - issued > 3.0:
            raise SlackError("expired_trigger_id")
        view = self._json_param(p, "view", "invalid_arguments")
        if not isinstance(view, dict):
            raise SlackError("invalid_arguments")
        title = (view.get("title") or {}).get("text", "")
        if len(title) > 24 or len(view.get("blocks") or []) > 100:
            raise SlackError("invalid_arguments")
        if len(view.get("private_metadata") or "") > 3000:
            raise SlackError("invalid_arguments")
        stored = {"id": self._next_id("V"), "team_id": self.team_id, **view}
        self.views.append(stored)
        return {"view": stored}

    def _api_files_upload(self, p: Params) -> dict[str, Any]:
        raise SlackError("method_deprecated")

    def _api_files_getUploadURLExternal(self, p: Params) -> dict[str, Any]:
        filename = self._str(p, "filename", required=True)
        try:
            length = int(p.get("length") or "")
        except ValueError as exc:
            raise SlackError("invalid_arguments") from exc
        file_id = self._next_id("F")
        self._pending_uploads[file_id] = {"filename": filename, "length": length}
        return {"upload_url": f"{self.root_url}/upload/v1/{file_id}", "file_id": file_id}

    def _api_files_completeUploadExternal(self, p: Params) -> dict[str, Any]:
        items = self._json_param(p, "files", "invalid_arguments")
        if not isinstance(items, list) or not items:
            raise SlackError("invalid_arguments")
        channel = self._str(p, "channel_id")
        if channel is None and p.get("channels"):
            channel = str(p["channels"]).split(",")[0]
        if channel is not None and channel[0] not in "CGD":
            raise SlackError("channel_not_found")
        files: list[dict[str, Any]] = []
        for item in items:
            file_id = str(item.get("id", ""))
            pending = self._pending_uploads.get(file_id)
            if pending is None or file_id not in self.uploaded:
                raise SlackError("file_not_found")
        for item in items:
            file_id = str(item["id"])
            pending = self._pending_uploads.pop(file_id)
            data = self.uploaded[file_id][1]
            obj = self._file_object(
                file_id, pending["filename"], data, None, self.bot_user_id, item.get("title")
            )
            files.append(obj)
        if channel is not None:
            thread_ts = self._str(p, "thread_ts")
            if thread_ts is not None:
                parent = self.find(channel, thread_ts)
                if parent is not None and parent.is_reply:
                    thread_ts = parent.thread_ts
            msg = SlackMessage(
                channel=channel,
                ts=self._next_ts(),
                thread_ts=thread_ts,
                text=self._str(p, "initial_comment") or "",
                bot_id=self.bot_id,
                files=files,
            )
            self.messages.append(msg)
            share = {"ts": msg.ts, "channel_name": self._channels.get(channel, channel)}
            if thread_ts:
                share["thread_ts"] = thread_ts
            for obj in files:
                obj["shares"] = {"public": {channel: [share]}}
                obj["channels"] = [channel]
            self._echo(msg)
        # Slack shares asynchronously: the completion answer carries no message ts / shares.
        answer = [{k: v for k, v in f.items() if k not in ("shares", "channels")} for f in files]
        return {"files": answer}

    def _api_files_info(self, p: Params) -> dict[str, Any]:
        obj = self._files.get(self._str(p, "file") or "")
        if obj is None:
            raise SlackError("file_not_found")
        return {"file": obj}

    def _api_files_delete(self, p: Params) -> dict[str, Any]:
        file_id = self._str(p, "file") or ""
        obj = self._files.get(file_id)
        if obj is None:
            raise SlackError("file_not_found")
        if obj["user"] != self.bot_user_id:
            raise SlackError("cant_delete_file")
        del self._files[file_id]
        self._file_bytes.pop(file_id, None)
        self.deleted_files.append(file_id)
        return {}

    def _api_apps_connections_open(self, p: Params) -> dict[str, Any]:
        ticket = uuid.uuid4().hex
        self._tickets.add(ticket)
        return {"url": f"ws://127.0.0.1:{self.port}/socket?ticket={ticket}"}

    # ------------------------------------------------------------------ files

    def _file_object(
        self,
        file_id: str,
        filename: str,
        data: bytes,
        mimetype: str | None,
        user: str,
        title: str | None = None,
    ) -> dict[str, Any]:
        mime = mimetype or mimetypes.guess_type(filename)[0] or "application/octet-stream"
        ext = filename.rsplit(".", 1)[1].lower() if "." in filename else "binary"
        now = int(time.time())
        quoted = quote(filename)
        base = f"{self.root_url}/files-pri/{self.team_id}-{file_id}"
        obj = {
            "id": file_id,
            "created": now,
            "timestamp": now,
            "name": filename,
            "title": title or filename,
            "mimetype": mime,
            "filetype": ext,
            "pretty_type": ext.upper(),
            "user": user,
            "user_team": self.team_id,
            "editable": False,
            "size": len(data),
            "mode": "hosted",
            "is_external": False,
            "external_type": "",
            "is_public": True,
            "public_url_shared": False,
            "display_as_bot": False,
            "url_private": f"{base}/{quoted}",
            "url_private_download": f"{base}/download/{quoted}",
            "permalink": f"https://fake.slack.com/files/{user}/{file_id}/{quoted}",
            "file_access": "visible",
        }
        self._files[file_id] = obj
        self._file_bytes[file_id] = data
        return obj

    async def _handle_upload(self, request: web.Request) -> web.Response:
        file_id = request.match_info["file_id"]
        pending = self._pending_uploads.get(file_id)
        if pending is None:
            return web.Response(status=404, text="Not Found", content_type="text/plain")
        data = b""
        if request.content_type == "multipart/form-data":
            reader = await request.multipart()
            async for part in reader:
                if isinstance(part, aiohttp.BodyPartReader) and (
                    part.filename is not None or part.name in ("file", "filename")
                ):
                    data = bytes(await part.read())
                    break
        else:
            data = await request.read()
        self.uploaded[file_id] = (pending["filename"], data)
        return web.Response(text=f"OK - {len(data)}", content_type="text/plain")

    async def _handle_file(self, request: web.Request) -> web.StreamResponse:
        team_file = request.match_info["team_file"]
        file_id = team_file.split("-", 1)[-1]
        auth = request.headers.get("Authorization", "")
        if auth != f"Bearer {self.bot_token}":
            html = (
                "<!DOCTYPE html><html><head><title>Slack</title></head>"
                "<body>Sign in to Fake Workspace</body></html>"
            )
            return web.Response(
                status=self.unauthorized_file_status, text=html, content_type="text/html"
            )
        obj = self._files.get(file_id)
        if obj is None:
            return web.Response(status=404, text="Not Found", content_type="text/plain")
        return web.Response(body=self._file_bytes[file_id], content_type=obj["mimetype"])

    # ------------------------------------------------------------------ response_url

    async def _handle_response_url(self, request: web.Request) -> web.Response:
        key = request.path
        if key not in self._response_urls:
            return web.Response(status=404, text="invalid_url", content_type="text/plain")
        if self._response_urls[key] >= 5:
            return web.Response(status=404, text="used_url", content_type="text/plain")
        self._response_urls[key] += 1
        raw = await request.read()
        try:
            if request.content_type == "application/json":
                payload = json.loads(raw)
            else:
                form = dict(await request.post()) if raw else {}
                payload = json.loads(str(form["payload"])) if "payload" in form else form
        except (ValueError, KeyError):
            return web.Response(status=400, text="invalid_payload", content_type="text/plain")
        self.responses.append(payload)
        self.responses_at.setdefault(key, []).append(payload)
        return web.Response(text="ok", content_type="text/plain")

    # ------------------------------------------------------------------ Socket Mode

    async def _handle_socket(self, request: web.Request) -> web.StreamResponse:
        ticket = request.query.get("ticket", "")
        if ticket not in self._tickets:
            return web.Response(status=401, text="invalid ticket")
        self._tickets.discard(ticket)
        ws = web.WebSocketResponse(timeout=2.0)
        await ws.prepare(request)
        conn = _Connection(ws=ws, connected_at=time.monotonic())
        self._connections.append(conn)
        self.socket_connect_count += 1
        await ws.send_json(
            {
                "type": "hello",
                "num_connections": len(self._connections),
                "debug_info": {
                    "host": "fake-slack-socket",
                    "build_number": 1,
                    "approximate_connection_time": 18060,
                },
                "connection_info": {"app_id": self.api_app_id},
            }
        )
        self.socket_connected.set()
        try:
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                try:
                    data = json.loads(msg.data)
                except json.JSONDecodeError:
                    continue
                if not isinstance(data, dict) or "envelope_id" not in data:
                    continue
                self.acks.append(data)
                envelope_id = str(data["envelope_id"])
                conn.pending.discard(envelope_id)
                fut = self._ack_waiters.get(envelope_id)
                if fut is not None and not fut.done():
                    fut.set_result(data)
        finally:
            if conn in self._connections:
                self._connections.remove(conn)
            for envelope_id in conn.pending:
                fut = self._ack_waiters.get(envelope_id)
                if fut is not None and not fut.done():
                    fut.set_result(None)
            if not self._connections:
                self.socket_connected.clear()
            conn.closed.set()
        return ws

    async def disconnect_socket(
        self, reason: str = "refresh_requested", grace: float = 1.0
    ) -> None:
        """Send {"type": "disconnect"} to every client; close sockets still open after `grace` s.

        Like Slack, the old socket stays usable for a moment so the client can reconnect first
        (closing at once makes the SDK reconnect twice: once per signal).
        """
        conns = list(self._connections)
        for conn in conns:
            with contextlib.suppress(Exception):
                await conn.ws.send_json(
                    {"type": "disconnect", "reason": reason, "debug_info": {"host": "fake"}}
                )
        if conns:
            await asyncio.wait(
                [asyncio.ensure_future(c.closed.wait()) for c in conns], timeout=grace
            )
        for conn in conns:
            with contextlib.suppress(Exception):
                await conn.ws.close()

    # ------------------------------------------------------------------ delivering to the bridge

    def sign(self, timestamp: int, raw_body: bytes) -> str:
        """The X-Slack-Signature value for this timestamp and raw body."""
        base = b"v0:" + str(timestamp).encode() + b":" + raw_body
        digest = hmac.new(self.signing_secret.encode(), base, hashlib.sha256).hexdigest()
        return "v0=" + digest

    def event_callback(self, event: dict[str, Any]) -> dict[str, Any]:
        """Wrap an event the way the Events API does."""
        event_type = event.get("type", "message")
        channel = event.get("channel", "")
        return {
            "token": self.verification_token,
            "team_id": self.team_id,
            "context_team_id": self.team_id,
            "api_app_id": self.api_app_id,
            "event": event,
            "type": "event_callback",
            "event_id": self._next_id("Ev"),
            "event_time": int(time.time()),
            "authorizations": [
                {
                    "enterprise_id": None,
                    "team_id": self.team_id,
                    "user_id": self.bot_user_id,
                    "is_bot": True,
                    "is_enterprise_install": False,
                }
            ],
            "is_ext_shared_channel": False,
            "event_context": f"4-{event_type}-{self.team_id}-{channel}",
        }

    async def deliver(
        self,
        body: dict[str, Any],
        *,
        kind: str = "events_api",
        retry_num: int | None = None,
        retry_reason: str | None = None,
        signed: bool = True,
        timestamp: int | None = None,
        signature: str | None = None,
    ) -> tuple[int, str]:
        """Deliver a payload over Socket Mode if connected, else as a signed HTTP POST.

        Returns (200, ack payload JSON or "") for Socket Mode, (0, "") when no ack came
        within `ack_timeout`; for HTTP, (status, body text), (0, "") on timeout.
        """
        if kind not in ("events_api", "slash_commands", "interactive"):
            raise ValueError(f"unknown kind {kind!r}")
        if self._connections:
            result = await self._deliver_socket(body, kind, retry_num, retry_reason)
        elif self.events_url is not None:
            result = await self._deliver_http(
                body, kind, retry_num, retry_reason, signed, timestamp, signature
            )
        else:
            raise RuntimeError("no Socket Mode client connected and no events_url set")
        self.deliveries.append((kind, body, *result))
        return result

    async def _deliver_socket(
        self, body: dict[str, Any], kind: str, retry_num: int | None, retry_reason: str | None
    ) -> tuple[int, str]:
        conn = self._connections[-1]
        envelope_id = str(uuid.uuid4())
        if kind == "slash_commands":
            accepts = True
        elif kind == "interactive":
            accepts = body.get("type") in ("view_submission", "block_suggestion")
        else:
            accepts = False
        envelope: dict[str, Any] = {
            "envelope_id": envelope_id,
            "payload": body,
            "type": kind,
            "accepts_response_payload": accepts,
        }
        if kind == "events_api":
            envelope["retry_attempt"] = retry_num or 0
            envelope["retry_reason"] = retry_reason or ""
        fut: asyncio.Future[dict[str, Any] | None] = asyncio.get_running_loop().create_future()
        self._ack_waiters[envelope_id] = fut
        conn.pending.add(envelope_id)
        self.envelopes.append(envelope)
        try:
            await conn.ws.send_str(json.dumps(envelope))
            ack = await asyncio.wait_for(fut, timeout=self.ack_timeout)
        except (TimeoutError, ConnectionError, RuntimeError):
            ack = None
        finally:
            self._ack_waiters.pop(envelope_id, None)
            conn.pending.discard(envelope_id)
        if ack is None:
            return 0, ""
        payload = ack.get("payload")
        return 200, json.dumps(payload) if payload is not None else ""

    async def _deliver_http(
        self,
        body: dict[str, Any],
        kind: str,
        retry_num: int | None,
        retry_reason: str | None,
        signed: bool,
        timestamp: int | None,
        signature: str | None,
    ) -> tuple[int, str]:
        assert self.events_url is not None
        if self._session is None:
            raise RuntimeError("FakeSlack is not started")
        if kind == "events_api":
            raw = json.dumps(body).encode()
            ctype = "application/json"
        elif kind == "slash_commands":
            raw = urlencode({k: str(v) for k, v in body.items()}).encode()
            ctype = "application/x-www-form-urlencoded"
        else:
            raw = urlencode({"payload": json.dumps(body)}).encode()
            ctype = "application/x-www-form-urlencoded"
        headers = {
            "Content-Type": ctype,
            "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)",
        }
        if signed:
            ts = timestamp if timestamp is not None else int(time.time())
            headers["X-Slack-Request-Timestamp"] = str(ts)
            headers["X-Slack-Signature"] = signature or self.sign(ts, raw)
        if retry_num is not None:
            headers["X-Slack-Retry-Num"] = str(retry_num)
        if retry_reason is not None:
            headers["X-Slack-Retry-Reason"] = retry_reason
        try:
            async with self._session.post(
                self.events_url,
                data=raw,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=self.http_timeout),
            ) as resp:
                return resp.status, await resp.text()
        except TimeoutError:
            return 0, ""

    # ------------------------------------------------------------------ staff actions

    async def agent_says(
        self,
        channel: str,
        thread_ts: str | None,
        text: str,
        *,
        user: str = "UAGENT",
        files: Iterable[tuple[str, bytes, str]] = (),
        rich: dict[str, Any] | None = None,
    ) -> str:
        """A human posts in Slack (optionally with files); deliver the message event; return ts.

        The message carries the `rich_text` block Slack's composer makes of what was typed, or
        the given `rich` block with the `text` Slack writes beside it.
        """
        block = rich if rich is not None else rich_text_of(text)
        file_objs = [
            self._file_object(self._next_id("F"), name, data, mime, user)
            for name, data, mime in files
        ]
        msg = SlackMessage(
            channel=channel,
            ts=self._next_ts(),
            thread_ts=thread_ts,
            text=slack_text_of(rich) if rich is not None else as_slack_sends(text),
            blocks=[block],
            user=user,
            files=file_objs,
            client_msg_id=str(uuid.uuid4()),
        )
        self.messages.append(msg)
        await self.deliver(self.event_callback(self._message_event(msg)))
        return msg.ts

    async def agent_edits(
        self,
        channel: str,
        ts: str,
        new_text: str,
        *,
        user: str = "UAGENT",
        rich: dict[str, Any] | None = None,
    ) -> tuple[int, str]:
        """A human edits a message; deliver message_changed (with the new rich_text block)."""
        msg = self.find(channel, ts)
        if msg is None:
            raise KeyError((channel, ts))
        previous = self._message_event(msg)
        msg.history.append(msg.text)
        msg.text = slack_text_of(rich) if rich is not None else as_slack_sends(new_text)
        msg.blocks = [rich if rich is not None else rich_text_of(new_text)]
        msg.edited_ts = self._next_ts()
        return await self._deliver_changed(msg, previous, msg.edited_ts, editor=user)

    async def _deliver_changed(
        self,
        msg: SlackMessage,
        previous: dict[str, Any],
        event_ts: str,
        editor: str | None = None,
    ) -> tuple[int, str]:
        new = self.message_dict(msg)
        new.pop("reactions", None)
        new["edited"] = {"user": editor or msg.user or self.bot_user_id, "ts": event_ts}
        for key in ("channel", "channel_type", "event_ts"):
            previous.pop(key, None)
        event = {
            "type": "message",
            "subtype": "message_changed",
            "hidden": True,
            "message": new,
            "channel": msg.channel,
            "previous_message": previous,
            "event_ts": event_ts,
            "ts": event_ts,
            "channel_type": self._channel_type(msg.channel),
        }
        return await self.deliver(self.event_callback(event))

    async def agent_deletes(self, channel: str, ts: str) -> tuple[int, str]:
        """A human deletes a message; deliver message_deleted."""
        msg = self.find(channel, ts)
        if msg is None:
            raise KeyError((channel, ts))
        previous = self._message_event(msg)
        msg.deleted = True
        event = deleted_event(
            previous,
            channel=channel,
            channel_type=self._channel_type(channel),
            event_ts=self._next_ts(),
        )
        return await self.deliver(self.event_callback(event))

    async def agent_broadcasts(
        self, channel: str, thread_ts: str, text: str, *, user: str = "UAGENT"
    ) -> str:
        """A human replies in a thread and ticks "Also send to channel": deliver the
        thread_broadcast, then the message_changed Slack follows it with; return its ts."""
        parent = self.find(channel, thread_ts)
        if parent is None:
            raise KeyError((channel, thread_ts))
        msg = SlackMessage(
            channel=channel,
            ts=self._next_ts(),
            thread_ts=thread_ts,
            text=as_slack_sends(text),
            blocks=[rich_text_of(text)],
            user=user,
            client_msg_id=str(uuid.uuid4()),
            reply_broadcast=True,
        )
        self.messages.append(msg)
        repliers = [m.user or self.bot_user_id for m in self.replies(channel, thread_ts)[1:]]
        root = self.message_dict(parent)
        root.pop("reactions", None)
        event = thread_broadcast_event(self._message_event(msg), root, repliers)
        await self.deliver(self.event_callback(event))
        await self.deliver(self.event_callback(broadcast_changed_event(event, self._next_ts())))
        return msg.ts

    async def app_posts(self, channel: str, thread_ts: str | None, text: str) -> str:
        """Another app posts (under a name of its own); deliver its bot_message; return ts."""
        msg = SlackMessage(
            channel=channel,
            ts=self._next_ts(),
            thread_ts=thread_ts,
            text=text,
            bot_id="BOTHERAPP",
            username="Other App",
            icon_emoji="bulb",
        )
        self.messages.append(msg)
        event = self._bot_event(msg) | {"app_id": "AOTHERAPP"}
        await self.deliver(self.event_callback(event))
        return msg.ts

    async def slash_command(
        self,
        command: str,
        text: str,
        *,
        user_id: str = "UAGENT",
        channel_id: str = "C0001",
        user_name: str = "agent",
    ) -> tuple[int, str]:
        """A human runs a slash command; deliver it (form params as Slack sends them)."""
        path = f"/commands/{self.team_id}/{self._next_id('')}/{secrets.token_hex(12)}"
        self._response_urls[path] = 0
        self.slash_paths.append(path)
        form = {
            "token": self.verification_token,
            "team_id": self.team_id,
            "team_domain": self.team_domain,
            "channel_id": channel_id,
            "channel_name": self._channels.get(channel_id, f"channel-{channel_id.lower()}"),
            "user_id": user_id,
            "user_name": user_name,
            "command": command,
            "text": as_slack_sends(text),
            "api_app_id": self.api_app_id,
            "is_enterprise_install": "false",
            "response_url": self.root_url + path,
            "trigger_id": self._new_trigger_id(),
        }
        return await self.deliver(form, kind="slash_commands")

    def response_url(self) -> str:
        """A fresh response_url on the fake (for hand-built interaction payloads)."""
        path = f"/commands/{self.team_id}/{self._next_id('')}/{secrets.token_hex(12)}"
        self._response_urls[path] = 0
        return self.root_url + path

    def trigger_id(self) -> str:
        """A fresh trigger_id, valid for views.open during 3 seconds."""
        return self._new_trigger_id()

    async def press_button(
        self, channel: str, ts: str, action_id: str, *, user_id: str = "UAGENT"
    ) -> tuple[int, str]:
        """A human clicks a button of a message; deliver block_actions as Slack builds it.

        Raises KeyError when the message shows no button with this action_id.
        """
        msg = self._live(channel, ts)
        for block in msg.blocks or []:
            for element in block.get("elements") or []:
                if element.get("type") == "button" and element.get("action_id") == action_id:
                    break
            else:
                continue
            break
        else:
            raise KeyError(action_id)
        user = self._users.get(user_id, {})
        action = {
            "action_id": action_id,
            "block_id": block.get("block_id", ""),
            "text": element["text"],
            "value": element.get("value", ""),
            "type": "button",
            "action_ts": f"{time.time():.6f}",
        }
        if "style" in element:
            action["style"] = element["style"]
        payload = {
            "type": "block_actions",
            "user": {
                "id": user_id,
                "username": user.get("name", user_id.lower()),
                "name": user.get("name", user_id.lower()),
                "team_id": self.team_id,
            },
            "api_app_id": self.api_app_id,
            "token": self.verification_token,
            "container": {
                "type": "message",
                "message_ts": msg.ts,
                "channel_id": channel,
                "is_ephemeral": False,
            },
            "trigger_id": self._new_trigger_id(),
            "team": {"id": self.team_id, "domain": self.team_domain},
            "enterprise": None,
            "is_enterprise_install": False,
            "channel": {"id": channel, "name": self._channels.get(channel, channel)},
            "message": self.message_dict(msg),
            "state": {"values": {}},
            "response_url": self.response_url(),
            "actions": [action],
        }
        return await self.interaction(payload)

    async def interaction(self, payload: dict[str, Any]) -> tuple[int, str]:
        """Deliver an interactivity payload (block_actions, view_submission, ...)."""
        return await self.deliver(payload, kind="interactive")

    # ------------------------------------------------------------------ bot echo

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _echo(self, msg: SlackMessage) -> None:
        if not self.echo_bot_messages:
            return
        event = self._bot_event(msg)
        self._spawn(self._quietly(self.deliver(self.event_callback(event))))

    def _bot_event(self, msg: SlackMessage) -> dict[str, Any]:
        return bot_post_event(
            self._message_event(msg),
            bot_user_id=self.bot_user_id,
            team_id=self.team_id,
            name=self._users[self.bot_user_id].get("real_name") or "bridge",
        )

    @staticmethod
    async def _quietly(delivery: Awaitable[Any]) -> None:
        with contextlib.suppress(RuntimeError, aiohttp.ClientError):
            await delivery
