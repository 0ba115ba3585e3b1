"""Matrix as a staff surface: one thread per conversation in a room, on matrix-nio.

The bridge logs in as a bot account and long-polls /sync. Each conversation is a thread
(`m.thread`, with the `m.in_reply_to` fallback for clients without threads) whose root event
is the contact card, edited in place with `m.replace`. Sends carry a transaction id derived
from the outbox row, so a retried send is the same event to the homeserver; the bridge keeps
its own ref table for longer than the homeserver's transaction cache. The sync position is
stored only after the batch's events are stored, so a restart neither skips nor repeats.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import html
import json
import logging
import re
import secrets
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, ClassVar, NoReturn
from urllib.parse import quote

import aiohttp
from aiohttp import web
from nio import (
    AsyncClient,
    AsyncClientConfig,
    ErrorResponse,
    JoinError,
    LoginResponse,
    LogoutResponse,
    RoomRedactResponse,
    RoomSendResponse,
    SyncError,
    SyncResponse,
    UploadResponse,
    WhoamiResponse,
)

from bridge import bodies
from bridge.config import MatrixSettings, Settings
from bridge.errors import (
    DeliveryError,
    PermanentError,
    RateLimited,
    TooLarge,
    TransientError,
    Unreachable,
)
from bridge.protocols import CommandRunner, StaffSink, StaffSurface, StateStore
from bridge.types import (
    Attachment,
    ContactCard,
    ConversationStatus,
    DeliveryStatus,
    FileData,
    MediaKind,
    MirrorPost,
    RateLimit,
    StaffDelete,
    StaffEdit,
    StaffEvent,
    StaffMessage,
    StaffMessageRef,
    StaffUserId,
    SurfaceName,
    ThreadRef,
)
from commands.base import MENTION, Reply, Request, private_refusal
from connectors.wire import storable

log = logging.getLogger(__name__)

MATRIX = SurfaceName("matrix")
# The outbox row an event was sent for, in the event's content: how a send that may have gone
# out before a crash is found again.
MARKER = "org.supportbridge.outbox"
# Every event the bridge sends carries an `m.mentions` (Matrix 1.7, intentional mentions),
# empty unless the bridge itself names someone: clients then ping nobody for an `@room` or a
# name inside customer data.
SYNC_KEY = "next_batch"
TXN_KEY = "appservice_txns"
# 200 events of at most 64 KiB, with room for the envelope.
TRANSACTION_BODY_MAX = 16 * 1024 * 1024
REACTIONS = {
    DeliveryStatus.SENT: "✅",
    DeliveryStatus.DELIVERED: "☑️",
    DeliveryStatus.READ: "👀",
    DeliveryStatus.FAILED: "❌",
}
MSGTYPES = {
    MediaKind.IMAGE: "m.image",
    MediaKind.AUDIO: "m.audio",
    MediaKind.VIDEO: "m.video",
    MediaKind.DOCUMENT: "m.file",
}
KINDS = {"m.image": MediaKind.IMAGE, "m.audio": MediaKind.AUDIO, "m.video": MediaKind.VIDEO}
# Errors that mean the bot is set up wrongly (not in the room, token revoked): keep the rows
# and retry with backoff, so that fixing the setup lets everything through.
SETUP_ERRORS = {"M_FORBIDDEN", "M_UNKNOWN_TOKEN", "M_MISSING_TOKEN", "M_USER_DEACTIVATED"}
THREAD_COMMAND = re.compile(r"^!([A-Za-z][\w-]*)(?:\s|$)")
PAGE = 100
# Synapse refuses an event whose JSON passes 65,536 bytes (M_TOO_LARGE, the spec's size limit of
# an event); its ids, hashes and signatures take some hundreds of bytes beside the content.
POST_LIMIT = 60_000
_SIZING_ROOT = "$" + "x" * 43  # as long as the event ids of room versions 4 and later


@dataclass(frozen=True, slots=True)
class CommandLine:
    """A `!command` a staff member typed, in a thread or in the room."""

    room: str
    thread: ThreadRef | None
    ref: StaffMessageRef
    sender: StaffUserId
    text: str  # without the leading !


# -- errors ----------------------------------------------------------------------------------


def _matrix_error(
    status: int | None, errcode: str, message: str, retry_after: float | None
) -> DeliveryError:
    """The one mapping of a homeserver's answer (HTTP status, errcode) into the error tree."""
    if status == 429 or errcode == "M_LIMIT_EXCEEDED":
        seconds = retry_after if retry_after is not None else 1.0
        return RateLimited(seconds, f"Matrix rate limit: retry after {seconds:g}s")
    if status == 413 or errcode == "M_TOO_LARGE":
        return TooLarge(errcode or "M_TOO_LARGE", f"Matrix refused it as too large: {message}")
    if (status is not None and status >= 500) or errcode in ("M_UNKNOWN", ""):
        return TransientError(f"Matrix answered {status} {errcode}: {message}")
    if errcode in SETUP_ERRORS:
        log.error("Matrix refused a call because of the bot's setup: %s %s", errcode, message)
        return TransientError(f"Matrix setup problem: {errcode} {message}")
    return PermanentError(errcode, f"Matrix refused it: {errcode} {message}".strip())


def _retry_after(headers: Mapping[str, str] | None, body: Mapping[str, Any] | None) -> float | None:
    """Seconds to wait: the Retry-After header (spec 1.10) or the older retry_after_ms."""
    value = (headers or {}).get("Retry-After")
    if value is not None:
        with contextlib.suppress(ValueError):
            return max(float(value), 0.0)
    ms = (body or {}).get("retry_after_ms")
    if isinstance(ms, int | float) and not isinstance(ms, bool):
        return max(float(ms) / 1000.0, 0.0)
    return None


class _Client(AsyncClient):  # type: ignore[misc]
    """nio's client, keeping the HTTP status and Retry-After of an error answer."""

    async def create_matrix_response(
        self,
        response_class: type,
        transport_response: aiohttp.ClientResponse,
        data: tuple[Any, ...] | None = None,
        save_to: Any = None,
    ) -> Any:
        """nio's response, with `http_status` and `retry_after_header` on errors."""
        response = await super().create_matrix_response(
            response_class, transport_response, data, save_to
        )
        if isinstance(response, ErrorResponse) and transport_response is not None:
            response.http_status = transport_response.status
            response.retry_after_header = transport_response.headers.get("Retry-After")
        return response


