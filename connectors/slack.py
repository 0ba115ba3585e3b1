"""Slack as a staff surface: one thread per conversation, on slack-bolt and slack-sdk.

Events reach the bridge over the HTTP Events API (`POST /slack/events`, signature-checked) or
Socket Mode (an app-level token); both are handled by the same bolt app, which answers Slack
only after the event is stored (`process_before_response`), so nothing is acknowledged and lost.
Parsing is in slack_events, Block Kit in slack_blocks, the Web API's answers in slack_api and the
commands in slack_commands.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import replace
from typing import Any, ClassVar

import aiohttp
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bridge import bodies
from bridge.config import Settings, SlackSettings
from bridge.protocols import CommandRunner, StaffSink, StaffSurface, StateStore
from bridge.types import (
    Attachment,
    ContactCard,
    DeliveryStatus,
    FileData,
    MirrorPost,
    RateLimit,
    ReactionChange,
    StaffEdit,
    StaffMessage,
    StaffMessageRef,
    StaffUserId,
    SurfaceName,
    ThreadRef,
)
from connectors.slack_api import (
    DONE_ALREADY,
    GONE_ALREADY,
    POST_LIMIT,
    carries_marker,
    fetch_file,
    marker_metadata,
    post_message,
    raise_for,
)
from connectors.slack_blocks import (
    ACTION_PREFIX,
    FORM_CALLBACK,
    card_blocks,
    escape,
    escape_quoting,
    mrkdwn,
)
from connectors.slack_commands import SEEN_COMMANDS, SEEN_KEY, SlackCommands
from connectors.slack_events import (
    SLACK,
    message_words,
    parse_event,
    raw_message,
    raw_text,
    split_ref,
)
from connectors.slack_guard import SignedRequests
from connectors.slack_guard import screen as screen_headers
from connectors.slack_reactions import reaction_line, slack_name
from connectors.slack_rich import rich_block, rich_mentions
from connectors.slack_teams import Origin, Workspaces, event_origin, user_origin
from connectors.slack_text import command_text, mentioned_users, unnamed_channels
from connectors.staff import Names, NameUnknown, SeenIds, thread_command

log = logging.getLogger(__name__)

REACTIONS = {
    DeliveryStatus.SENT: "white_check_mark",
    DeliveryStatus.DELIVERED: "ballot_box_with_check",
    DeliveryStatus.READ: "eyes",
    DeliveryStatus.FAILED: "x",
}


class SlackSurface:
    """One Slack workspace: threads in a channel, staff replies back to customers."""

    name: ClassVar[SurfaceName] = SLACK

    def __init__(
        self,
        settings: SlackSettings,
        http: aiohttp.ClientSession,
        sink: StaffSink,
        commands: CommandRunner,
        state: StateStore,
    ) -> None:
        if settings.bot_token is None or settings.channel is None:
            msg = "slack.bot_token and slack.channel are required"
            raise ValueError(msg)
        self.settings = settings
        self.channel = settings.channel
        self._http = http
        self._sink = sink
        self._token = settings.bot_token.get_secret_value()
        secret = settings.signing_secret.get_secret_value() if settings.signing_secret else ""
        self._api_base = (
            settings.api_base if settings.api_base.endswith("/") else f"{settings.api_base}/"
        )
        self.client = AsyncWebClient(token=self._token, base_url=self._api_base, session=http)
        self.app = AsyncApp(
            client=self.client,
            signing_secret=secret or None,
            request_verification_enabled=not settings.socket_mode,
            process_before_response=True,
            logger=logging.getLogger("slack_bolt"),
        )
        self._names = Names(self._profile)
        self._channel_names = Names(self._channel_name)
        self._homes: dict[str, Origin] = {}
        self.workspaces = Workspaces(settings.allowed_teams)
        self.commands = SlackCommands(
            self.client,
            commands,
            self._names,
            self._stranger,
            SeenIds(state, SEEN_KEY, SEEN_COMMANDS),
        )
        self.app.event("message")(self._on_message)
        self.app.command(re.compile(r"^/"))(self.commands.on_slash)
        self.app.action(re.compile(f"^{re.escape(ACTION_PREFIX)}"))(self.commands.on_action)
        self.app.view(FORM_CALLBACK)(self.commands.on_form)
        self._socket: AsyncSocketModeHandler | None = None
        self.bot_user_id: str | None = None
        self.bot_id: str | None = None
        self._signed = SignedRequests(secret)

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
            raise_for(exc)
        return f"bot @{auth.get('user')} in team {auth.get('team')} ({auth.get('team_id')})"

    async def start(self) -> None:
        """Learn who the bot is (Socket Mode: see start_loop)."""
        try:
            auth = await self.client.auth_test()
        except Exception as exc:
            raise_for(exc)
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
        await self.commands.finish()
        await self.stop_loop()

    # -- inbound --------------------------------------------------------------------------

    async def _http_entry(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        refused = self._signed.refusal(request, body)
        if refused is not None:
            return refused
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
        text = raw_text(event)
        if isinstance(parsed, StaffMessage) and (line := thread_command(command_text(text))):
            await self.commands.in_thread(parsed, line)
            return
        if isinstance(parsed, StaffMessage | StaffEdit):
            parsed = replace(parsed, text=await self._words(raw_message(event), text))
        if isinstance(parsed, StaffMessage):
            parsed = replace(parsed, author_name=await self._names.of(parsed.author))
        # Raising here makes bolt answer 500, so Slack retries; the pipeline deduplicates.
        await self._sink(parsed)

    async def _words(self, message: Mapping[str, Any], text: str) -> str:
        """What the customer reads of a message, with the display names of the staff members
        and the names of the channels it mentions."""
        block = rich_block(message)
        users, channels = rich_mentions(block) if block is not None else ([], [])
        users = list(dict.fromkeys([*mentioned_users(text), *users]))
        channels = list(dict.fromkeys([*unnamed_channels(text), *channels]))
        names = {user: name for user in users if (name := await self._names.of(user))}
        rooms = {c: name for c in channels if (name := await self._channel_names.of(c))}
        return message_words(message, names, rooms)

    async def _channel_name(self, channel: str) -> str | None:
        """conversations.info, once per channel: the name a mention of it shows."""
        try:
            info = await self.client.conversations_info(channel=channel)
        except Exception:
            log.info("Slack: no name for channel %s", channel)
            raise NameUnknown(channel) from None
        found = info.get("channel")
        name = found.get("name") if isinstance(found, Mapping) else None
        return name if isinstance(name, str) and name else None

    async def _profile(self, user: str) -> str | None:
        """users.info, once per user: the name shown for them, and their workspace."""
        try:
            info = await self.client.users_info(user=user)
        except Exception:
            log.info("Slack: no profile for user %s", user)
            raise NameUnknown(user) from None
        found = info.get("user")
        obj: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
        profile = obj.get("profile") or {}
        name = profile.get("display_name") or profile.get("real_name") or None
        self._homes[user] = user_origin(obj)
        return str(name) if name else None

    async def _stranger(self, user: str | None, *origins: Origin) -> bool:
        """Whether a request's author is not of a workspace the bridge serves (then they have
        role none): what the request says, and what users.info says of them."""
        home: tuple[Origin, ...] = ()
        if user:
            await self._names.of(user)
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
            extra["metadata"] = marker_metadata(marker)
        try:
            answer = await self.client.chat_postMessage(
                channel=target, text=text, blocks=blocks, **extra
            )
        except Exception as exc:
            raise_for(exc)
        return ThreadRef(f"{answer['channel']}/{answer['ts']}")

    async def update_root(self, thread: ThreadRef, card: ContactCard) -> None:
        """Rewrite the contact card in place."""
        channel, ts = split_ref(thread)
        text, blocks = card_blocks(card)
        try:
            await self.client.chat_update(channel=channel, ts=ts, text=text, blocks=blocks)
        except Exception as exc:
            raise_for(exc)

    post_limit = POST_LIMIT

    def post_size(self, post: MirrorPost) -> int:
        """UTF-16 code units of the text `post` sends (a file's comment names the author)."""
        text = _quoted(post)
        if post.files:
            text = f"*{escape(post.author)}*: {text}"
        return len(text.encode("utf-16-le", "surrogatepass")) // 2

    async def post(self, thread: ThreadRef, post: MirrorPost) -> StaffMessageRef:
        """Post a customer's message(s) into the thread under the customer's name."""
        channel, thread_ts = split_ref(thread)
        try:
            if post.files:
                comment = f"*{escape(post.author)}*: {_quoted(post)}" if post.text else None
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
                kwargs["metadata"] = marker_metadata(post.marker)
            posted = await post_message(
                self._http,
                self._api_base,
                self._token,
                {
                    "channel": channel,
                    "thread_ts": thread_ts,
                    "text": _quoted(post) or " ",
                    "username": post.author[:80] or "customer",
                    "unfurl_links": False,
                    "unfurl_media": False,
                    **kwargs,
                },
            )
        except Exception as exc:
            raise_for(exc)
        return StaffMessageRef(f"{channel}/{posted['ts']}")

    async def edit_post(self, ref: StaffMessageRef, post: MirrorPost) -> None:
        """Show a customer's edit on the mirrored message."""
        channel, ts = split_ref(ref)
        if ts.startswith("file:"):
            return  # a file share: Slack offers no way to change its comment
        # A reply's quote stays above it (the edit rewrites the whole text).
        text = _quoted(post) + (" _(edited)_" if post.edited else "")
        try:
            await self.client.chat_update(channel=channel, ts=ts, text=text)
        except Exception as exc:
            raise_for(exc)

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
            raise_for(exc)
        except Exception as exc:
            raise_for(exc)

    async def react(self, thread: ThreadRef, ref: StaffMessageRef, change: ReactionChange) -> None:
        """A customer's reactions as the bot's reactions on the message (reactions.add and
        reactions.remove); an emoji Slack has no name for, or one the bridge's delivery marks
        use, as a line in the thread under the customer's name."""
        channel, ts = split_ref(ref)
        told: dict[str, list[str]] = {"add": [], "remove": []}
        for verb, emojis in (("remove", change.removed), ("add", change.added)):
            for unicode in emojis:
                name = slack_name(unicode)
                shown = (
                    name is not None
                    and name not in REACTIONS.values()
                    and not ts.startswith("file:")  # a file share: no message to react on
                    and await self._reaction(verb, channel, ts, name)
                )
                if not shown:
                    told[verb].append(unicode)
        if told["add"] or told["remove"]:
            if change.again and change.marker and await self.find_post(thread, change.marker):
                return  # the line went out before a crash: not twice
            text = reaction_line(change, told["add"], told["remove"])
            thread_channel, thread_ts = split_ref(thread)
            extra: dict[str, Any] = {}
            if change.marker:
                extra["metadata"] = marker_metadata(change.marker)
            try:
                await post_message(
                    self._http,
                    self._api_base,
                    self._token,
                    {
                        "channel": thread_channel,
                        "thread_ts": thread_ts,
                        "text": f"_{text}_",
                        "username": change.author[:80] or "customer",
                        "unfurl_links": False,
                        "unfurl_media": False,
                        **extra,
                    },
                )
            except Exception as exc:
                raise_for(exc)

    async def _reaction(self, verb: str, channel: str, ts: str, name: str) -> bool:
        """Add or remove one reaction of the bot; False when Slack knows no emoji by `name`."""
        call = self.client.reactions_add if verb == "add" else self.client.reactions_remove
        try:
            await call(channel=channel, timestamp=ts, name=name)
        except SlackApiError as exc:
            error = exc.response.get("error")
            if error in DONE_ALREADY or error == "no_reaction":
                return True
            if error == "invalid_name":
                return False
            raise_for(exc)
        except Exception as exc:
            raise_for(exc)
        return True

    async def notice(self, thread: ThreadRef, text: str) -> StaffMessageRef:
        """A short note from the bridge in the thread."""
        channel, thread_ts = split_ref(thread)
        try:
            answer = await self.client.chat_postMessage(
                channel=channel, thread_ts=thread_ts, text=f":information_source: {escape(text)}"
            )
        except Exception as exc:
            raise_for(exc)
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
            raise_for(exc)

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
            raise_for(exc)
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
            raise_for(exc)

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
        """Download a file an agent attached, from Slack's file host only."""
        return await fetch_file(self._http, self._api_base, self._token, attachment)

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
                    if carries_marker(message, marker):
                        return ThreadRef(f"{target}/{message['ts']}")
                cursor = (answer.get("response_metadata") or {}).get("next_cursor") or None
                if not cursor:
                    break
        except Exception as exc:
            raise_for(exc)
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
                    if carries_marker(message, marker):
                        return StaffMessageRef(f"{channel}/{message['ts']}")
                cursor = (answer.get("response_metadata") or {}).get("next_cursor") or None
                if not cursor:
                    return None
        except Exception as exc:
            raise_for(exc)

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


def _quoted(post: MirrorPost) -> str:
    """A post's text for mrkdwn, escaped, below a quote of what it answers (a reply)."""
    text = escape_quoting(post.text)
    if not post.quote:
        return text
    quote = "\n".join(f">{escape(line)}" for line in post.quote.splitlines() or [""])
    return f"{quote}\n{text}"


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
    return [SlackSurface(settings.slack, http, sink, commands, state)]
