"""Matrix as a staff surface: one thread per conversation in a room, on matrix-nio.

The bridge logs in as a bot account and long-polls /sync. Each conversation is a thread
(`m.thread`, with the `m.in_reply_to` fallback for clients without threads) whose root event
is the contact card, edited in place with `m.replace`. Sends carry a transaction id derived
from the outbox row, so a retried send is the same event to the homeserver; the bridge keeps
its own ref table for longer than the homeserver's transaction cache. The sync position is
stored only after the batch's events are stored, so a restart neither skips nor repeats.
Parsing is in matrix_events, HTML in matrix_render, mentions in matrix_mentions, the
homeserver's API in matrix_api, appservice mode in matrix_appservice, the commands in
matrix_commands, the bot's cross-signing in matrix_cross_signing, the rooms it must not
post into (encryption) in matrix_guard, and its end-to-end encryption in matrix_crypto
(encrypted files: matrix_files).
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any, ClassVar
from urllib.parse import quote

import aiohttp
from aiohttp import web
from nio import (
    JoinError,
    LogoutResponse,
    RoomRedactResponse,
    SyncError,
    SyncResponse,
    WhoamiResponse,
)

from bridge.config import MatrixSettings, Settings
from bridge.errors import (
    DeliveryError,
    PermanentError,
    RateLimited,
    TransientError,
)
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
from connectors.matrix_api import Homeserver, checked, raise_response
from connectors.matrix_appservice import SEEN_TXNS, TXN_KEY, Puppets, Transactions
from connectors.matrix_commands import MatrixCommands
from connectors.matrix_cross_signing import cross_sign_when_ready
from connectors.matrix_crypto import crypto_for
from connectors.matrix_events import MATRIX, CommandLine, parse_event, split_ref
from connectors.matrix_guard import RoomGuard, room_encrypted
from connectors.matrix_mentions import in_words, user_ids
from connectors.matrix_reactions import Reactions
from connectors.matrix_render import (
    HTML,
    MARKER,
    card_text,
    carries_marker,
    html_content,
    in_thread,
    inline_html,
    plain_text,
    post_content,
    post_message,
    replacement,
    reply_in_thread,
    txn_id,
)
from connectors.staff import Names, NameUnknown, SeenIds

log = logging.getLogger(__name__)

SYNC_KEY = "next_batch"
REACTIONS = {
    DeliveryStatus.SENT: "✅",
    DeliveryStatus.DELIVERED: "☑️",
    DeliveryStatus.READ: "👀",
    DeliveryStatus.FAILED: "❌",
}
PAGE = 100
# Synapse refuses an event whose JSON passes 65,536 bytes (M_TOO_LARGE, the spec's size limit of
# an event); its ids, hashes and signatures take some hundreds of bytes beside the content.
POST_LIMIT = 60_000
_SIZING_ROOT = "$" + "x" * 43  # as long as the event ids of room versions 4 and later


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
        self.appservice = settings.mode == "appservice"
        self._guard = RoomGuard(state, encryption=settings.encryption, appservice=self.appservice)
        self._hs = Homeserver(
            settings.homeserver,
            settings.user_id,
            settings.device_id,
            settings.password,
            http,
            guard=self._guard,
            encryption=settings.encryption and not self.appservice,
        )
        self.client = self._hs.client
        self._crypto = crypto_for(settings, self._hs, state, self._hs.send)
        self._sink = sink
        self._state = state
        server = settings.user_id.partition(":")[2]
        # Staff are users of the bot's own homeserver and of the servers the admin lists; in a
        # federated room anyone else may write, and has role none.
        self.staff_servers = frozenset({server, *settings.allowed_servers})
        # Appservice mode: customers are `@<prefix><keyed hash>:<server>` (see Puppets.user_id).
        self.puppets = f"@{settings.user_prefix}" if self.appservice else None
        key = settings.puppet_key or settings.as_token
        self._puppets = Puppets(
            self._hs,
            f"@{settings.user_prefix}",
            key.get_secret_value().encode() if key is not None else b"",
            server,
        )
        if self.appservice and settings.as_token is not None:
            self.client.access_token = settings.as_token.get_secret_value()
        elif settings.access_token is not None:
            self.client.access_token = settings.access_token.get_secret_value()
        self._transactions = Transactions(
            settings.hs_token.get_secret_value().encode() if settings.hs_token else b"",
            SeenIds(state, TXN_KEY, SEEN_TXNS),
            self._pushed,
        )
        self._sync_task: asyncio.Task[None] | None = None
        self._signing_task: asyncio.Task[object] | None = None
        self._names = Names(self._profile)
        self._commands = MatrixCommands(
            self._hs, self.user_id, commands, self._names, self.stranger
        )
        self.synced = asyncio.Event()

    # -- lifecycle ------------------------------------------------------------------------

    def routes(self) -> Sequence[web.RouteDef]:
        """Appservice mode: the endpoints the homeserver pushes to; bot mode reads /sync."""
        if not self.appservice:
            return []
        return self._transactions.routes(self.settings.listen_path.rstrip("/"))

    async def start(self) -> None:
        """Log in, check who the bot is, join the rooms (syncing: see start_loop)."""
        who = await self._login()
        if who.user_id != self.user_id:
            msg = f"the access token belongs to {who.user_id}, not to matrix.user_id {self.user_id}"
            raise RuntimeError(msg)
        for room in self.rooms:
            # Posting into a room the bot is not in fails and retries until someone invites it.
            await self._join(room)
        log.info(
            "Matrix: %s on %s (%s mode), rooms %s",
            self.user_id,
            self._hs.url,
            self.settings.mode,
            self.rooms,
        )
        if self.appservice:
            self.synced.set()

    async def _login(self) -> WhoamiResponse:
        """Log in (with encryption on, as the bot's one device) and say who the bot is."""
        if self._crypto is not None:
            return await self._crypto.login(self.settings.access_token is not None)
        await self._hs.ready()
        return await checked(self.client.whoami(), WhoamiResponse)

    async def start_loop(self) -> None:
        """Bot mode: /sync (one process at a time, or every event would arrive twice)."""
        if not self.appservice and self._sync_task is None:
            if self._crypto is not None:
                # The crypto state is used by this process only (the one that syncs).
                await self._crypto.start(self._filter())
            self._sync_task = asyncio.create_task(self._sync_forever(), name="matrix-sync")
            if self.settings.encryption:
                # In the process that syncs, which alone uses the bot's keys; never fails the start.
                self._signing_task = asyncio.create_task(
                    cross_sign_when_ready(
                        self._hs, self._state, self.user_id, self.settings.password, self.synced
                    ),
                    name="matrix-cross-signing",
                )

    async def probe_rooms(self) -> tuple[str, list[tuple[str, bool, str]]]:
        """For `run.py check`: who the bot is (whoami; with only a password, logged in and out
        again), and whether it may post into each room as set up (encryption)."""
        fresh = not self.client.access_token
        await self._hs.ready()
        try:
            who = await checked(self.client.whoami(), WhoamiResponse)
            if who.user_id != self.user_id:
                raise PermanentError(
                    "M_FORBIDDEN", f"the token belongs to {who.user_id}, not to {self.user_id}"
                )
            rooms = [(room, *await self._guard.report(self._hs, room)) for room in self.rooms]
        finally:
            if fresh:
                await checked(self.client.logout(), LogoutResponse)
        return f"{who.user_id} on {self._hs.url} ({self.settings.mode} mode)", rooms

    async def stop(self) -> None:
        """Stop syncing (the shared HTTP session is closed by the app)."""
        await self.stop_loop()

    async def stop_loop(self) -> None:
        """Stop syncing, if syncing."""
        if self._signing_task is not None:
            self._signing_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._signing_task
            self._signing_task = None
        if self._sync_task is not None:
            self._sync_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sync_task
            self._sync_task = None
        if self._crypto is not None:
            await self._crypto.save()

    # -- inbound --------------------------------------------------------------------------

    def _filter(self) -> dict[str, Any]:
        return {
            "presence": {"not_types": ["*"]},
            "account_data": {"not_types": ["*"]},
            "room": {
                "rooms": [room for room in self.rooms if not self._guard.refused(room)],
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
                    raise_response(response)
                assert isinstance(response, SyncResponse)
                if since is not None:
                    # The very first sync only learns the position: history is not news.
                    await self._take(response, since)
                if self._crypto is not None:  # its keys stored before the position moves
                    await self._crypto.after_sync(self._handle)
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
            # nio has decrypted what it could (an event still encrypted stays a MegolmEvent).
            events = [e.source for e in joined.timeline.events]
            if joined.timeline.limited and joined.timeline.prev_batch:
                events = await self._gap(room, joined.timeline.prev_batch, since) + events
            for event in events:
                clear = self._crypto.decrypted(room, event) if self._crypto else event
                if clear is not None:
                    await self._handle(room, clear)

    async def _gap(self, room: str, start: str, since: str) -> list[dict[str, Any]]:
        """Events between the last sync and a `limited` timeline: none may be missed."""
        found: list[dict[str, Any]] = []
        token: str | None = start
        while token:
            page = await self._hs.api(
                "GET",
                f"/_matrix/client/v3/rooms/{quote(room)}/messages",
                params={"dir": "b", "from": token, "to": since, "limit": str(PAGE)},
            )
            chunk = page.get("chunk") or []
            found.extend(chunk)
            token = page.get("end") if chunk else None
        return list(reversed(found))

    async def _pushed(self, event: Mapping[str, Any]) -> None:
        """An event of an appservice transaction: an invitation for the bot, or the timeline."""
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

    async def _join(self, room: str) -> None:
        answer = await self.client.join(room)
        if isinstance(answer, JoinError):
            log.error("Matrix: %s cannot join %s (%s)", self.user_id, room, answer.message)
            return
        # In the room: is it end-to-end encrypted? (Refused, when that does not fit the setup.)
        await self._guard.found(room, await room_encrypted(self._hs, room))

    # -- events -----------------------------------------------------------------------------

    async def _handle(self, room: str, event: Mapping[str, Any]) -> None:
        if await self._guard.keeps_out(room, event):
            return
        parsed = parse_event(room, event, self.user_id, self.puppets)
        if parsed is None:
            return
        if isinstance(parsed, CommandLine):
            await self._commands.run(parsed)
            return
        if isinstance(parsed, StaffMessage):
            parsed = replace(parsed, author_name=await self._names.of(parsed.author))
        if isinstance(parsed, StaffMessage | StaffEdit):
            parsed = replace(parsed, text=await self._in_words(parsed.text))
        if self.stranger(parsed.author):
            parsed = replace(parsed, stranger=True)
        # Raising here leaves the sync position where it was: the batch comes again and the
        # pipeline de-duplicates on the event ids.
        await self._sink(parsed)

    async def _in_words(self, text: str) -> str:
        """A staff text with the members it names by bare id shown by name, without `@room`."""
        names = {user: await self._names.of(user) for user in user_ids(text)}
        return in_words(text, names)

    def stranger(self, user: str | None) -> bool:
        """Whether a user is of a homeserver whose users are not staff (role none)."""
        return user is not None and user.partition(":")[2] not in self.staff_servers

    async def _profile(self, user: str) -> str | None:
        """A user's display name, as their profile tells it."""
        try:
            profile = await self._hs.api(
                "GET", f"/_matrix/client/v3/profile/{quote(user)}/displayname"
            )
        except DeliveryError:
            raise NameUnknown(user) from None
        name = profile.get("displayname")
        if isinstance(name, str) and name:
            return name
        raise NameUnknown(user)  # asked again next time, as a name may be set meanwhile

    # -- outbound -------------------------------------------------------------------------

    async def _send(self, room: str, kind: str, content: dict[str, Any], txn: str) -> str:
        return await self._hs.send(room, kind, content, txn)

    async def open_thread(
        self, card: ContactCard, channel: str | None, marker: str | None = None
    ) -> ThreadRef:
        """Post the contact card as a new thread root in the room."""
        room = channel or self.room
        plain, formatted = card_text(card)
        content = html_content("m.text", plain, formatted)
        if marker:
            content[MARKER] = marker
        event = await self._send(room, "m.room.message", content, txn_id("open", marker))
        return ThreadRef(f"{room}/{event}")

    async def find_thread(self, channel: str | None, marker: str) -> ThreadRef | None:
        """Look through the room's recent history for a root carrying this outbox row."""
        room = channel or self.room
        token: str | None = None
        for _ in range(5):  # a root posted before a crash is among the newest events
            params = {"dir": "b", "limit": str(PAGE)}
            if token:
                params["from"] = token
            page = await self._hs.api(
                "GET", f"/_matrix/client/v3/rooms/{quote(room)}/messages", params=params
            )
            for event in page.get("chunk") or []:
                mine = event.get("sender") == self.user_id
                if mine and carries_marker(self._clear(room, event), marker):
                    return ThreadRef(f"{room}/{event['event_id']}")
            token = page.get("end")
            if not token or not page.get("chunk"):
                break
        return None

    async def update_root(self, thread: ThreadRef, card: ContactCard) -> None:
        """Rewrite the contact card in place (`m.replace`)."""
        room, root = split_ref(thread)
        plain, formatted = card_text(card)
        content = replacement(html_content("m.text", plain, formatted), root)
        await self._send(room, "m.room.message", content, txn_id())

    post_limit = POST_LIMIT

    def post_size(self, post: MirrorPost) -> int:
        """Bytes of the JSON of the text event `post` sends, as the homeserver measures it."""
        as_customer = bool(self.appservice and post.customer)
        content = post_content(_SIZING_ROOT, post, as_customer=as_customer)
        return len(json.dumps(content, ensure_ascii=False).encode("utf-8", "surrogatepass"))

    async def post(self, thread: ThreadRef, post: MirrorPost) -> StaffMessageRef:
        """Post a customer's message(s) into the thread under the customer's name (as the
        customer's own Matrix user in appservice mode)."""
        room, root = split_ref(thread)
        if self.appservice and post.customer:
            return await self._puppets.post(room, root, post)
        first: str | None = None
        if post.text or not post.files:
            content = post_content(root, post, as_customer=False)
            first = await self._send(room, "m.room.message", content, txn_id("post", post.marker))
        for index, file in enumerate(post.files):
            event = await self._hs.send_file(
                room,
                root,
                file,
                post.marker,
                txn_id("file", post.marker, index) if post.marker else txn_id(),
                caption=None if post.text else f"{post.author} sent {file.filename}",
            )
            first = first or event
        assert first is not None
        return StaffMessageRef(f"{room}/{first}")

    async def edit_post(self, ref: StaffMessageRef, post: MirrorPost) -> None:
        """Show a customer's edit on the mirrored message (`m.replace`)."""
        room, event = split_ref(ref)
        sender = self.user_id
        if self.appservice:
            # An edit counts only when its sender sent the original (a customer's own user).
            original = await self._hs.api(
                "GET", f"/_matrix/client/v3/rooms/{quote(room)}/event/{quote(event)}"
            )
            sender = str(original.get("sender", self.user_id))
        text = post.text + (" (edited)" if post.edited else "")
        new = post_message(replace(post, text=text), as_customer=sender != self.user_id)
        content = replacement(new, event)
        if sender != self.user_id:
            await self._puppets.send_as(sender, room, content, txn_id())
        else:
            await self._send(room, "m.room.message", content, txn_id())

    async def mark(self, ref: StaffMessageRef, status: DeliveryStatus) -> None:
        """React to the agent's event with the delivery status (`m.annotation`)."""
        key = REACTIONS.get(status)
        if key is None:
            return
        room, event = split_ref(ref)
        content = {"m.relates_to": {"rel_type": "m.annotation", "event_id": event, "key": key}}
        try:
            await self._send(room, "m.reaction", content, txn_id("mark", event, status.value))
        except PermanentError as exc:
            # Synapse refuses the same reaction from the same user twice: it is there already.
            if "same reaction" not in str(exc).lower():
                raise

    async def react(self, thread: ThreadRef, ref: StaffMessageRef, change: ReactionChange) -> None:
        """A customer's reactions as `m.annotation`s on the mirrored event."""
        reactions = Reactions(
            self.user_id,
            appservice=self.appservice,
            hs=self._hs,
            puppets=self._puppets,
            send=self._send,
            notice=self._notice,
            find_post=self.find_post,
            relations=self._relations,
            marks=frozenset(REACTIONS.values()),
        )
        await reactions.react(thread, ref, change)

    async def notice(self, thread: ThreadRef, text: str) -> StaffMessageRef:
        """A short notice from the bridge in the thread."""
        return await self._notice(thread, text, None, txn_id())

    async def _notice(
        self, thread: ThreadRef, text: str, marker: str | None, txn: str
    ) -> StaffMessageRef:
        """A notice in the thread, carrying the outbox row it was sent for, if any."""
        room, root = split_ref(thread)
        content: dict[str, Any] = {
            "msgtype": "m.notice",
            "m.mentions": {},
            "body": f"ℹ️ {text}",
            "m.relates_to": in_thread(root),
        }
        if marker:
            content[MARKER] = marker
        event = await self._send(room, "m.room.message", content, txn)
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
            "body": f"{who}: {plain_text(text)}",
            "format": HTML,
            "formatted_body": f"{link}: {inline_html(text)}",
            "m.mentions": {"user_ids": [user]} if user else {},
            # A thread reply that quotes their event (MSC3440: a reply inside a thread).
            "m.relates_to": reply_in_thread(root, event),
        }
        await self._send(room, "m.room.message", content, txn_id("tell", event))

    async def announce(
        self, channel: str, text: str, ref: StaffMessageRef | None = None
    ) -> StaffMessageRef:
        """Post (or rewrite, with `m.replace`) a notice of the bridge in a room."""
        new = {"msgtype": "m.notice", "body": text, "m.mentions": {}}
        if ref is not None:
            room, event = split_ref(ref)
            content = replacement(new, event)
            await self._send(room, "m.room.message", content, txn_id())
            return ref
        event = await self._send(channel, "m.room.message", new, txn_id())
        return StaffMessageRef(f"{channel}/{event}")

    async def fetch(self, attachment: Attachment) -> FileData:
        """Download a file an agent attached (authenticated media, spec 1.11)."""
        return await self._hs.download(attachment)

    async def permalink(self, thread: ThreadRef) -> str | None:
        """A matrix.to link to the thread's root."""
        room, root = split_ref(thread)
        return f"https://matrix.to/#/{quote(room)}/{quote(root)}"

    async def _relations(self, room: str, root: str, only: str = "") -> list[dict[str, Any]]:
        """Every event related to the root: thread replies, edits, reactions (`only` narrows
        it to one relation type and event type: "/m.annotation/m.reaction")."""
        found: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            params = {"limit": str(PAGE)}
            if token:
                params["from"] = token
            page = await self._hs.api(
                "GET",
                f"/_matrix/client/v1/rooms/{quote(room)}/relations/{quote(root)}{only}",
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
            if self._sent_by_bridge(event) and carries_marker(self._clear(room, event), marker):
                return StaffMessageRef(f"{room}/{event['event_id']}")
        return None

    def _clear(self, room: str, event: dict[str, Any]) -> dict[str, Any]:
        """An event of the room's history as it reads (the bot can read its own posts)."""
        return self._crypto.peek(room, event) if self._crypto is not None else event

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
            if self.puppets and sender.startswith(self.puppets):
                customers.add(sender)  # the customer's own user redacts its events
            try:
                await self._redact(room, str(event["event_id"]), sender)
            except (PermanentError, TransientError) as exc:
                if isinstance(exc, RateLimited):
                    raise
                kept += 1
                log.info("Matrix: %s not redacted: %s", event.get("event_id"), exc)
        await self._puppets.erase(room, customers)
        if self._crypto is not None:  # a new room key from here on; no waiting events kept
            await self._crypto.forget(room, root)
        if kept:
            text += (
                f" {kept} event{'s' if kept != 1 else ''} in this thread could not be redacted"
                " by the bridge: a room moderator can remove them."
            )
        content = {
            "msgtype": "m.notice",
            "body": text,
            "m.mentions": {},
            "m.relates_to": in_thread(root),
        }
        await self._send(room, "m.room.message", content, txn_id("tombstone", root))

    async def _redact(self, room: str, event: str, sender: str) -> None:
        """Redact one event: a customer's as the customer's user, any other as the bot."""
        if self.puppets and sender.startswith(self.puppets):
            await self._puppets.redact(room, event, sender)
            return
        await self._hs.ready()
        await checked(
            self.client.room_redact(
                room, event, reason="data erasure", tx_id=txn_id("erase", event)
            ),
            RoomRedactResponse,
        )

    def rate_keys(self, action: str, channel: str | None) -> tuple[str, ...]:
        """Everything the bot sends counts against the homeserver's limit for its account."""
        return ("matrix:send",)

    def rate_limits(self) -> Mapping[str, RateLimit]:
        """`[matrix] rate` and `burst` (events per second for the bot account)."""
        return {"matrix:send": RateLimit(rate=self.settings.rate, burst=self.settings.burst)}


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
