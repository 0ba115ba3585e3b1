"""Slack as a staff surface: one thread per conversation, on slack-bolt and slack-sdk.

Events reach the bridge over the HTTP Events API (`POST /slack/events`, signature-checked) or
Socket Mode (an app-level token); both are handled by the same bolt app, which answers Slack
only after the event is stored (`process_before_response`), so nothing is acknowledged and lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, ClassVar, NoReturn
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bridge import bodies
from bridge.config import Settings, SlackSettings
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
from commands.base import Reply, Request
from connectors.slack_blocks import (
    ACTION_PREFIX,
    FORM_CALLBACK,
    NotOurForm,
    card_actions,
    form_view,
    mrkdwn,
    reply_blocks,
    submitted,
)
from connectors.slack_guard import RecentSignatures
from connectors.slack_guard import screen as screen_headers
from connectors.slack_teams import (
    Origin,
    Workspaces,
    command_origin,
    event_origin,
    interaction_origin,
    user_origin,
)
from connectors.wire import int_or_none, opt_str, storable

log = logging.getLogger(__name__)

SLACK = SurfaceName("slack")
MARKER_EVENT = "bridge_mirror"
REACTIONS = {
    DeliveryStatus.SENT: "white_check_mark",
    DeliveryStatus.DELIVERED: "ballot_box_with_check",
    DeliveryStatus.READ: "eyes",
    DeliveryStatus.FAILED: "x",
}
# Errors that mean the app is set up wrongly, not that the message is bad: keep the rows and
# retry with backoff, so fixing the setup (inviting the bot, say) lets everything through.
SETUP_ERRORS = {
    "not_in_channel",
    "channel_not_found",
    "is_archived",
    "invalid_auth",
    "not_authed",
    "token_revoked",
    "account_inactive",
    "missing_scope",
    "ekm_access_denied",
}
DONE_ALREADY = {"already_reacted"}
GONE_ALREADY = {"message_not_found", "file_not_found", "file_deleted", "thread_not_found"}
# A thread message that starts with `!word` is a command for the bridge, not a reply.
THREAD_COMMAND = re.compile(r"^!([A-Za-z][\w-]*)(?:\s|$)")
# A Slack user id (W… on Enterprise Grid): the only assignee the contact card mentions.
SLACK_USER = re.compile(r"[UW][A-Z0-9]{2,}")
# Slack shows the person an error unless a slash command is answered within 3 seconds; work
# that takes longer answers "working on it" and follows up through the response_url.
SLASH_ANSWER_WITHIN = 2.5
SEEN_COMMANDS = 2048
# chat.postMessage refuses a text past 40,000 characters (msg_too_long) or cuts it. Posts stay
# under this, counted in UTF-16 code units (never fewer than Slack's characters) of the text as
# sent, escaping included: a customer's "&" is five characters there.
POST_LIMIT = 38_000
TOO_LONG = {"msg_too_long", "msg_blocks_too_long"}


# Slack serves a workspace's files from files.slack.com: the `url_private` of its file objects
# (https://api.slack.com/types/file, "Authentication"), fetched with the bot token. An
# external file (a Google Drive document, `"mode": "external"`) names its own host there, and
# the event that carries the file object can name any: the token goes to Slack's file host
# (files.<api host>, for Slack's other clouds such as slack-gov.com) and the configured API's
# own origin (a proxy, or the fake in tests), over HTTPS, and nowhere else.
SLACK_FILE_HOSTS = frozenset({"files.slack.com"})
_DEFAULT_PORTS = {"http": 80, "https": 443}


def slack_file_host_allowed(url: str, api_base: str) -> bool:
    """Whether a file URL is one Slack serves files from, so the bot token may go with it."""
    try:
        parts, api = urlsplit(url), urlsplit(api_base)
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme)
        api_port = api.port or _DEFAULT_PORTS.get(api.scheme)
    except ValueError:  # a port that is no number
        return False
    if parts.username is not None or parts.password is not None:
        return False
    host = (parts.hostname or "").rstrip(".").lower()
    api_host = (api.hostname or "").rstrip(".").lower()
    if not host:
        return False
    if (parts.scheme, host, port) == (api.scheme, api_host, api_port):
        return True
    slack_hosts = SLACK_FILE_HOSTS | {f"files.{api_host}"}
    return parts.scheme == "https" and port == 443 and host in slack_hosts


def _slack_error(status: int, error: str, retry_after: str | None) -> DeliveryError:
    """The one mapping of a Slack Web API answer (HTTP status, `error`) into the error tree."""
    if status == 429 or error == "ratelimited":
        seconds = float(retry_after or 1)
        return RateLimited(seconds, f"Slack rate limit: retry after {seconds:g}s")
    if status >= 500 or error in ("internal_error", "fatal_error", "service_unavailable"):
        return TransientError(f"Slack answered {status} {error}")
    if error in SETUP_ERRORS:
        log.error("Slack refused a call because of the app's setup: %s", error)
        return TransientError(f"Slack setup problem: {error}")
    if error in TOO_LONG:
        return TooLarge(error, f"Slack refused it as too long: {error}")
    return PermanentError(error, f"Slack refused it: {error}")


def _raise_for(exc: Exception) -> NoReturn:
    """Map a Slack SDK or transport error into the bridge's error tree."""
    if isinstance(exc, SlackApiError):
        response = exc.response
        error = str(response.get("error", "unknown_error"))
        raise _slack_error(
            response.status_code, error, response.headers.get("Retry-After")
        ) from exc
    if isinstance(exc, aiohttp.ClientError | TimeoutError):
        raise Unreachable(f"Slack could not be reached: {exc!r}") from exc
    raise exc