def _raise_response(response: ErrorResponse) -> NoReturn:
    """Map one of nio's error responses into the bridge's error tree."""
    header = getattr(response, "retry_after_header", None)
    retry = _retry_after(
        {"Retry-After": header} if header else None,
        {"retry_after_ms": response.retry_after_ms} if response.retry_after_ms else None,
    )
    raise _matrix_error(
        getattr(response, "http_status", None),
        str(response.status_code or ""),
        str(response.message or ""),
        retry,
    )


async def _checked(call: Awaitable[Any], ok: type | tuple[type, ...]) -> Any:
    """Await a nio call; its answer when it is `ok`, else the mapped error."""
    try:
        response = await call
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise Unreachable(f"the homeserver could not be reached: {type(exc).__name__}") from None
    if isinstance(response, ok):
        return response
    if isinstance(response, ErrorResponse):
        _raise_response(response)
    raise TransientError(f"unexpected answer from the homeserver: {type(response).__name__}")


# -- parsing (pure) --------------------------------------------------------------------------


def split_ref(ref: str) -> tuple[str, str]:
    """'<room id>/<event id>' → (room, event); event ids never hold a slash."""
    room, _, event = ref.rpartition("/")
    return room, event


def _strip_reply_fallback(body: str) -> str:
    """Drop the quoted `> <@user> …` lines clients put before a reply's own text."""
    lines = body.split("\n")
    if not lines or not lines[0].startswith("> "):
        return body
    while lines and lines[0].startswith(">"):
        lines.pop(0)
    if lines and not lines[0].strip():
        lines.pop(0)
    return "\n".join(lines)


def parse_event(
    room: str, event: Mapping[str, Any], own_user: str, puppets: str | None = None
) -> StaffEvent | CommandLine | None:
    """Turn one timeline event of a room into a staff event or command; None for the rest.

    Events of the bridge itself are dropped: its bot user, and in appservice mode the users
    whose id starts with `puppets` (the customers it shows as Matrix users).
    """
    sender = event.get("sender")
    event_id = event.get("event_id")
    if not isinstance(sender, str) or not isinstance(event_id, str) or sender == own_user:
        return None
    if not storable(event):
        return None  # a lone surrogate: no text (and no homeserver) takes it
    if puppets and sender.startswith(puppets):
        return None
    content = event.get("content")
    if not isinstance(content, dict):
        return None
    kind = event.get("type")
    if kind == "m.room.redaction":
        # Room version 11 moved `redacts` into the content.
        target = event.get("redacts") or content.get("redacts")
        if not isinstance(target, str):
            return None
        return StaffDelete(
            surface=MATRIX,
            ref=StaffMessageRef(f"{room}/{target}"),
            author=StaffUserId(sender),
            event=StaffMessageRef(f"{room}/{event_id}"),
        )
    if kind != "m.room.message":
        return None
    relation = content.get("m.relates_to")
    relation = relation if isinstance(relation, dict) else {}
    rel_type, target = relation.get("rel_type"), relation.get("event_id")
    if rel_type == "m.replace":
        new = content.get("m.new_content")
        new_body = new.get("body", "") if isinstance(new, dict) else None
        if not isinstance(target, str) or not isinstance(new_body, str):
            return None
        return StaffEdit(
            surface=MATRIX,
            ref=StaffMessageRef(f"{room}/{target}"),
            text=new_body,
            author=StaffUserId(sender),
            event=StaffMessageRef(f"{room}/{event_id}"),
        )
    body = content.get("body")
    msgtype = content.get("msgtype")
    if not isinstance(body, str) or not isinstance(msgtype, str):
        return None
    thread = (
        ThreadRef(f"{room}/{target}")
        if rel_type == "m.thread" and isinstance(target, str)
        else None
    )
    if thread is None and relation.get("m.in_reply_to"):
        body = _strip_reply_fallback(body)
    ref = StaffMessageRef(f"{room}/{event_id}")
    if msgtype == "m.text" and THREAD_COMMAND.match(body):
        return CommandLine(room, thread, ref, StaffUserId(sender), body[1:].strip())
    if thread is None or msgtype == "m.notice":
        return None  # talk in the room itself, or another bot's notices
    attachments: tuple[Attachment, ...] = ()
    text = body
    url = content.get("url")
    if msgtype in ("m.image", "m.file", "m.audio", "m.video") and isinstance(url, str):
        raw_info = content.get("info")
        info: dict[str, Any] = raw_info if isinstance(raw_info, dict) else {}
        filename = content.get("filename") if isinstance(content.get("filename"), str) else None
        size = info.get("size")
        attachments = (
            Attachment(
                kind=KINDS.get(msgtype, MediaKind.DOCUMENT),
                ref=url,
                filename=filename or body,
                mime_type=info.get("mimetype") if isinstance(info.get("mimetype"), str) else None,
                size=size if isinstance(size, int) and not isinstance(size, bool) else None,
            ),
        )
        # The body is the file's name unless a separate filename makes it a caption.
        text = body if filename and filename != body else ""
    elif msgtype not in ("m.text", "m.emote"):
        return None
    return StaffMessage(
        surface=MATRIX,
        thread=thread,
        ref=ref,
        author=StaffUserId(sender),
        text=text,
        at=_sent_at(event.get("origin_server_ts")),
        attachments=attachments,
    )


def _sent_at(stamp: Any) -> datetime:
    """An event's origin_server_ts (milliseconds); now when it is no time a datetime holds."""
    if isinstance(stamp, int) and not isinstance(stamp, bool):
        try:
            return datetime.fromtimestamp(stamp / 1000, UTC)
        except (OverflowError, OSError, ValueError):
            pass
    return datetime.now(UTC)


# -- rendering (pure) ------------------------------------------------------------------------


_CODE = re.compile(r"`([^`\n]+)`")
_BOLD = re.compile(r"\*([^*\n]+)\*")


