"""What a connector and a staff surface promise, and the callbacks they are given."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import ClassVar, Protocol, runtime_checkable

from aiohttp import web

from bridge.staffio import Reply, Request
from bridge.types import (
    AccountId,
    Attachment,
    ChatId,
    ContactCard,
    DeliveryStatus,
    ExternalMessageId,
    FileData,
    InboundEvent,
    MirrorPost,
    OutboundMessage,
    Platform,
    RateLimit,
    ReactionChange,
    StaffEvent,
    StaffMessageRef,
    StaffUserId,
    SurfaceName,
    Template,
    ThreadRef,
)

CommandRunner = Callable[[Request], Awaitable[Reply]]
"""Carries out a command a staff member typed and answers it (never raises)."""

InboundSink = Callable[[Sequence[InboundEvent]], Awaitable[None]]
"""Stores a batch of inbound events durably; returns once they are committed, raises if not."""

StaffSink = Callable[[StaffEvent], Awaitable[None]]
"""Stores what staff did in a thread durably; returns once it is committed."""


class StateStore(Protocol):
    """Small durable values a part keeps across restarts (e.g. a sync position)."""

    async def get(self, key: str) -> str | None:
        """The stored value, or None."""
        ...

    async def put(self, key: str, value: str) -> None:
        """Store a value durably before returning."""
        ...


@runtime_checkable
class SecretStateStore(Protocol):
    """A part's end-to-end encryption state (one blob per name), in the bridge's database."""

    async def load_secret(self, name: str) -> bytes | None:
        """The stored blob, or None."""
        ...

    async def save_secret(self, name: str, data: bytes) -> None:
        """Store a blob durably before returning."""
        ...


class MediaHost(Protocol):
    """Serves files at short-lived signed URLs of the bridge, for platforms that fetch by URL."""

    async def publish(self, file: FileData, *, ttl: float = 3600.0) -> str:
        """Store the file; return an absolute URL that serves it until `ttl` seconds pass."""
        ...


class Connector(Protocol):
    """A customer-side platform account: webhooks in, messages out."""

    platform: ClassVar[Platform]
    account: AccountId

    def routes(self) -> Sequence[web.RouteDef]:
        """The webhook endpoints this connector serves."""
        ...

    async def start(self) -> None:
        """Get ready to send and receive: learn who the bot is, register webhooks."""
        ...

    async def start_loop(self) -> None:
        """Start what must run in one process at a time (long polling), if anything."""
        ...

    async def stop_loop(self) -> None:
        """Stop what start_loop started."""
        ...

    async def stop(self) -> None:
        """Stop background work; the shared HTTP session is closed by the app."""
        ...

    async def send(self, msg: OutboundMessage) -> ExternalMessageId:
        """Send one message (text and/or files); return the platform's id of the (last) message."""
        ...

    async def edit(self, chat_id: ChatId, external_id: ExternalMessageId, text: str) -> None:
        """Change the text of a message sent earlier."""
        ...

    async def delete(self, chat_id: ChatId, external_id: ExternalMessageId) -> None:
        """Delete a message sent earlier."""
        ...

    async def fetch(self, attachment: Attachment) -> FileData:
        """Download a file the customer sent."""
        ...

    def rate_keys(self, chat_id: ChatId) -> tuple[str, ...]:
        """The outbox rate-limit keys a send to this chat consumes: the account's key first,
        the recipient's last (a RateLimited error holds back one or the other)."""
        ...

    def rate_limits(self) -> Mapping[str, RateLimit]:
        """Limits per rate key; a key's last segment may be `*` to match any value."""
        ...

    def window_refusal(self, last_inbound_at: datetime | None, now: datetime) -> str | None:
        """Why a free-text reply may not be sent now (the platform's service window), or None."""
        ...

    async def templates(self) -> Sequence[Template]:
        """The message templates the platform approved for this account (empty if none)."""
        ...

    def chat_link(self, payload: str | None = None) -> str | None:
        """A click-to-chat link to this account carrying `payload`, if the platform has one."""
        ...