def _carries(message: Mapping[str, Any], marker: str) -> bool:
    """Whether a message's metadata names this outbox row."""
    meta = message.get("metadata") or {}
    if meta.get("event_type") != MARKER_EVENT:
        return False
    return marker in str((meta.get("event_payload") or {}).get("outbox", "")).split(",")


def escape(text: str) -> str:
    """Escape a customer's text for mrkdwn, so `<!channel>` and the like stay plain text."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def unescape(text: str) -> str:
    """Undo Slack's escaping of what a staff member typed."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def split_ref(ref: str) -> tuple[str, str]:
    """'<channel>/<ts>' → (channel, ts)."""
    channel, _, ts = ref.partition("/")
    return channel, ts


def _media_kind(mimetype: str | None) -> MediaKind:
    major = (mimetype or "").partition("/")[0]
    return {"image": MediaKind.IMAGE, "audio": MediaKind.AUDIO, "video": MediaKind.VIDEO}.get(
        major, MediaKind.DOCUMENT
    )


def _string(obj: Any, *keys: str) -> str:
    """The string at obj[key][key]…; "" where a step is missing or not what Slack sends."""
    for key in keys:
        obj = obj.get(key) if isinstance(obj, Mapping) else None
    return obj if isinstance(obj, str) else ""


def parse_event(event: Mapping[str, Any]) -> StaffEvent | None:
    """Turn one Slack `message` event into a staff event; None for what the bridge ignores."""
    if event.get("type") != "message" or not storable(event):
        return None
    channel = _string(event, "channel")
    subtype = event.get("subtype")
    if subtype == "message_changed":
        inner = event.get("message")
        if not isinstance(inner, Mapping) or inner.get("bot_id"):
            return None
        if not _string(inner, "ts") or not channel:
            return None
        # Slack lets only a message's author edit it: the author is the editor.
        editor = _string(inner, "user")
        return StaffEdit(
            surface=SLACK,
            ref=StaffMessageRef(f"{channel}/{inner['ts']}"),
            text=unescape(_string(inner, "text")),
            author=StaffUserId(editor) if editor else None,
        )
    if subtype == "message_deleted":
        if not _string(event, "deleted_ts") or not channel:
            return None
        # message_deleted does not say who deleted; the author (or a workspace admin acting
        # for them) is the best Slack tells.
        author = _string(event, "previous_message", "user")
        return StaffDelete(
            surface=SLACK,
            ref=StaffMessageRef(f"{channel}/{event['deleted_ts']}"),
            author=StaffUserId(author) if author else None,
        )
    if subtype not in (None, "file_share", "thread_broadcast") or event.get("bot_id"):
        return None
    ts, thread_ts, user = (_string(event, key) for key in ("ts", "thread_ts", "user"))
    if not ts or not thread_ts or thread_ts == ts or not user or not channel:
        return None  # only replies inside threads speak to customers
    files = event.get("files")
    return StaffMessage(
        surface=SLACK,
        thread=ThreadRef(f"{channel}/{thread_ts}"),
        ref=StaffMessageRef(f"{channel}/{ts}"),
        author=StaffUserId(user),
        text=unescape(_string(event, "text")),
        at=_ts_time(ts),
        attachments=tuple(_attachments(files if isinstance(files, list) else [])),
    )


def _attachments(files: list[Any]) -> Iterator[Attachment]:
    """The shared files of a message; a file object without a download URL is left out."""
    for f in files:
        url = _string(f, "url_private_download") or _string(f, "url_private")
        if url:
            yield Attachment(
                kind=_media_kind(opt_str(f, "mimetype")),
                ref=url,
                filename=opt_str(f, "name"),
                mime_type=opt_str(f, "mimetype"),
                size=int_or_none(f.get("size")),
            )


def _ts_time(ts: str) -> datetime:
    try:
        return datetime.fromtimestamp(float(ts), UTC)
    except (ValueError, OverflowError, OSError):  # not a number, or no time a datetime holds
        return datetime.now(UTC)


def _form_block(problem: str, blocks: Sequence[str]) -> str:
    """The input of a form a problem is about, to show it there."""
    text = problem.lower()
    for words, block in (
        (("regular expression", "pattern", "keyword"), "pattern"),
        (("action", "--do", "forward", "answer", "mail", "channel", "sms", "file"), "actions"),
        (("messenger",), "on"),
        (("window", "time"), "hours"),
        (("days",), "days"),
        (("limit", "every"), "limit"),
        (("priority", "number"), "priority"),
        (("name",), "name"),
    ):
        if block in blocks and any(w in text for w in words):
            return block
    return blocks[0] if blocks else "name"