def inline_html(text: str) -> str:
    """Escape text for HTML, rendering `code` spans and *bold* the way replies write them."""
    escaped = html.escape(MENTION.sub(r"\1", text), quote=False)
    escaped = _CODE.sub(r"<code>\1</code>", escaped)
    return _BOLD.sub(r"<b>\1</b>", escaped)


def _plain(text: str) -> str:
    return MENTION.sub(r"\1", text).replace("`", "").replace("*", "")


def reply_html(reply: Reply) -> tuple[str, str]:
    """A command's reply as (plain body, HTML body)."""
    parts_html: list[str] = []
    if reply.title:
        mark = "" if reply.ok else "⚠️ "
        parts_html.append(f"<b>{mark}{inline_html(reply.title)}</b>")
    parts_html.extend(inline_html(line) for line in reply.lines)
    parts_html.extend(
        f"<b>{html.escape(label)}</b>: {inline_html(value)}" for label, value in reply.fields
    )
    plain = reply.text if reply.ok else f"⚠️ {reply.text}"
    return _plain(plain) or "Done.", "<br>".join(parts_html) or "Done."


def card_text(card: ContactCard) -> tuple[str, str]:
    """The thread root: a contact card as (plain body, HTML body)."""
    status = "open" if card.status is ConversationStatus.OPEN else "closed"
    handle = f"@{card.username}" if card.username else "—"
    address = f"+{card.chat_id}" if card.platform == "whatsapp" else card.chat_id
    facts = [
        ("Platform", card.platform),
        ("Username", handle),
        ("First contact", f"{card.first_contact:%Y-%m-%d %H:%M} UTC"),
        ("Messages", str(card.message_count)),
        ("Status", status),
        ("Opt-in", card.opt_in_source or "—"),
    ]
    if card.opted_out:
        facts.append(("Subscribed", "no: opted out, nothing is sent until they opt back in"))
    if card.assigned_to:
        facts.append(("Assigned to", card.assigned_to))
    if card.blocked:
        what = {"in": "inbound", "out": "outbound", "both": "inbound and outbound"}
        until = (
            f" until {card.blocked_until:%Y-%m-%d %H:%M} UTC" if card.blocked_until else " for good"
        )
        facts.append(("Blacklisted", f"{what.get(card.blocked, card.blocked)}{until}"))
    context = [f"conversation #{card.conversation_id} · {card.platform} id {address}"]
    if card.account:
        context.append(f"via {card.platform} account {card.account}")
    actions = "!reopen" if card.status is ConversationStatus.CLOSED else "!close"
    actions += " · !assign · " + ("!unblock" if card.blocked else "!block")
    plain = "\n".join(
        [
            f"{card.display_name} ({card.platform}, {handle}) · {status}",
            *(f"{label}: {value}" for label, value in facts),
            " · ".join(context),
            f"Thread actions: {actions}",
        ]
    )
    rows = "<br>".join(f"<b>{html.escape(k)}</b>: {html.escape(v)}" for k, v in facts)
    extra = " · ".join(html.escape(c) for c in context)
    if card.previous_thread_url:
        extra += f' · <a href="{html.escape(card.previous_thread_url)}">previous conversation</a>'
        plain += f"\nprevious conversation: {card.previous_thread_url}"
    formatted = (
        f"<h4>{html.escape(card.display_name or '?')}</h4>{rows}<br><i>{extra}</i>"
        f"<br><i>Thread actions: {html.escape(actions)}</i>"
    )
    return plain, formatted


def _in_thread(root: str) -> dict[str, Any]:
    """The relation of a thread reply, with the fallback for clients without threads."""
    return {
        "rel_type": "m.thread",
        "event_id": root,
        "is_falling_back": True,
        "m.in_reply_to": {"event_id": root},
    }


def _post_content(root: str, post: MirrorPost, *, as_customer: bool) -> dict[str, Any]:
    """The text event of a mirror post: the customer's own words when sent as their user,
    else under their name in bold."""
    content: dict[str, Any]
    if as_customer:
        content = {"msgtype": "m.text", "m.mentions": {}, "body": post.text}
    else:
        content = {
            "msgtype": "m.text",
            "m.mentions": {},
            "body": f"{post.author}: {post.text}",
            "format": "org.matrix.custom.html",
            "formatted_body": (
                f"<b>{html.escape(post.author)}</b>: "
                + html.escape(post.text).replace("\n", "<br>")
            ),
        }
    content["m.relates_to"] = _in_thread(root)
    if post.marker:
        content[MARKER] = post.marker
    return content


def _txn(*parts: object) -> str:
    """A transaction id from what identifies the send (an outbox row), or a fresh one."""
    if not parts or parts[-1] is None:
        return uuid.uuid4().hex
    return "sb-" + "-".join(re.sub(r"[^A-Za-z0-9._~]", "_", str(p)) for p in parts)


# -- the surface -----------------------------------------------------------------------------


