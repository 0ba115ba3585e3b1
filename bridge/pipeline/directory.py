"""Who is where: the connectors, staff surfaces and publishers, the channel of each platform
account's threads, the threads already opened, and the outbox rows that show something in a
thread."""

from __future__ import annotations

from dataclasses import replace

from bridge.config import Settings
from bridge.errors import PermanentError, RateLimited
from bridge.jobs import StaffCardJob, StaffMarkJob, StaffNoticeJob, StaffOpenJob, StaffWindowJob
from bridge.metrics import Metrics
from bridge.protocols import Connector, StaffSurface
from bridge.publish import Publisher
from bridge.types import (
    AccountId,
    ContactCard,
    ConversationId,
    DeliveryStatus,
    ExternalMessageId,
    MessageId,
    OutboundMessage,
    Platform,
    RateLimit,
    StaffMessageRef,
    SurfaceName,
    ThreadRef,
)
from storage import Database, NewJob, Tx


class Directory:
    """The connectors, surfaces and publishers a pipeline reaches, and the threads it knows."""

    def __init__(self, settings: Settings, db: Database, metrics: Metrics) -> None:
        self.settings = settings
        self.db = db
        self.metrics = metrics
        self.connectors: dict[tuple[Platform, AccountId], Connector] = {}
        self.surfaces: dict[SurfaceName, StaffSurface] = {}
        self.publishers: dict[str, Publisher] = {}
        self._threads: dict[tuple[ConversationId, SurfaceName], ThreadRef] = {}

    def add_connector(self, connector: Connector) -> None:
        """Route a platform account's messages through this pipeline."""
        self.connectors[(connector.platform, connector.account)] = connector

    def add_surface(self, surface: StaffSurface) -> None:
        """Mirror every conversation into this staff surface."""
        self.surfaces[surface.name] = surface

    def add_publisher(self, publisher: Publisher) -> None:
        """Let broadcasts be posted publicly on this publisher's target."""
        self.publishers[publisher.target] = publisher

    def rate_limits(self) -> dict[str, RateLimit]:
        """Every rate limit the connectors and surfaces declare."""
        limits: dict[str, RateLimit] = {}
        for c in self.connectors.values():
            limits.update(c.rate_limits())
        for s in self.surfaces.values():
            limits.update(s.rate_limits())
        return limits

    def route(self, surface: SurfaceName, platform: str, account: str) -> str | None:
        """The channel or room of a platform account's threads on a surface; None: the default."""
        if surface == "matrix":
            return self.settings.matrix_room(platform, account)
        return self.settings.slack_channel(platform, account)

    def surface(self, name: str) -> StaffSurface:
        """A surface by name, or a permanent error when it is no longer configured."""
        surface = self.surfaces.get(SurfaceName(name))
        if surface is None:
            raise PermanentError("no_surface", f"the {name} surface is not configured")
        return surface

    def connector(self, platform: str, account: str) -> Connector:
        """A connector by platform account, or a permanent error when it is not configured."""
        connector = self.connectors.get((Platform(platform), AccountId(account)))
        if connector is None:
            raise PermanentError(
                "no_connector", f"the bridge has no {platform} connector for account {account}"
            )
        return connector

    async def deliver(self, connector: Connector, message: OutboundMessage) -> ExternalMessageId:
        """Send a message through a connector, counting what the platform answered."""
        try:
            external = await connector.send(message)
        except RateLimited:
            self.metrics.rate_limited(connector.platform)
            raise
        except PermanentError:
            self.metrics.delivery_failed(connector.platform, "send")
            raise
        self.metrics.sent(connector.platform)
        return external

    async def thread(self, conv_id: ConversationId, surface: SurfaceName) -> ThreadRef | None:
        """A conversation's thread on a surface (remembered once known)."""
        key = (conv_id, surface)
        found = self._threads.get(key)
        if found is None:
            found = await self.db.read_tx(lambda tx: tx.thread(conv_id, surface))
            if found is not None:
                self._threads[key] = found
        return found

    def remember_thread(
        self, conv_id: ConversationId, surface: SurfaceName, thread: ThreadRef
    ) -> None:
        """Keep a just-opened thread in memory for the posts that follow it."""
        self._threads[(conv_id, surface)] = thread

    async def card(self, conv_id: ConversationId, surface: StaffSurface) -> ContactCard | None:
        """The current contact card, with a link to the previous conversation's thread."""

        def read(tx: Tx) -> tuple[ContactCard | None, ThreadRef | None]:
            conversation = tx.conversation(conv_id)
            previous = None
            if conversation is not None and conversation.previous_id is not None:
                previous = tx.thread(conversation.previous_id, surface.name)
            return tx.card(conv_id), previous

        card, previous = await self.db.read_tx(read)
        if card is None:
            return None
        if previous is not None:
            card = replace(card, previous_thread_url=await surface.permalink(previous))
        return card

    # -- rows that show something in a thread ----------------------------------------------

    def open_job(
        self, conv_id: int, surface: SurfaceName, channel: str | None, rate_keys: tuple[str, ...]
    ) -> NewJob:
        """Open a conversation's thread in `channel` (None: the surface's default)."""
        opening = StaffOpenJob(
            conversation=ConversationId(conv_id), surface=surface, channel=channel
        )
        return opening.new_job(rate_keys)

    def card_job(self, conv_id: int, surface: SurfaceName, window: int | None) -> NewJob:
        """A card refresh; with a window, one per conversation per `card_refresh_s` seconds."""
        refresh = StaffCardJob(conversation=ConversationId(conv_id), surface=surface)
        return refresh.new_job(
            self.surfaces[surface].rate_keys("update", None),
            window=window,
            every=self.settings.bridge.card_refresh_s,
        )

    def mark_job(
        self,
        conv_id: int,
        surface: SurfaceName,
        ref: StaffMessageRef,
        status: DeliveryStatus,
        message_id: MessageId,
    ) -> NewJob:
        """Show a delivery status on the staff message it belongs to."""
        mark = StaffMarkJob(surface=surface, ref=ref, status=status)
        return mark.new_job(conv_id, message_id, self.surfaces[surface].rate_keys("mark", None))

    def notice_job(self, conv_id: int, surface: SurfaceName, key: str, text: str) -> NewJob:
        """A notice from the bridge in a conversation's thread; one per `key` and surface."""
        notice = StaffNoticeJob(conversation=ConversationId(conv_id), surface=surface, text=text)
        return notice.new_job(key, self.surfaces[surface].rate_keys("post", None))

    def window_job(
        self,
        conv_id: int,
        surface: SurfaceName,
        platform: str,
        account: str,
        message_id: MessageId,
        reason: str,
    ) -> NewJob:
        """A notice that a reply was not sent, with the templates that could be sent instead."""
        notice = StaffWindowJob(
            conversation=ConversationId(conv_id),
            surface=surface,
            platform=Platform(platform),
            account=AccountId(account),
            reason=reason,
        )
        return notice.new_job(message_id, self.surfaces[surface].rate_keys("post", None))
