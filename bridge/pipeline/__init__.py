"""The one place that decides, as a package.

Inbound: platform events → deduplicate → contact → conversation → message → outbox rows
(open the thread, mirror the message, refresh the card), all in the writer's transaction.
Staff: a message in a thread → note, thread action, or a reply queued for the customer.
`Pipeline` is the façade the app, the commands and the REST API hold: it builds the parts
(directory, policy, chatbot, status, inbound, staff) and the outbox handlers (bridge.handlers),
giving each what it needs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import aiohttp

from bridge.config import Settings
from bridge.jobs import JobKind
from bridge.metrics import Metrics
from bridge.outbox import JobHandler
from bridge.pipeline.chatbot import Chatbot, RuleBook
from bridge.pipeline.directory import Directory
from bridge.pipeline.inbound import Inbound
from bridge.pipeline.policy import Policy
from bridge.pipeline.staff import Queued, Staff
from bridge.pipeline.status import Status
from bridge.protocols import Connector, StaffSurface
from bridge.publish import Publisher
from bridge.security import OutboundGuard, guard_from
from bridge.types import (
    AccountId,
    ContactCard,
    ContactId,
    ConversationId,
    ExternalMessageId,
    InboundEvent,
    OutboundMessage,
    Platform,
    RateLimit,
    Role,
    StaffEvent,
    StaffMessageRef,
    SurfaceName,
    TemplateCall,
    ThreadRef,
)
from bridge.webhooks import WebhookEvents
from storage import BatchKind, Database, Tx, Writer

__all__ = ["Pipeline", "Queued", "utcnow"]

UNKNOWN_THREAD_WAIT = 2.0


def utcnow() -> datetime:
    """The current time, aware, in UTC."""
    return datetime.now(UTC)


class Pipeline:
    """Decides what happens to every inbound and staff event, and carries out outbox rows."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        writer: Writer,
        *,
        clock: Callable[[], datetime] = utcnow,
        http: aiohttp.ClientSession | None = None,
        metrics: Metrics | None = None,
        outbound: OutboundGuard | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.writer = writer
        self.clock = clock
        self.rulebook = RuleBook(settings)
        self._http = http
        # Requests made on someone's behalf (rules, bots, webhooks) go through the guard.
        self.outbound = outbound or guard_from(
            settings.security.allow_private, settings.bridge.listen, settings.bridge.public_url
        )
        self.metrics = metrics if metrics is not None else Metrics()

        def late_clock() -> datetime:
            # Late-bound: tests replace the pipeline's clock after it is built.
            return self.clock()

        self.webhooks = WebhookEvents(late_clock)
        self.directory = Directory(settings, db, self.metrics)
        self.policy = Policy(self.directory, self.webhooks, late_clock)
        self.chatbot = Chatbot(
            self.directory, self.policy, self.webhooks, self.rulebook, late_clock
        )
        self.status = Status(self.directory, self.policy, self.webhooks, self.metrics)
        self.inbound = Inbound(
            settings,
            self.directory,
            self.chatbot,
            self.policy,
            self.status,
            self.webhooks,
            self.metrics,
            late_clock,
            remember=db.dialect == "sqlite",
        )
        self.staff = Staff(
            settings,
            self.directory,
            self.policy,
            self.webhooks,
            writer,
            late_clock,
            self.inbound.forget_contact,
        )
        self._inbound: BatchKind[Sequence[InboundEvent], None] = BatchKind(
            "pipeline.inbound", self.inbound.store
        )
        self._staff: BatchKind[StaffEvent, bool] = BatchKind("pipeline.staff", self.staff.store)

    # -- wiring ---------------------------------------------------------------------------

    @property
    def http(self) -> aiohttp.ClientSession | None:
        """The shared HTTP client session (None for a pipeline built without one)."""
        return self._http

    @property
    def connectors(self) -> dict[tuple[Platform, AccountId], Connector]:
        """The connectors, by platform account."""
        return self.directory.connectors

    @property
    def surfaces(self) -> dict[SurfaceName, StaffSurface]:
        """The staff surfaces, by name."""
        return self.directory.surfaces

    @property
    def publishers(self) -> dict[str, Publisher]:
        """The publishers broadcasts can be posted on, by target."""
        return self.directory.publishers

    def add_connector(self, connector: Connector) -> None:
        """Route a platform account's messages through this pipeline."""
        self.directory.add_connector(connector)

    def add_surface(self, surface: StaffSurface) -> None:
        """Mirror every conversation into this staff surface."""
        self.directory.add_surface(surface)

    def add_publisher(self, publisher: Publisher) -> None:
        """Let broadcasts be posted publicly on this publisher's target."""
        self.directory.add_publisher(publisher)

    def rate_limits(self) -> dict[str, RateLimit]:
        """Every rate limit the connectors and surfaces declare."""
        return self.directory.rate_limits()

    def handlers(self) -> dict[str, JobHandler]:
        """The outbox handler of each row kind."""
        # The handlers are built on the parts of this package (and import them): imported here,
        # at wiring time, so that either package can be imported first.
        from bridge.handlers import rule_forwards, webhooks
        from bridge.handlers.broadcasts import BroadcastHandlers
        from bridge.handlers.customer_sends import (
            CustomerChange,
            CustomerSend,
            Tombstone,
            WindowNotice,
        )
        from bridge.handlers.reactions import ShowReaction
        from bridge.handlers.staff_posts import (
            CardRefresh,
            Mirror,
            MirrorEdit,
            Notice,
            OpenThread,
            StatusMark,
            Tell,
        )

        directory = self.directory
        outbound = self.outbound if self._http else None
        return {
            JobKind.STAFF_OPEN: OpenThread(directory),
            JobKind.STAFF_POST: Mirror(directory),
            JobKind.STAFF_CARD: CardRefresh(directory),
            JobKind.STAFF_EDIT: MirrorEdit(directory),
            JobKind.STAFF_MARK: StatusMark(directory),
            JobKind.STAFF_NOTICE: Notice(directory),
            JobKind.STAFF_TELL: Tell(directory),
            JobKind.STAFF_WINDOW: WindowNotice(directory),
            JobKind.STAFF_TOMBSTONE: Tombstone(directory),
            JobKind.STAFF_REACT: ShowReaction(directory),
            JobKind.CUSTOMER_SEND: CustomerSend(directory, self.webhooks, self.status, self.policy),
            JobKind.CUSTOMER_EDIT: CustomerChange(directory, delete=False),
            JobKind.CUSTOMER_DELETE: CustomerChange(directory, delete=True),
            **rule_forwards.handlers(directory, self.chatbot, outbound),
            **BroadcastHandlers(self).handlers(),
            **webhooks.handlers(self.db, outbound),
        }

    # -- entry points ---------------------------------------------------------------------

    async def on_inbound(self, events: Sequence[InboundEvent]) -> None:
        """Store platform events durably (the connectors' sink); returns once committed."""
        if events:
            await self.writer.submit(self._inbound, events)

    async def on_staff(self, event: StaffEvent) -> None:
        """Store what staff did in a thread durably (the surfaces' sink)."""
        # A reply can arrive before the bridge has recorded which conversation a just-opened
        # thread belongs to (the root is visible in Slack a moment before that commit): look
        # again for up to UNKNOWN_THREAD_WAIT seconds, within Slack's 3-second ack window.
        deadline = time.monotonic() + UNKNOWN_THREAD_WAIT
        while not await self.writer.submit(self._staff, event):
            if time.monotonic() > deadline:
                return  # a thread the bridge did not open
            await asyncio.sleep(0.1)

    # -- what commands and the REST API ask of the pipeline -------------------------------

    async def close(self, conversation_id: ConversationId) -> bool:
        """Close a conversation (the customer's next message opens a new one); False if closed."""
        return await self.staff.close(conversation_id)

    async def staff_send(
        self,
        conversation: ConversationId,
        *,
        surface: SurfaceName,
        ref: StaffMessageRef,
        author: str,
        text: str,
        role: Role,
        template: TemplateCall | None = None,
        note: bool = False,
    ) -> bool:
        """Send text or a template from a thread command of someone with `role`."""
        return await self.staff.staff_send(
            conversation,
            surface=surface,
            ref=ref,
            author=author,
            text=text,
            role=role,
            template=template,
            note=note,
        )

    def send_to_contact(
        self,
        tx: Tx,
        contact_id: ContactId,
        *,
        origin: SurfaceName,
        author: str,
        text: str,
        template: TemplateCall | None = None,
    ) -> Queued | None:
        """Queue text or a template for a contact from outside a thread (the REST API)."""
        return self.staff.send_to_contact(
            tx, contact_id, origin=origin, author=author, text=text, template=template
        )

    async def set_open(self, conversation: ConversationId, is_open: bool, who: str) -> str:
        """Close or reopen a conversation; returns what happened, in words."""
        return await self.staff.set_open(conversation, is_open, who)

    async def refresh_card(self, conversation: ConversationId) -> None:
        """Redraw the conversation's contact card on every surface (after a staff change)."""
        await self.staff.refresh_card(conversation)

    async def unblocked(self, contact_id: ContactId) -> None:
        """After an inbound block is lifted: open the thread its messages were kept out of."""
        await self.staff.unblocked(contact_id)

    async def notify(
        self, conversation: ConversationId, text: str, *, key: str, skip: SurfaceName | None = None
    ) -> None:
        """Post a notice from the bridge into the conversation's threads (but `skip`'s)."""
        await self.staff.notify(conversation, text, key=key, skip=skip)

    def keywords_changed(self) -> None:
        """Read consent words and channel keywords again (a command changed them)."""
        self.chatbot.keywords_changed()

    def rules_changed(self) -> None:
        """Build the chatbot rules again (a command changed them)."""
        self.chatbot.rules_changed()

    def forget_contact(self, contact_id: ContactId) -> None:
        """Drop what the inbound path remembers of a contact (its conversation closed, say)."""
        self.inbound.forget_contact(contact_id)

    # -- the directory, for handlers kept outside the package ------------------------------

    def route(self, surface: SurfaceName, platform: str, account: str) -> str | None:
        """The channel or room of a platform account's threads on a surface; None: the default."""
        return self.directory.route(surface, platform, account)

    def surface(self, name: str) -> StaffSurface:
        """A surface by name, or a permanent error when it is no longer configured."""
        return self.directory.surface(name)

    def connector(self, platform: str, account: str) -> Connector:
        """A connector by platform account, or a permanent error when it is not configured."""
        return self.directory.connector(platform, account)

    async def deliver(self, connector: Connector, message: OutboundMessage) -> ExternalMessageId:
        """Send a message through a connector, counting what the platform answered."""
        return await self.directory.deliver(connector, message)

    async def thread(self, conv_id: ConversationId, surface: SurfaceName) -> ThreadRef | None:
        """A conversation's thread on a surface (remembered once known)."""
        return await self.directory.thread(conv_id, surface)

    def remember_thread(
        self, conv_id: ConversationId, surface: SurfaceName, thread: ThreadRef
    ) -> None:
        """Keep a just-opened thread in memory for the posts that follow it."""
        self.directory.remember_thread(conv_id, surface, thread)

    async def card(self, conv_id: ConversationId, surface: StaffSurface) -> ContactCard | None:
        """The current contact card, with a link to the previous conversation's thread."""
        return await self.directory.card(conv_id, surface)