class MatrixSurface:
    """One bot account: threads in rooms, staff replies back to customers."""

    name: ClassVar[SurfaceName] = MATRIX

    def __init__(
        self,
        settings: MatrixSettings,
        rooms: Sequence[str],
        http: aiohttp.ClientSession,
        sink: StaffSink,
        commands: CommandRunner,
        state: StateStore,
    ) -> None:
        if settings.homeserver is None or settings.user_id is None or settings.room is None:
            msg = "matrix.homeserver, matrix.user_id and matrix.room are required"
            raise ValueError(msg)
        self.settings = settings
        self.room = settings.room
        self.rooms = list(dict.fromkeys([settings.room, *rooms]))
        self.user_id = settings.user_id
        self._homeserver = settings.homeserver.rstrip("/")
        self._http = http
        self._sink = sink
        self._commands = commands
        self._state = state
        config = AsyncClientConfig(
            # 429s and timeouts go back to the outbox, which knows the rate limits and backs off.
            max_limit_exceeded=0,
            max_timeouts=0,
            request_timeout=60,
            store_sync_tokens=False,
            encryption_enabled=False,
        )
        self.client = _Client(
            self._homeserver, settings.user_id, device_id=settings.device_id, config=config
        )
        self.client.client_session = http  # the bridge's shared session; closed by the app
        self.appservice = settings.mode == "appservice"
        server = settings.user_id.partition(":")[2]
        # Staff are users of the bot's own homeserver and of the servers the admin lists; in a
        # federated room anyone else may write, and has role none.
        self.staff_servers = frozenset({server, *settings.allowed_servers})
        # Appservice mode: customers are `@<prefix><keyed hash>:<server>` (see puppet_id).
        self.puppets = f"@{settings.user_prefix}" if self.appservice else None
        key = settings.puppet_key or settings.as_token
        self._puppet_key = key.get_secret_value().encode() if key is not None else b""
        self._server = server
        if self.appservice and settings.as_token is not None:
            self.client.access_token = settings.as_token.get_secret_value()
        elif settings.access_token is not None:
            self.client.access_token = settings.access_token.get_secret_value()
        self._hs_token = settings.hs_token.get_secret_value().encode() if settings.hs_token else b""
        self._puppets_in: set[tuple[str, str]] = set()
        self._seen_txns: OrderedDict[str, None] = OrderedDict()
        self._txn_lock = asyncio.Lock()
        self._login_lock = asyncio.Lock()
        self._sync_task: asyncio.Task[None] | None = None
        self._names: dict[str, str] = {}
        self.synced = asyncio.Event()

    # -- lifecycle ------------------------------------------------------------------------

    def routes(self) -> Sequence[web.RouteDef]:
        """Appservice mode: the endpoints the homeserver pushes to; bot mode reads /sync."""
        if not self.appservice:
            return []
        base = self.settings.listen_path.rstrip("/")
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

    async def start(self) -> None:
        """Log in, check who the bot is, join the rooms (syncing: see start_loop)."""
        await self._ready()
        who = await _checked(self.client.whoami(), WhoamiResponse)
        if who.user_id != self.user_id:
            msg = f"the access token belongs to {who.user_id}, not to matrix.user_id {self.user_id}"
            raise RuntimeError(msg)
        for room in self.rooms:
            # Posting into a room the bot is not in fails and retries until someone invites it.
            await self._join(room)
        log.info(
            "Matrix: %s on %s (%s mode), rooms %s",
            self.user_id,
            self._homeserver,
            self.settings.mode,
            self.rooms,
        )
        if self.appservice:
            self.synced.set()

    async def start_loop(self) -> None:
        """Bot mode: /sync (one process at a time, or every event would arrive twice)."""
        if not self.appservice and self._sync_task is None:
            self._sync_task = asyncio.create_task(self._sync_forever(), name="matrix-sync")

    async def probe(self) -> str:
        """A harmless authenticated call (whoami) for `run.py check`: who the bot is.

        With a password instead of a token, the check logs in and out again."""
        fresh = not self.client.access_token
        await self._ready()
        try:
            who = await _checked(self.client.whoami(), WhoamiResponse)
        finally:
            if fresh:
                await _checked(self.client.logout(), LogoutResponse)
        if who.user_id != self.user_id:
            raise PermanentError(
                "M_FORBIDDEN", f"the token belongs to {who.user_id}, not to {self.user_id}"
            )
        return f"{who.user_id} on {self._homeserver} ({self.settings.mode} mode)"

    async def stop(self) -> None:
        """Stop syncing (the shared HTTP session is closed by the app)."""
        await self.stop_loop()

    async def stop_loop(self) -> None:
        """Stop syncing, if syncing."""
        if self._sync_task is not None:
            self._sync_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sync_task
            self._sync_task = None

    async def _ready(self) -> None:
        """Log in with the password once, when no access token is configured."""
        if self.client.access_token:
            return
        async with self._login_lock:
            if self.client.access_token:
                return
            password = self.settings.password
            if password is None:
                msg = "matrix.access_token or matrix.password is required"
                raise RuntimeError(msg)
            login = await _checked(
                self.client.login(password.get_secret_value(), device_name="support-bridge"),
                LoginResponse,
            )
            log.info("Matrix: logged in as %s (device %s)", login.user_id, login.device_id)

    # -- inbound --------------------------------------------------------------------------

    def _filter(self) -> dict[str, Any]:
        return {
            "presence": {"not_types": ["*"]},
            "account_data": {"not_types": ["*"]},
            "room": {
                "rooms": self.rooms,
                "timeline": {"limit": PAGE},
                "state": {"lazy_load_members": True},
                "ephemeral": {"not_types": ["*"]},
                "account_data": {"not_types": ["*"]},
            },
        }

    async def _sync_forever(self) -> None:
        """Long-poll /sync; store each batch's events, then the position after them."""
        since = await self._state.get(SYNC_KEY)
        delay = 1.0
        while True:
            try:
                response = await self.client.sync(
                    timeout=int(self.settings.sync_timeout_s * 1000) if since else 0,
                    sync_filter=self._filter(),
                    since=since,
                )
                if isinstance(response, SyncError):
                    _raise_response(response)
                assert isinstance(response, SyncResponse)
                if since is not None:
                    # The very first sync only learns the position: history is not news.
                    await self._take(response, since)
                since = response.next_batch
                await self._state.put(SYNC_KEY, since)
                self.synced.set()
                delay = 1.0
            except asyncio.CancelledError:
                raise
            except RateLimited as exc:
                await asyncio.sleep(exc.retry_after)
            except Exception as exc:
                log.warning("Matrix sync failed (%s); again in %.0fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 60.0)

    async def _take(self, response: SyncResponse, since: str) -> None:
        for room, joined in response.rooms.join.items():
            if room not in self.rooms:
                continue
            events = [e.source for e in joined.timeline.events]
            if joined.timeline.limited and joined.timeline.prev_batch:
                events = await self._gap(room, joined.timeline.prev_batch, since) + events
            for event in events:
                await self._handle(room, event)

    async def _gap(self, room: str, start: str, since: str) -> list[dict[str, Any]]:
        """Events between the last sync and a `limited` timeline: none may be missed."""
        found: list[dict[str, Any]] = []
        token: str | None = start
        while token:
            page = await self._api(
                "GET",
                f"/_matrix/client/v3/rooms/{quote(room)}/messages",
                params={"dir": "b", "from": token, "to": since, "limit": str(PAGE)},
            )
            chunk = page.get("chunk") or []
            found.extend(chunk)
            token = page.get("end") if chunk else None
        return list(reversed(found))

    # -- appservice: the homeserver pushes transactions ----------------------------------

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
        async with self._txn_lock:
            if txn in self._seen_txns or txn in await self._recent_txns():
                return web.json_response({})
            try:
                for event in events:
                    if isinstance(event, dict):
                        await self._pushed(event)
            except Exception:
                log.exception("Matrix: transaction %s not stored; the homeserver retries", txn)
                return web.json_response(
                    {"errcode": "M_UNKNOWN", "error": "not stored"}, status=500
                )
            self._seen_txns[txn] = None
            while len(self._seen_txns) > 200:
                self._seen_txns.popitem(last=False)
            await self._state.put(TXN_KEY, json.dumps(list(self._seen_txns)))
        return web.json_response({})

    async def _recent_txns(self) -> set[str]:
        if not self._seen_txns:
            stored = await self._state.get(TXN_KEY)
            for txn in json.loads(stored) if stored else []:
                self._seen_txns[str(txn)] = None
        return set(self._seen_txns)

    async def _pushed(self, event: Mapping[str, Any]) -> None:
        room = event.get("room_id")
        if not isinstance(room, str) or room not in self.rooms:
            return
        content = event.get("content")
        if (
            event.get("type") == "m.room.member"
            and event.get("state_key") == self.user_id
            and isinstance(content, Mapping)
            and content.get("membership") == "invite"
        ):
            await self._join(room)  # invited into a room of the settings: go in
            return
        await self._handle(room, event)

    async def _query(self, request: web.Request) -> web.Response:
        """The bridge creates its users and rooms itself; it knows of no others."""
        refused = self._authorized(request)
        if refused is not None:
            return refused
        return web.json_response({"errcode": "M_NOT_FOUND", "error": "unknown"}, status=404)

    async def _ping(self, request: web.Request) -> web.Response:
        refused = self._authorized(request)
        return refused if refused is not None else web.json_response({})

    async def _join(self, room: str) -> None:
        answer = await self.client.join(room)
        if isinstance(answer, JoinError):
            log.error("Matrix: %s cannot join %s (%s)", self.user_id, room, answer.message)

    # -- events -----------------------------------------------------------------------------

    async def _handle(self, room: str, event: Mapping[str, Any]) -> None:
        parsed = parse_event(room, event, self.user_id, self.puppets)
        if parsed is None:
            return
        if isinstance(parsed, CommandLine):
            await self._command(parsed)
            return
        if isinstance(parsed, StaffMessage):
            parsed = replace(parsed, author_name=await self._name_of(parsed.author))
        if self.stranger(parsed.author):
            parsed = replace(parsed, stranger=True)
        # Raising here leaves the sync position where it was: the batch comes again and the
        # pipeline de-duplicates on the event ids.
        await self._sink(parsed)

    def stranger(self, user: str | None) -> bool:
        """Whether a user is of a homeserver whose users are not staff (role none)."""
        return user is not None and user.partition(":")[2] not in self.staff_servers

    async def _command(self, line: CommandLine) -> None:
        request = Request(
            surface=MATRIX,
            user=line.sender,
            user_name=await self._name_of(line.sender),
            text=line.text,
            channel=line.room,
            thread=line.thread,
            ref=line.ref,
            private_answers=await self._only_us(line.room, line.sender),
            stranger=self.stranger(line.sender),
        )
        reply = await self._commands(request)
        if reply.private and not request.private_answers:
            # A room shows every event to all its members: a private answer never goes there.
            reply = private_refusal(f"!{(line.text.split() or ['this'])[0]}")
        if not (reply.title or reply.lines or reply.fields or reply.file):
            return
        _, root = split_ref(line.thread) if line.thread else ("", None)
        try:
            await self._reply(line.room, root, reply, key=line.ref)
        except DeliveryError as exc:
            log.warning("Matrix: the answer to a command could not be sent: %s", exc)

    async def _reply(self, room: str, root: str | None, reply: Reply, key: str) -> None:
        body, formatted = reply_html(reply)
        content: dict[str, Any] = {
            "msgtype": "m.notice",
            "m.mentions": {},
            "body": body,
            "format": "org.matrix.custom.html",
            "formatted_body": formatted,
        }
        if root:
            content["m.relates_to"] = _in_thread(root)
        await self._send(room, "m.room.message", content, _txn("reply", key))
        if reply.file is not None:
            await self._send_file(room, root, reply.file, None, _txn("reply-file", key))

    async def _only_us(self, room: str, user: str) -> bool:
        """Whether only `user` and the bot can read the room: no other member joined, invited
        or knocking, and its history is not world-readable (Matrix shows a room's events to
        all of them, past events included)."""
        base = f"/_matrix/client/v3/rooms/{quote(room)}"
        try:
            answer = await self._api("GET", f"{base}/members")
        except DeliveryError:
            return False
        try:
            state = await self._api("GET", f"{base}/state/m.room.history_visibility")
        except PermanentError as exc:
            if exc.code != "M_NOT_FOUND":
                return False
            state = {}  # never set: the spec's default, "shared", is members only
        except DeliveryError:
            return False
        if state.get("history_visibility") == "world_readable":
            return False
        readers = {
            str(event.get("state_key"))
            for event in answer.get("chunk") or []
            if isinstance(event, dict)
            and (event.get("content") or {}).get("membership") in ("join", "invite", "knock")
        }
        return readers == {user, self.user_id}

    async def _name_of(self, user: str) -> str | None:
        if user in self._names:
            return self._names[user]
        try:
            profile = await self._api(
                "GET", f"/_matrix/client/v3/profile/{quote(user)}/displayname"
            )
        except DeliveryError:
            return None
        name = profile.get("displayname")
        if isinstance(name, str) and name:
            self._names[user] = name
            return name
        return None

    # -- outbound -------------------------------------------------------------------------

    async def _send(self, room: str, kind: str, content: dict[str, Any], txn: str) -> str:
        await self._ready()
        answer = await _checked(
            self.client.room_send(room, kind, content, tx_id=txn), RoomSendResponse
        )
        return str(answer.event_id)

    async def _api(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Any = None,
    ) -> dict[str, Any]:
        """A client-server API call nio does not offer (relations, pages of history)."""
        await self._ready()
        headers = {"Authorization": f"Bearer {self.client.access_token}"}
        try:
            async with self._http.request(
                method, self._homeserver + path, params=params, json=json, headers=headers
            ) as response:
                try:
                    body = await response.json(content_type=None)
                except ValueError:
                    body = {}
                body = body if isinstance(body, dict) else {}
                if response.status >= 400:
                    raise _matrix_error(
                        response.status,
                        str(body.get("errcode", "")),
                        str(body.get("error", "")),
                        _retry_after(response.headers, body),
                    )
                return body
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise Unreachable(
                f"the homeserver could not be reached: {type(exc).__name__}"
            ) from None

    async def open_thread(
        self, card: ContactCard, channel: str | None, marker: str | None = None
    ) -> ThreadRef:
        """Post the contact card as a new thread root in the room."""
        room = channel or self.room
        plain, formatted = card_text(card)
        content: dict[str, Any] = {
            "msgtype": "m.text",
            "m.mentions": {},
            "body": plain,
            "format": "org.matrix.custom.html",
            "formatted_body": formatted,
        }
        if marker:
            content[MARKER] = marker
        event = await self._send(room, "m.room.message", content, _txn("open", marker))
        return ThreadRef(f"{room}/{event}")

    async def find_thread(self, channel: str | None, marker: str) -> ThreadRef | None:
        """Look through the room's recent history for a root carrying this outbox row."""
        room = channel or self.room
        token: str | None = None
        for _ in range(5):  # a root posted before a crash is among the newest events
            params = {"dir": "b", "limit": str(PAGE)}
            if token:
                params["from"] = token
            page = await self._api(
                "GET", f"/_matrix/client/v3/rooms/{quote(room)}/messages", params=params
            )
            for event in page.get("chunk") or []:
                if _carries(event, marker) and event.get("sender") == self.user_id:
                    return ThreadRef(f"{room}/{event['event_id']}")
            token = page.get("end")
            if not token or not page.get("chunk"):
                break
        return None

    async def update_root(self, thread: ThreadRef, card: ContactCard) -> None:
        """Rewrite the contact card in place (`m.replace`)."""
        room, root = split_ref(thread)
        plain, formatted = card_text(card)
        new = {
            "msgtype": "m.text",
            "m.mentions": {},
            "body": plain,
            "format": "org.matrix.custom.html",
            "formatted_body": formatted,
        }
        content = {
            **new,
            "body": f"* {plain}",
            "m.new_content": new,
            "m.relates_to": {"rel_type": "m.replace", "event_id": root},
        }
        await self._send(room, "m.room.message", content, _txn())

    post_limit = POST_LIMIT

    def post_size(self, post: MirrorPost) -> int:
        """Bytes of the JSON of the text event `post` sends, as the homeserver measures it."""
        as_customer = bool(self.appservice and post.customer)
        content = _post_content(_SIZING_ROOT, post, as_customer=as_customer)
        return len(json.dumps(content, ensure_ascii=False).encode("utf-8", "surrogatepass"))

    async def post(self, thread: ThreadRef, post: MirrorPost) -> StaffMessageRef:
        """Post a customer's message(s) into the thread under the customer's name (as the
        customer's own Matrix user in appservice mode)."""
        room, root = split_ref(thread)
        if self.appservice and post.customer:
            return await self._post_as_customer(room, root, post)
        first: str | None = None
        if post.text or not post.files:
            content = _post_content(root, post, as_customer=False)
            first = await self._send(room, "m.room.message", content, _txn("post", post.marker))
        for index, file in enumerate(post.files):
            event = await self._send_file(
                room,
                root,
                file,
                post.marker,
                _txn("file", post.marker, index) if post.marker else _txn(),
                caption=None if post.text else f"{post.author} sent {file.filename}",
            )
            first = first or event
        assert first is not None
        return StaffMessageRef(f"{room}/{first}")

    # -- appservice: customers as Matrix users ---------------------------------------------

    def puppet_id(self, customer: str) -> str:
        """The Matrix user a customer (`<platform>_<chat id>`) appears as, e.g.
        @customer_5f0c…:example.org: a keyed hash, because a homeserver never forgets a user
        id (membership history keeps it), and a phone number in it would outlive an erasure.
        Users made before under readable ids keep their past events; new posts use these."""
        digest = hmac.new(self._puppet_key, customer.encode(), "sha256").hexdigest()
        return f"{self.puppets}{digest[:32]}:{self._server}"

    async def _puppet(self, room: str, customer: str, name: str) -> str:
        """The customer's user, registered, named and in the room (each step idempotent)."""
        user = self.puppet_id(customer)
        if (user, room) in self._puppets_in:
            return user
        local = user[1:].partition(":")[0]
        try:
            await self._api(
                "POST",
                "/_matrix/client/v3/register",
                json={"type": "m.login.application_service", "username": local},
            )
        except PermanentError as exc:
            if exc.code != "M_USER_IN_USE":
                raise
        await self._api(
            "PUT",
            f"/_matrix/client/v3/profile/{quote(user)}/displayname",
            params={"user_id": user},
            json={"displayname": name[:200] or customer},
        )
        try:
            await self._api(
                "POST", f"/_matrix/client/v3/rooms/{quote(room)}/invite", json={"user_id": user}
            )
        except (PermanentError, TransientError) as exc:
            if isinstance(exc, RateLimited) or "already in the room" not in str(exc):
                raise
        await self._api(
            "POST", f"/_matrix/client/v3/join/{quote(room)}", params={"user_id": user}, json={}
        )
        self._puppets_in.add((user, room))
        return user

    async def _send_as(self, user: str, room: str, content: dict[str, Any], txn: str) -> str:
        answer = await self._api(
            "PUT",
            f"/_matrix/client/v3/rooms/{quote(room)}/send/m.room.message/{quote(txn)}",
            params={"user_id": user},
            json=content,
        )
        return str(answer["event_id"])

    async def _post_as_customer(self, room: str, root: str, post: MirrorPost) -> StaffMessageRef:
        assert post.customer is not None
        user = await self._puppet(room, post.customer, post.author)
        first: str | None = None
        if post.text or not post.files:
            content = _post_content(root, post, as_customer=True)
            first = await self._send_as(user, room, content, _txn("post", post.marker))
        for index, file in enumerate(post.files):
            content = await self._file_content(root, file, post.marker)
            event = await self._send_as(
                user, room, content, _txn("file", post.marker, index) if post.marker else _txn()
            )
            first = first or event
        assert first is not None
        return StaffMessageRef(f"{room}/{first}")

    async def _send_file(
        self,
        room: str,
        root: str | None,
        file: FileData,
        marker: str | None,
        txn: str,
        caption: str | None = None,
    ) -> str:
        content = await self._file_content(root, file, marker, caption)
        return await self._send(room, "m.room.message", content, txn)

    async def _file_content(
        self, root: str | None, file: FileData, marker: str | None, caption: str | None = None
    ) -> dict[str, Any]:
        """Upload a file to the homeserver; the content of the event that shows it."""
        await self._ready()
        data = file.data
        upload, _ = await _checked_pair(
            self.client.upload(
                lambda *_: data,
                content_type=file.mime_type,
                filename=file.filename,
                filesize=len(data),
            )
        )
        content: dict[str, Any] = {
            "msgtype": MSGTYPES.get(file.kind, "m.file"),
            "m.mentions": {},
            "body": caption or file.filename,
            "filename": file.filename,
            "url": upload.content_uri,
            "info": {"mimetype": file.mime_type, "size": len(data)},
        }
        if root:
            content["m.relates_to"] = _in_thread(root)
        if marker:
            content[MARKER] = marker
        return content

    async def edit_post(self, ref: StaffMessageRef, post: MirrorPost) -> None:
        """Show a customer's edit on the mirrored message (`m.replace`)."""
        room, event = split_ref(ref)
        sender = self.user_id
        if self.appservice:
            # An edit counts only when its sender sent the original (a customer's own user).
            original = await self._api(
                "GET", f"/_matrix/client/v3/rooms/{quote(room)}/event/{quote(event)}"
            )
            sender = str(original.get("sender", self.user_id))
        shown = post.text if sender != self.user_id else f"{post.author}: {post.text}"
        text = shown + (" (edited)" if post.edited else "")
        new = {"msgtype": "m.text", "body": text, "m.mentions": {}}
        content = {
            **new,
            "body": f"* {text}",
            "m.new_content": new,
            "m.relates_to": {"rel_type": "m.replace", "event_id": event},
        }
        if sender != self.user_id:
            await self._send_as(sender, room, content, _txn())
        else:
            await self._send(room, "m.room.message", content, _txn())

    async def mark(self, ref: StaffMessageRef, status: DeliveryStatus) -> None:
        """React to the agent's event with the delivery status (`m.annotation`)."""
        key = REACTIONS.get(status)
        if key is None:
            return
        room, event = split_ref(ref)
        content = {"m.relates_to": {"rel_type": "m.annotation", "event_id": event, "key": key}}
        try:
            await self._send(room, "m.reaction", content, _txn("mark", event, status.value))
        except PermanentError as exc:
            # Synapse refuses the same reaction from the same user twice: it is there already.
            if "same reaction" not in str(exc).lower():
                raise

    async def notice(self, thread: ThreadRef, text: str) -> StaffMessageRef:
        """A short notice from the bridge in the thread."""
        room, root = split_ref(thread)
        content = {
            "msgtype": "m.notice",
            "m.mentions": {},
            "body": f"ℹ️ {text}",
            "m.relates_to": _in_thread(root),
        }
        event = await self._send(room, "m.room.message", content, _txn())
        return StaffMessageRef(f"{room}/{event}")

    async def tell(
        self,
        thread: ThreadRef,
        user: StaffUserId | None,
        answer_to: StaffMessageRef,
        text: str,
    ) -> None:
        """A notice in the thread that answers the person's event and names (mentions) them:
        Matrix has no messages only one member sees."""
        room, root = split_ref(thread)
        _, event = split_ref(answer_to)
        who = user or "Someone"
        link = f'<a href="https://matrix.to/#/{quote(who)}">{html.escape(who)}</a>' if user else who
        content: dict[str, Any] = {
            "msgtype": "m.notice",
            "body": f"{who}: {_plain(text)}",
            "format": "org.matrix.custom.html",
            "formatted_body": f"{link}: {inline_html(text)}",
            "m.mentions": {"user_ids": [user]} if user else {},
            # A thread reply that quotes their event (MSC3440: a reply inside a thread).
            "m.relates_to": {
                "rel_type": "m.thread",
                "event_id": root,
                "is_falling_back": False,
                "m.in_reply_to": {"event_id": event},
            },
        }
        await self._send(room, "m.room.message", content, _txn("tell", event))

    async def announce(
        self, channel: str, text: str, ref: StaffMessageRef | None = None
    ) -> StaffMessageRef:
        """Post (or rewrite, with `m.replace`) a notice of the bridge in a room."""
        new = {"msgtype": "m.notice", "body": text, "m.mentions": {}}
        if ref is not None:
            room, event = split_ref(ref)
            content = {
                **new,
                "body": f"* {text}",
                "m.new_content": new,
                "m.relates_to": {"rel_type": "m.replace", "event_id": event},
            }
            await self._send(room, "m.room.message", content, _txn())
            return ref
        event = await self._send(channel, "m.room.message", new, _txn())
        return StaffMessageRef(f"{channel}/{event}")

    async def fetch(self, attachment: Attachment) -> FileData:
        """Download a file an agent attached (authenticated media, spec 1.11)."""
        match = re.fullmatch(r"mxc://([^/]+)/([^/?#]+)", attachment.ref)
        if match is None:
            raise PermanentError("bad_mxc", f"not a Matrix media URI: {attachment.ref}")
        await self._ready()
        url = (
            f"{self._homeserver}/_matrix/client/v1/media/download/"
            f"{quote(match.group(1))}/{quote(match.group(2))}"
        )
        try:
            async with self._http.get(
                url, headers={"Authorization": f"Bearer {self.client.access_token}"}
            ) as response:
                if response.status == 429 or response.status >= 500:
                    raise _matrix_error(response.status, "", "", _retry_after(response.headers, {}))
                if response.status != 200:
                    raise PermanentError(
                        str(response.status), "the file could not be downloaded from Matrix"
                    )
                data = await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise Unreachable(f"Matrix media download failed: {type(exc).__name__}") from None
        return FileData(
            kind=attachment.kind,
            filename=attachment.filename or "file",
            data=data,
            mime_type=attachment.mime_type or "application/octet-stream",
        )

    async def permalink(self, thread: ThreadRef) -> str | None:
        """A matrix.to link to the thread's root."""
        room, root = split_ref(thread)
        return f"https://matrix.to/#/{quote(room)}/{quote(root)}"

    async def _relations(self, room: str, root: str) -> list[dict[str, Any]]:
        """Every event related to the root: thread replies, edits, reactions."""
        found: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            params = {"limit": str(PAGE)}
            if token:
                params["from"] = token
            page = await self._api(
                "GET",
                f"/_matrix/client/v1/rooms/{quote(room)}/relations/{quote(root)}",
                params=params,
            )
            found.extend(page.get("chunk") or [])
            token = page.get("next_batch")
            if not token:
                return found

    async def find_post(self, thread: ThreadRef, marker: str) -> StaffMessageRef | None:
        """Look through the thread for an event carrying this outbox row."""
        room, root = split_ref(thread)
        for event in await self._relations(room, root):
            if _carries(event, marker) and self._sent_by_bridge(event):
                return StaffMessageRef(f"{room}/{event['event_id']}")
        return None

    def _sent_by_bridge(self, event: Mapping[str, Any]) -> bool:
        sender = str(event.get("sender", ""))
        return sender == self.user_id or bool(self.puppets and sender.startswith(self.puppets))

    async def erase_thread(self, thread: ThreadRef, text: str) -> None:
        """Redact the thread's events the bot may redact (its own; others' when it moderates
        the room), and the root; a notice in the thread says what happened."""
        room, root = split_ref(thread)
        kept = 0
        try:
            related = await self._relations(room, root)
        except PermanentError:
            return  # the root is gone already
        customers: set[str] = set()
        for event in [*related, {"event_id": root, "sender": self.user_id}]:
            if event.get("unsigned", {}).get("redacted_because"):
                continue
            sender = str(event.get("sender", ""))
            try:
                if self.puppets and sender.startswith(self.puppets):
                    customers.add(sender)  # the customer's own user redacts its events
                    await self._api(
                        "PUT",
                        f"/_matrix/client/v3/rooms/{quote(room)}/redact/"
                        f"{quote(event['event_id'])}/{_txn('erase', event['event_id'])}",
                        params={"user_id": sender},
                        json={"reason": "data erasure"},
                    )
                    continue
                await self._ready()
                await _checked(
                    self.client.room_redact(
                        room,
                        event["event_id"],
                        reason="data erasure",
                        tx_id=_txn("erase", event["event_id"]),
                    ),
                    RoomRedactResponse,
                )
            except (PermanentError, TransientError) as exc:
                if isinstance(exc, RateLimited):
                    raise
                kept += 1
                log.info("Matrix: %s not redacted: %s", event.get("event_id"), exc)
        for user in customers:
            # The customer's name lives on in the user's profile and room membership.
            await self._api(
                "PUT",
                f"/_matrix/client/v3/profile/{quote(user)}/displayname",
                params={"user_id": user},
                json={"displayname": "Erased customer"},
            )
            with contextlib.suppress(PermanentError):
                await self._api(
                    "POST",
                    f"/_matrix/client/v3/rooms/{quote(room)}/leave",
                    params={"user_id": user},
                    json={},
                )
            self._puppets_in.discard((user, room))
        if kept:
            text += (
                f" {kept} event{'s' if kept != 1 else ''} in this thread could not be redacted"
                " by the bridge: a room moderator can remove them."
            )
        content = {
            "msgtype": "m.notice",
            "body": text,
            "m.mentions": {},
            "m.relates_to": _in_thread(root),
        }
        await self._send(room, "m.room.message", content, _txn("tombstone", root))

    def rate_keys(self, action: str, channel: str | None) -> tuple[str, ...]:
        """Everything the bot sends counts against the homeserver's limit for its account."""
        return ("matrix:send",)

    def rate_limits(self) -> Mapping[str, RateLimit]:
        """`[matrix] rate` and `burst` (events per second for the bot account)."""
        return {"matrix:send": RateLimit(rate=self.settings.rate, burst=self.settings.burst)}


def _carries(event: Mapping[str, Any], marker: str) -> bool:
    """Whether an event's content names this outbox row."""
    content = event.get("content") or {}
    return marker in str(content.get(MARKER, "")).split(",")


async def _checked_pair(call: Awaitable[tuple[Any, Any]]) -> tuple[UploadResponse, Any]:
    """nio's upload answers a pair; map its error like every other call."""
    try:
        response, keys = await call
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise Unreachable(f"the homeserver could not be reached: {type(exc).__name__}") from None
    if isinstance(response, UploadResponse):
        return response, keys
    if isinstance(response, ErrorResponse):
        _raise_response(response)
    raise TransientError(f"unexpected answer to an upload: {type(response).__name__}")


def build(
    settings: Settings,
    http: aiohttp.ClientSession,
    sink: StaffSink,
    commands: CommandRunner,
    state: StateStore,
) -> list[StaffSurface]:
    """The Matrix surface, when a homeserver and a bot user are configured."""
    if not settings.matrix.enabled:
        return []
    rooms = [r.matrix_room for r in settings.routes if r.matrix_room]
    return [MatrixSurface(settings.matrix, rooms, http, sink, commands, state)]


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
