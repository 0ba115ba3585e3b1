"""Domain operations shared by the chat commands and the REST API, and their container.

`Services` holds what an operation works with (settings, the database, the pipeline,
connectors), built once by the app. The modules beside it (blacklist, channels, contacts, …)
take plain arguments, raise `bridge.errors` (NotFound, Conflict, Invalid, Refused) and return
records; commands turn their results into replies, the API into JSON.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

from bridge.config import Settings
from bridge.pipeline import Pipeline
from bridge.protocols import Connector
from bridge.types import ConversationId, Role, StaffUserId, SurfaceName, ThreadRef
from storage import Database, Tx, Writer

T = TypeVar("T")


class Services:
    """The bridge's parts a domain operation may use; built by the app, handed to every command
    and to the REST API."""

    def __init__(
        self, settings: Settings, db: Database, writer: Writer, pipeline: Pipeline
    ) -> None:
        self.settings = settings
        self.db = db
        self.writer = writer
        self.pipeline = pipeline

    def clock(self) -> datetime:
        """Now, by the pipeline's clock (tests move it to let blacklist entries expire)."""
        return self.pipeline.clock()

    @property
    def connectors(self) -> list[Connector]:
        """Every configured platform account."""
        return list(self.pipeline.connectors.values())

    def connector(self, platform: str, account: str | None = None) -> Connector | None:
        """A platform account's connector; without an account, the platform's first."""
        for connector in self.connectors:
            if connector.platform == platform and account in (None, connector.account):
                return connector
        return None

    async def read(self, fn: Callable[[Tx], T]) -> T:
        """Run `fn` with the statements (`tx.subscriptions`, ...) on a read connection."""
        return await self.db.read_tx(fn)

    async def write(self, fn: Callable[[Tx], T]) -> T:
        """Run `fn` in the writer's transaction (serialised with the webhooks' writes)."""
        return await self.writer.call(fn)

    async def role(
        self, surface: SurfaceName, user: StaffUserId, *, stranger: bool = False
    ) -> Role:
        """A staff member's role: none for strangers, admins from settings, then the roles
        table, then the default."""
        bridge = self.settings.bridge
        return await self.read(
            lambda tx: tx.roles.effective_role(
                surface,
                user,
                admins=bridge.admins,
                default=bridge.default_role,
                stranger=stranger,
            )
        )

    async def conversation_of(
        self, surface: SurfaceName, thread: ThreadRef | None
    ) -> ConversationId | None:
        """The conversation of a surface's thread, if a thread is given and is one."""
        if thread is None:
            return None
        return await self.read(lambda tx: tx.conversation_by_thread(surface, thread))