@runtime_checkable
class CostsToSend(Protocol):
    """A connector whose platform bills by something staff cannot see (SMS segments)."""

    def send_cost(self, msg: OutboundMessage) -> str | None:
        """Words for staff on what sending `msg` costs, or None when it is nothing unusual."""
        ...


class StaffSurface(Protocol):
    """Where staff work: Slack or Matrix. One thread per conversation."""

    name: ClassVar[SurfaceName]

    def routes(self) -> Sequence[web.RouteDef]:
        """The HTTP endpoints this surface serves (events, commands, interactivity)."""
        ...

    async def start(self) -> None:
        """Learn who the bot is; get ready to post."""
        ...

    async def start_loop(self) -> None:
        """Start what must run in one process at a time (Socket Mode, /sync), if anything."""
        ...

    async def stop_loop(self) -> None:
        """Stop what start_loop started."""
        ...

    async def stop(self) -> None:
        """Disconnect."""
        ...

    async def open_thread(
        self, card: ContactCard, channel: str | None, marker: str | None = None
    ) -> ThreadRef:
        """Post the contact card as a new thread root; `channel` None means the default."""
        ...

    async def find_thread(self, channel: str | None, marker: str) -> ThreadRef | None:
        """A thread root the bridge posted with this marker, if one exists."""
        ...

    async def update_root(self, thread: ThreadRef, card: ContactCard) -> None:
        """Rewrite the thread's root contact card in place."""
        ...

    async def post(self, thread: ThreadRef, post: MirrorPost) -> StaffMessageRef:
        """Post a message into the thread; TooLarge when the platform refuses its size."""
        ...

    @property
    def post_limit(self) -> int:
        """The largest `post_size` a post may have, with a margin below the platform's limit."""
        ...

    def post_size(self, post: MirrorPost) -> int:
        """How much of the platform's size limit `post` takes, in the platform's own unit."""
        ...

    async def edit_post(self, ref: StaffMessageRef, post: MirrorPost) -> None:
        """Replace a message the bridge posted earlier."""
        ...

    async def mark(self, ref: StaffMessageRef, status: DeliveryStatus) -> None:
        """Show a delivery status on a staff member's message."""
        ...

    async def react(self, thread: ThreadRef, ref: StaffMessageRef, change: ReactionChange) -> None:
        """Show a customer's changed reactions on a message in the thread: as the surface's
        own reactions where it has them for the emoji, else as a short line in the thread.
        Adding what is there already, or taking away what is not, is no error."""
        ...

    async def notice(self, thread: ThreadRef, text: str) -> StaffMessageRef:
        """Post a short message from the bridge itself into the thread."""
        ...

    async def tell(
        self,
        thread: ThreadRef,
        user: StaffUserId | None,
        answer_to: StaffMessageRef,
        text: str,
    ) -> None:
        """Tell one staff member, in a thread, something meant for them alone (why the bridge
        refused what they did), answering their message where the surface can."""
        ...

    async def fetch(self, attachment: Attachment) -> FileData:
        """Download a file a staff member attached."""
        ...

    async def permalink(self, thread: ThreadRef) -> str | None:
        """A link to the thread for people, if the surface has one."""
        ...

    async def announce(
        self, channel: str, text: str, ref: StaffMessageRef | None = None
    ) -> StaffMessageRef:
        """Post a message from the bridge in a channel or room (not in a thread), or rewrite
        the one `ref` names (a broadcast's progress)."""
        ...

    async def erase_thread(self, thread: ThreadRef, text: str) -> None:
        """Data erasure: delete the bridge's own posts in the thread, and turn its root into a
        tombstone that says `text`."""
        ...

    async def find_post(self, thread: ThreadRef, marker: str) -> StaffMessageRef | None:
        """A post the bridge made with this marker, if one exists (to avoid posting twice)."""
        ...

    def rate_keys(self, action: str, channel: str | None) -> tuple[str, ...]:
        """The rate-limit keys an action (post, update, mark) in a channel consumes."""
        ...

    def rate_limits(self) -> Mapping[str, RateLimit]:
        """Limits per rate key; a key's last segment may be `*` to match any value."""
        ...