def card_blocks(card: ContactCard) -> tuple[str, list[dict[str, Any]]]:
    """The thread root: a contact card as Block Kit, with its plain-text fallback."""
    status = "open" if card.status is ConversationStatus.OPEN else "closed"
    handle = f"@{card.username}" if card.username else "—"
    fields = [
        f"*Platform*\n{card.platform}",
        f"*Username*\n{escape(handle)}",
        f"*First contact*\n{card.first_contact:%Y-%m-%d %H:%M} UTC",
        f"*Messages*\n{card.message_count}",
        f"*Status*\n{status}",
        f"*Opt-in*\n{escape(card.opt_in_source or '—')}",
    ]
    if card.opted_out:
        fields.append("*Subscribed*\nno: opted out, nothing is sent until they opt back in")
    if card.assigned_to:
        who = card.assigned_to
        # Only a Slack user id becomes a mention; anything else (a Matrix id) is shown as text.
        shown = f"<@{who}>" if SLACK_USER.fullmatch(who) else escape(who)
        fields.append(f"*Assigned to*\n{shown}")
    if card.blocked:
        what = {"in": "inbound", "out": "outbound", "both": "inbound and outbound"}
        until = (
            f" until {card.blocked_until:%Y-%m-%d %H:%M} UTC" if card.blocked_until else " for good"
        )
        fields.append(f"*Blacklisted*\n{what.get(card.blocked, card.blocked)}{until}")
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": card.display_name[:150] or "?"}},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": f} for f in fields]},
    ]
    address = f"+{card.chat_id}" if card.platform == "whatsapp" else card.chat_id
    context = [f"conversation #{card.conversation_id} · {card.platform} id `{escape(address)}`"]
    if card.account:
        context.append(f"via {card.platform} account `{escape(card.account)}`")
    if card.previous_thread_url:
        context.append(f"<{card.previous_thread_url}|previous conversation>")
    blocks.append(
        {"type": "context", "elements": [{"type": "mrkdwn", "text": " · ".join(context)}]}
    )
    blocks.append(card_actions(card))
    # The fallback `text` is mrkdwn too (notifications show it): escaped like the blocks.
    fallback = escape(f"{card.display_name} ({card.platform}, {handle}) · {status}")
    return fallback, blocks


class SlackSurface:
    """One Slack workspace: threads in a channel, staff replies back to customers."""

    name: ClassVar[SurfaceName] = SLACK

    def __init__(
        self,
        settings: SlackSettings,
        http: aiohttp.ClientSession,
        sink: StaffSink,
        commands: CommandRunner,
    ) -> None:
        if settings.bot_token is None or settings.channel is None:
            msg = "slack.bot_token and slack.channel are required"
            raise ValueError(msg)
        self.settings = settings
        self.channel = settings.channel
        self._http = http
        self._sink = sink
        self._commands = commands
        self._token = settings.bot_token.get_secret_value()
        self._secret = settings.signing_secret.get_secret_value() if settings.signing_secret else ""
        self._api_base = (
            settings.api_base if settings.api_base.endswith("/") else f"{settings.api_base}/"
        )
        self.client = AsyncWebClient(token=self._token, base_url=self._api_base, session=http)
        self.app = AsyncApp(
            client=self.client,
            signing_secret=self._secret or None,
            request_verification_enabled=not settings.socket_mode,
            process_before_response=True,
            logger=logging.getLogger("slack_bolt"),
        )
        self.app.event("message")(self._on_message)
        self.app.command(re.compile(r"^/"))(self._on_slash)
        self.app.action(re.compile(f"^{re.escape(ACTION_PREFIX)}"))(self._on_action)
        self.app.view(FORM_CALLBACK)(self._on_form)
        self._socket: AsyncSocketModeHandler | None = None
        self._names: dict[str, str] = {}
        self._homes: dict[str, Origin] = {}
        self.workspaces = Workspaces(settings.allowed_teams)
        self.bot_user_id: str | None = None
        self.bot_id: str | None = None
        # Thread commands already run: Slack delivers an event again when its answer was slow.
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._late: set[asyncio.Task[None]] = set()
        self._signatures = RecentSignatures()

    # -- lifecycle ------------------------------------------------------------------------

    def routes(self) -> Sequence[web.RouteDef]:
        """The HTTP Events API endpoint (events, slash commands and interactivity)."""
        if self.settings.socket_mode:
            return []
        # Stale or unsigned requests are refused on their headers, before the body is read.
        entry = bodies.guarded(self._http_entry, screen=screen_headers, signed_body=True)
        return [web.post("/slack/events", entry)]

    async def probe(self) -> str:
        """A harmless authenticated call (auth.test) for `run.py check`: who the bot is."""
        try:
            auth = await self.client.auth_test()
        except Exception as exc:
            _raise_for(exc)
        return f"bot @{auth.get('user')} in team {auth.get('team')} ({auth.get('team_id')})"

    async def start(self) -> None:
        """Learn who the bot is (Socket Mode: see start_loop)."""
        try:
            auth = await self.client.auth_test()
        except Exception as exc:
            _raise_for(exc)
        self.bot_user_id = auth.get("user_id")
        self.bot_id = auth.get("bot_id")
        self.workspaces.learn(auth.data if isinstance(auth.data, dict) else {})
        log.info("Slack: connected as %s in team %s", auth.get("user"), auth.get("team_id"))

    async def start_loop(self) -> None:
        """Connect Socket Mode when configured (one process at a time: Slack would hand each
        event to one of the connections, and every process would need the others' state)."""
        if self.settings.app_token is not None and self._socket is None:
            self._socket = AsyncSocketModeHandler(
                self.app, self.settings.app_token.get_secret_value(), web_client=self.client
            )
            await self._socket.connect_async()  # type: ignore[no-untyped-call]
            log.info("Slack: Socket Mode connected")

    async def stop_loop(self) -> None:
        """Disconnect Socket Mode, if connected."""
        if self._socket is not None:
            await self._socket.close_async()  # type: ignore[no-untyped-call]
            self._socket = None

    async def stop(self) -> None:
        """Let slow slash commands answer (briefly), then disconnect Socket Mode."""
        if self._late:
            _, pending = await asyncio.wait(set(self._late), timeout=5)
            for task in pending:
                task.cancel()
            for task in pending:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self.stop_loop()

    # -- inbound --------------------------------------------------------------------------

    def _verify(self, request: web.Request, body: bytes) -> web.StreamResponse | None:
        # The route's screen (routes()) has refused missing and stale headers already.
        ts = request.headers["X-Slack-Request-Timestamp"]
        signature = request.headers["X-Slack-Signature"]
        base = b"v0:" + ts.encode() + b":" + body
        expected = "v0=" + hmac.new(self._secret.encode(), base, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature):
            return web.json_response({"error": "bad Slack signature"}, status=401)
        return None

    async def _http_entry(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        refused = self._verify(request, body)
        if refused is not None:
            return refused
        # Slash commands and interactions (forms) are never sent twice: a repeat is a replay.
        form = request.content_type != "application/json"
        if form and not self._signatures.first_time(request.headers["X-Slack-Signature"]):
            log.warning("Slack: refused a replayed request")
            return web.json_response({"error": "replayed Slack request"}, status=401)
        if request.content_type == "application/json":
            try:
                parsed = json.loads(body)
            except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
                return web.json_response({"error": "malformed JSON"}, status=400)
            if not isinstance(parsed, dict):
                return web.json_response({"error": "malformed event"}, status=400)
        try:
            bolt_request = await to_bolt_request(request)
        except (TypeError, AttributeError, KeyError, IndexError, ValueError, RecursionError):
            # Bolt reads ids (user, team, channel) out of the body in the shapes Slack sends
            # and trips over any other, before a listener runs.
            return web.json_response({"error": "malformed event"}, status=400)
        bolt_response = await self.app.async_dispatch(bolt_request)
        return await to_aiohttp_response(bolt_response)

    async def _on_message(self, event: dict[str, Any], body: dict[str, Any]) -> None:
        parsed = parse_event(event)
        if parsed is None:
            return
        stranger = await self._stranger(parsed.author, *event_origin(body, event))
        parsed = replace(parsed, stranger=stranger)
        if isinstance(parsed, StaffMessage) and THREAD_COMMAND.match(parsed.text):
            await self._thread_command(parsed)
            return
        if isinstance(parsed, StaffMessage):
            parsed = replace(parsed, author_name=await self._name_of(parsed.author))
        # Raising here makes bolt answer 500, so Slack retries; the pipeline deduplicates.
        await self._sink(parsed)

    # -- commands -------------------------------------------------------------------------

    async def _thread_command(self, message: StaffMessage) -> None:
        """Run a `!word` typed in a thread and answer in the thread."""
        if message.ref in self._seen:
            return
        self._seen[message.ref] = None
        while len(self._seen) > SEEN_COMMANDS:
            self._seen.popitem(last=False)
        channel, _ = split_ref(message.thread)
        request = Request(
            surface=SLACK,
            user=message.author,
            user_name=await self._name_of(message.author),
            text=message.text[1:],
            channel=channel,
            thread=message.thread,
            ref=message.ref,
            stranger=message.stranger,
            private_answers=True,  # chat.postEphemeral in the thread
        )
        reply = await self._commands(request)
        await self._answer_in_thread(message.thread, reply, message.author)

    async def _on_slash(
        self,
        ack: Callable[..., Awaitable[Any]],
        command: dict[str, Any],
        respond: Callable[..., Awaitable[Any]],
    ) -> None:
        """A slash command: run it and answer (only the caller sees it unless it is public)."""
        name = str(command.get("command", "")).lstrip("/")
        user = StaffUserId(str(command.get("user_id", "")))
        request = Request(
            surface=SLACK,
            user=user,
            user_name=await self._name_of(user) or command.get("user_name"),
            # Slack escapes &, < and > in the text; mentions arrive as <@U123|name>.
            text=f"{name} {unescape(str(command.get('text', '')))}".strip(),
            channel=command.get("channel_id"),
            stranger=await self._stranger(user, command_origin(command)),
            private_answers=True,  # an ephemeral answer
        )
        trigger = str(command.get("trigger_id") or "") or None
        work = asyncio.ensure_future(self._slash_answer(request, trigger))
        done, _ = await asyncio.wait({work}, timeout=SLASH_ANSWER_WITHIN)
        if work in done:
            await ack(**work.result())
            return
        await ack(response_type="ephemeral", text=f"Working on `/{mrkdwn(name)}`…")
        late = asyncio.ensure_future(self._respond_later(work, respond))
        self._late.add(late)
        late.add_done_callback(self._late.discard)

    async def _slash_answer(self, request: Request, trigger: str | None = None) -> dict[str, Any]:
        reply = await self._commands(request)
        if reply.form is not None and trigger:
            try:
                await self.client.views_open(
                    trigger_id=trigger, view=form_view(reply.form, request.channel)
                )
            except Exception as exc:  # an expired trigger, say: answer with the text instead
                log.info("Slack: the form could not be opened: %r", exc)
            else:
                return {}
        if reply.private:
            reply = await self._file_to_dm(request.user, reply)
        text, blocks = reply_blocks(reply)
        if reply.file is not None and request.channel and not reply.private:
            problem = await self._share_file(request.channel, None, reply)
            if problem:
                text, blocks = reply_blocks(
                    Reply(
                        ok=False,
                        title=reply.title,
                        lines=(*reply.lines, problem),
                        fields=reply.fields,
                    )
                )
        kind = "in_channel" if reply.public else "ephemeral"
        return {"response_type": kind, "text": text, "blocks": blocks}

    async def _respond_later(
        self, work: asyncio.Future[dict[str, Any]], respond: Callable[..., Awaitable[Any]]
    ) -> None:
        try:
            answer = await work
            await respond(replace_original=True, **answer)
        except Exception:
            log.exception("Slack: a slow slash command could not be answered")

    async def _on_action(
        self, ack: Callable[..., Awaitable[Any]], body: dict[str, Any], action: dict[str, Any]
    ) -> None:
        """A button on a contact card: run its thread action as the person who pressed it."""
        await ack()
        channel = _string(body, "container", "channel_id") or _string(body, "channel", "id")
        ts = _string(body, "container", "message_ts") or _string(body, "message", "ts")
        user = StaffUserId(_string(body, "user", "id"))
        if not channel or not ts or not user:
            return
        thread = ThreadRef(f"{channel}/{ts}")
        request = Request(
            surface=SLACK,
            user=user,
            user_name=await self._name_of(user),
            text=_string(action, "value"),
            channel=channel,
            thread=thread,
            ref=StaffMessageRef(f"{channel}/action:{_string(action, 'action_ts')}"),
            stranger=await self._stranger(user, interaction_origin(body)),
            private_answers=True,
        )
        reply = await self._commands(request)
        await self._answer_in_thread(thread, reply, user, private_failure=True)

    async def _on_form(
        self, ack: Callable[..., Awaitable[Any]], body: dict[str, Any], view: dict[str, Any]
    ) -> None:
        """A submitted form: run the command line it stands for; problems stay in the form."""
        try:
            line, channel, blocks = submitted(view)
        except NotOurForm as exc:
            log.warning("Slack view submission ignored: %s", exc)
            await ack()
            return
        user = StaffUserId(str((body.get("user") or {}).get("id", "")))
        request = Request(
            surface=SLACK,
            user=user,
            user_name=await self._name_of(user),
            text=line,
            channel=channel,
            stranger=await self._stranger(user, interaction_origin(body)),
            private_answers=True,  # the outcome is told with chat.postEphemeral
        )
        reply = await self._commands(request)
        if not reply.ok:
            await ack(
                response_action="errors",
                errors={_form_block(reply.text, blocks): reply.text[:1000]},
            )
            return
        await ack()
        if reply.private:
            reply = await self._file_to_dm(user, reply)
        if channel:
            text, reply_view = reply_blocks(reply)
            try:
                await self.client.chat_postEphemeral(
                    channel=channel, user=user, text=text, blocks=reply_view
                )
            except Exception:
                log.info("Slack: could not tell %s the form's outcome in %s", user, channel)

    async def _answer_in_thread(
        self, thread: ThreadRef, reply: Reply, user: str, *, private_failure: bool = False
    ) -> None:
        """Post a command's reply in the thread; a refused button press, and every private
        reply, only to the person who asked (its file in a direct message)."""
        if not (reply.title or reply.lines or reply.fields or reply.file):
            return  # e.g. a note or a template: the command's own message says it all
        channel, thread_ts = split_ref(thread)
        if reply.private:
            private_failure = True
            reply = await self._file_to_dm(user, reply)
        elif reply.file is not None:
            problem = await self._share_file(channel, thread_ts, reply)
            if not problem:
                return
            reply = Reply(ok=False, title=reply.title, lines=(*reply.lines, problem))
        text, blocks = reply_blocks(reply)
        try:
            if private_failure and (reply.private or not reply.ok):
                await self.client.chat_postEphemeral(
                    channel=channel, user=user, thread_ts=thread_ts, text=text, blocks=blocks
                )
            else:
                await self.client.chat_postMessage(
                    channel=channel, thread_ts=thread_ts, text=text, blocks=blocks
                )
        except Exception:
            log.exception("Slack: a command's answer could not be posted in %s", thread)

    async def _upload(self, reply: Reply, channel: str, thread_ts: str | None = None) -> None:
        """Upload a reply's file, its title and lines as the comment (files.uploadV2)."""
        assert reply.file is not None
        comment, _ = reply_blocks(Reply(title=reply.title, lines=reply.lines))
        name = reply.file.filename
        await self.client.files_upload_v2(
            file_uploads=[{"content": reply.file.data, "filename": name, "title": name}],
            channel=channel,
            thread_ts=thread_ts,
            initial_comment=comment,
        )

    async def _share_file(self, channel: str, thread_ts: str | None, reply: Reply) -> str | None:
        """Upload a reply's file into the channel (or thread); the problem in words, if any."""
        assert reply.file is not None
        try:
            await self._upload(reply, channel, thread_ts)
        except Exception as exc:
            log.warning("Slack: could not share %s in %s: %r", reply.file.filename, channel, exc)
            return (
                f"The file {reply.file.filename} could not be posted here; invite the bridge's"
                " app to this channel, or run the command in the bridge's channel."
            )
        return None

    async def _file_to_dm(self, user: str, reply: Reply) -> Reply:
        """A private reply's file, uploaded into the caller's direct messages with the bot
        (conversations.open, scope im:write): an ephemeral answer cannot carry a file, and the
        channel or thread would show it to everyone. The reply without it, saying where it went."""
        if reply.file is None:
            return reply
        try:
            opened = await self.client.conversations_open(users=user)
            dm = str((opened.get("channel") or {}).get("id") or "")
            if not dm:
                raise PermanentError("no_channel", "conversations.open named no channel")
            await self._upload(reply, dm)
        except Exception as exc:
            log.warning("Slack: could not send a private file to %s: %r", user, exc)
            told = (
                "The file could not be sent to you in a direct message, and it is not shared"
                " anywhere else; the bridge's app needs the im:write scope."
            )
            return replace(reply, ok=False, file=None, lines=(*reply.lines, told))
        told = "The file is in your direct messages with the bridge."
        return replace(reply, file=None, lines=(*reply.lines, told))

    async def _name_of(self, user: str) -> str | None:
        await self._look_up(user)
        return self._names.get(user)

    async def _look_up(self, user: str) -> None:
        """users.info, once per user: the name shown for them, and their workspace."""
        if user in self._homes:
            return
        try:
            info = await self.client.users_info(user=user)
        except Exception:
            log.info("Slack: no profile for user %s", user)
            return
        found = info.get("user")
        obj: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
        profile = obj.get("profile") or {}
        name = profile.get("display_name") or profile.get("real_name") or None
        if name:
            self._names[user] = str(name)
        self._homes[user] = user_origin(obj)

    async def _stranger(self, user: str | None, *origins: Origin) -> bool:
        """Whether a request's author is not of a workspace the bridge serves (then they have
        role none): what the request says, and what users.info says of them."""
        home: tuple[Origin, ...] = ()
        if user:
            await self._look_up(user)
            if user in self._homes:
                home = (self._homes[user],)
        stranger = self.workspaces.foreign(*origins, *home)
        if stranger:
            log.info("Slack: %s is not of a workspace the bridge serves: role none", user)
        return stranger

    # -- outbound -------------------------------------------------------------------------

    async def open_thread(
        self, card: ContactCard, channel: str | None, marker: str | None = None
    ) -> ThreadRef:
        """Post the contact card as a new thread root."""
        target = channel or self.channel
        text, blocks = card_blocks(card)
        extra: dict[str, Any] = {}
        if marker:
            extra["metadata"] = {"event_type": MARKER_EVENT, "event_payload": {"outbox": marker}}
        try:
            answer = await self.client.chat_postMessage(
                channel=target, text=text, blocks=blocks, **extra
            )
        except Exception as exc:
            _raise_for(exc)
        return ThreadRef(f"{answer['channel']}/{answer['ts']}")

    async def update_root(self, thread: ThreadRef, card: ContactCard) -> None:
        """Rewrite the contact card in place."""
        channel, ts = split_ref(thread)
        text, blocks = card_blocks(card)
        try:
            await self.client.chat_update(channel=channel, ts=ts, text=text, blocks=blocks)
        except Exception as exc:
            _raise_for(exc)

    post_limit = POST_LIMIT

    def post_size(self, post: MirrorPost) -> int:
        """UTF-16 code units of the text `post` sends (a file's comment names the author)."""
        text = escape(post.text)
        if post.files:
            text = f"*{escape(post.author)}*: {text}"
        return len(text.encode("utf-16-le", "surrogatepass")) // 2

    async def post(self, thread: ThreadRef, post: MirrorPost) -> StaffMessageRef:
        """Post a customer's message(s) into the thread under the customer's name."""
        channel, thread_ts = split_ref(thread)
        try:
            if post.files:
                comment = f"*{escape(post.author)}*: {escape(post.text)}" if post.text else None
                answer = await self.client.files_upload_v2(
                    file_uploads=[
                        {"content": f.data, "filename": f.filename, "title": f.filename}
                        for f in post.files
                    ],
                    channel=channel,
                    thread_ts=thread_ts,
                    initial_comment=comment or f"*{escape(post.author)}* sent a file",
                )
                files = answer.get("files") or [{}]
                return StaffMessageRef(f"{channel}/file:{files[0].get('id', '')}")
            kwargs: dict[str, Any] = {}
            if post.marker:
                kwargs["metadata"] = {
                    "event_type": MARKER_EVENT,
                    "event_payload": {"outbox": post.marker},
                }
            posted = await self._post_message(
                {
                    "channel": channel,
                    "thread_ts": thread_ts,
                    "text": escape(post.text) or " ",
                    "username": post.author[:80] or "customer",
                    "unfurl_links": False,
                    "unfurl_media": False,
                    **kwargs,
                }
            )
        except Exception as exc:
            _raise_for(exc)
        return StaffMessageRef(f"{channel}/{posted['ts']}")

    async def _post_message(self, body: dict[str, Any]) -> Mapping[str, Any]:
        """chat.postMessage on the shared session: the mirror's hot path, without the SDK's
        per-call overhead (about 150 µs of CPU a call here). Errors map like the SDK's."""
        async with self._http.post(
            f"{self._api_base}chat.postMessage",
            json=body,
            headers={"Authorization": f"Bearer {self._token}"},
        ) as response:
            retry_after = response.headers.get("Retry-After")
            if response.status == 429 or response.status >= 500:
                raise _slack_error(response.status, "", retry_after)
            try:
                answer: dict[str, Any] = await response.json(content_type=None)
            except ValueError as exc:
                raise TransientError("Slack answered something that is not JSON") from exc
        if not answer.get("ok"):
            raise _slack_error(
                response.status, str(answer.get("error", "unknown_error")), retry_after
            )
        return answer

    async def edit_post(self, ref: StaffMessageRef, post: MirrorPost) -> None:
        """Show a customer's edit on the mirrored message."""
        channel, ts = split_ref(ref)
        if ts.startswith("file:"):
            return  # a file share: Slack offers no way to change its comment
        text = escape(post.text) + (" _(edited)_" if post.edited else "")
        try:
            await self.client.chat_update(channel=channel, ts=ts, text=text)
        except Exception as exc:
            _raise_for(exc)

    async def mark(self, ref: StaffMessageRef, status: DeliveryStatus) -> None:
        """React to the agent's message with the delivery status."""
        name = REACTIONS.get(status)
        if name is None:
            return
        channel, ts = split_ref(ref)
        try:
            await self.client.reactions_add(channel=channel, timestamp=ts, name=name)
        except SlackApiError as exc:
            if exc.response.get("error") in DONE_ALREADY:
                return
            _raise_for(exc)
        except Exception as exc:
            _raise_for(exc)

    async def notice(self, thread: ThreadRef, text: str) -> StaffMessageRef:
        """A short note from the bridge in the thread."""
        channel, thread_ts = split_ref(thread)
        try:
            answer = await self.client.chat_postMessage(
                channel=channel, thread_ts=thread_ts, text=f":information_source: {escape(text)}"
            )
        except Exception as exc:
            _raise_for(exc)
        return StaffMessageRef(f"{channel}/{answer['ts']}")

    async def tell(
        self,
        thread: ThreadRef,
        user: StaffUserId | None,
        answer_to: StaffMessageRef,
        text: str,
    ) -> None:
        """An ephemeral message in the thread: only `user` sees it (chat.postEphemeral)."""
        if user is None:
            log.info("Slack: nobody to tell in %s: %s", thread, text)
            return
        channel, thread_ts = split_ref(thread)
        try:
            await self.client.chat_postEphemeral(
                channel=channel, user=user, thread_ts=thread_ts, text=escape(text)
            )
        except Exception as exc:
            _raise_for(exc)

    async def announce(
        self, channel: str, text: str, ref: StaffMessageRef | None = None
    ) -> StaffMessageRef:
        """Post (or rewrite) a message of the bridge in a channel."""
        shown = mrkdwn(text)
        try:
            if ref is not None:
                where, ts = split_ref(ref)
                await self.client.chat_update(channel=where, ts=ts, text=shown)
                return ref
            answer = await self.client.chat_postMessage(channel=channel, text=shown)
        except Exception as exc:
            _raise_for(exc)
        return StaffMessageRef(f"{answer['channel']}/{answer['ts']}")

    async def erase_thread(self, thread: ThreadRef, text: str) -> None:
        """Delete what the bridge posted in the thread (files too); the root becomes `text`."""
        channel, root_ts = split_ref(thread)
        kept = 0
        cursor: str | None = None
        try:
            while True:
                try:
                    answer = await self.client.conversations_replies(
                        channel=channel, ts=root_ts, limit=200, cursor=cursor
                    )
                except SlackApiError as exc:
                    if exc.response.get("error") in GONE_ALREADY:
                        return  # the thread itself was deleted
                    raise
                for message in answer.get("messages") or []:
                    if message.get("ts") == root_ts:
                        continue
                    if not self._ours(message):
                        kept += 1
                        continue
                    for file in message.get("files") or []:
                        await self._gone(self.client.files_delete(file=file["id"]))
                    await self._gone(self.client.chat_delete(channel=channel, ts=message["ts"]))
                cursor = (answer.get("response_metadata") or {}).get("next_cursor") or None
                if not cursor:
                    break
            if kept:
                # Slack lets an app delete only its own messages (chat.delete).
                text += (
                    f" {kept} message{'s' if kept != 1 else ''} written by staff stay in this"
                    " thread: their authors or a workspace admin can delete them."
                )
            blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": mrkdwn(text)}}]
            await self._gone(
                self.client.chat_update(
                    channel=channel, ts=root_ts, text=mrkdwn(text), blocks=blocks
                )
            )
        except Exception as exc:
            _raise_for(exc)

    def _ours(self, message: Mapping[str, Any]) -> bool:
        bot = message.get("bot_id")
        return bool(bot and bot == self.bot_id) or message.get("user") == self.bot_user_id

    @staticmethod
    async def _gone(call: Awaitable[Any]) -> None:
        """Await a deleting call; what is gone already is fine."""
        try:
            await call
        except SlackApiError as exc:
            if exc.response.get("error") not in GONE_ALREADY:
                raise

    async def fetch(self, attachment: Attachment) -> FileData:
        """Download a file an agent attached (needs the bot token): from Slack's file host
        only, and without following redirects, so the token goes nowhere else."""
        if not slack_file_host_allowed(attachment.ref, self._api_base):
            log.warning("Slack: a shared file is not on Slack's file host; not downloaded")
            raise PermanentError(
                "file_host",
                "the file is not on Slack's file host (files.slack.com), so the bridge did not"
                " download it with its token; share the file itself, uploaded to Slack",
            )
        try:
            async with self._http.get(
                attachment.ref,
                headers={"Authorization": f"Bearer {self._token}"},
                allow_redirects=False,
            ) as response:
                if response.status >= 500:
                    raise TransientError(f"Slack file download answered {response.status}")
                if response.status != 200:
                    raise PermanentError(
                        str(response.status), "the file could not be downloaded from Slack"
                    )
                data = await response.read()
        except aiohttp.ClientError as exc:
            raise Unreachable(f"Slack file download failed: {exc!r}") from exc
        return FileData(
            kind=attachment.kind,
            filename=attachment.filename or "file",
            data=data,
            mime_type=attachment.mime_type or "application/octet-stream",
        )

    async def permalink(self, thread: ThreadRef) -> str | None:
        """A link people can click to open the thread."""
        channel, ts = split_ref(thread)
        try:
            answer = await self.client.chat_getPermalink(channel=channel, message_ts=ts)
        except Exception:
            log.info("Slack: no permalink for %s", thread)
            return None
        link = answer.get("permalink")
        return str(link) if link else None

    async def find_thread(self, channel: str | None, marker: str) -> ThreadRef | None:
        """Look through the channel's recent history for a root carrying this outbox row."""
        target = channel or self.channel
        cursor: str | None = None
        try:
            for _ in range(5):  # a root posted before a crash is among the newest messages
                answer = await self.client.conversations_history(
                    channel=target, include_all_metadata=True, limit=200, cursor=cursor
                )
                for message in answer.get("messages") or []:
                    if _carries(message, marker):
                        return ThreadRef(f"{target}/{message['ts']}")
                cursor = (answer.get("response_metadata") or {}).get("next_cursor") or None
                if not cursor:
                    break
        except Exception as exc:
            _raise_for(exc)
        return None

    async def find_post(self, thread: ThreadRef, marker: str) -> StaffMessageRef | None:
        """Look through the thread for a post carrying this outbox row in its metadata."""
        channel, thread_ts = split_ref(thread)
        cursor: str | None = None
        try:
            while True:
                answer = await self.client.conversations_replies(
                    channel=channel,
                    ts=thread_ts,
                    include_all_metadata=True,
                    limit=200,
                    cursor=cursor,
                )
                for message in answer.get("messages") or []:
                    if _carries(message, marker):
                        return StaffMessageRef(f"{channel}/{message['ts']}")
                cursor = (answer.get("response_metadata") or {}).get("next_cursor") or None
                if not cursor:
                    return None
        except Exception as exc:
            _raise_for(exc)

    def rate_keys(self, action: str, channel: str | None) -> tuple[str, ...]:
        """Posts count per channel; card edits and reactions count workspace-wide."""
        if action == "update":
            return ("slack:update",)
        if action == "mark":
            return ("slack:reactions",)
        return (f"slack:chan:{channel or self.channel}",)

    def rate_limits(self) -> Mapping[str, RateLimit]:
        """chat.postMessage ~1/s per channel; chat.update and reactions.add are Tier 3."""
        s = self.settings
        return {
            "slack:chan:*": RateLimit(rate=s.rate_per_channel, burst=s.burst_per_channel),
            "slack:update": RateLimit(rate=s.rate_updates, burst=5),
            "slack:reactions": RateLimit(rate=s.rate_reactions, burst=10),
        }


def build(
    settings: Settings,
    http: aiohttp.ClientSession,
    sink: StaffSink,
    commands: CommandRunner,
    state: StateStore,
) -> list[StaffSurface]:
    """The Slack surface, when a bot token is configured."""
    if not settings.slack.enabled:
        return []
    return [SlackSurface(settings.slack, http, sink, commands)]
