"""Every statement the bridge runs, batched: one round trip per step for a whole batch.

`Tx` wraps one synchronous connection and returns records, never ORM rows. Its methods are plain
functions on purpose: a whole transaction runs in one call (`Database.run_write` /
`run_read`), instead of one event-loop round trip per statement.

The statements live by subject (contacts_store, conversations_store, messages_store, outbox_store,
kv_store) and the records they return in storage.records; `Tx` joins them on one connection.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bridge.types import ConversationId, MessageId, StaffMessageRef, SurfaceName, ThreadRef
from storage.api_keys import ApiKeys
from storage.broadcasts_store import Broadcasts
from storage.catalog import Templates, TextBlocks
from storage.channels_extra import ChannelMembers
from storage.contacts_admin import ContactAdmin
from storage.contacts_store import ContactQueries
from storage.conversations_store import ConversationQueries
from storage.history import History
from storage.kv_store import ValueQueries
from storage.messages_store import MessageQueries
from storage.monitoring import Monitoring
from storage.outbox_store import OutboxQueries
from storage.records import (
    ContactRecord,
    ConversationRecord,
    Job,
    MessageRecord,
    MessageStatusWrite,
    NewJob,
    early_key,
    quote_key,
    reaction_key,
    upsert_insert,
)
from storage.retention import Retention
from storage.roles import Roles
from storage.rules_store import RuleStore
from storage.shortlinks import LinkStore
from storage.stats import Stats
from storage.subscriptions import Subscriptions
from storage.webhooks_store import WebhookStore


@dataclass(slots=True)
class Completion:
    """Everything a finished outbox job changes, written in one transaction with its `done`."""

    job_ids: list[int]
    threads: list[tuple[ConversationId, SurfaceName, ThreadRef]] = field(default_factory=list)
    refs: list[tuple[SurfaceName, StaffMessageRef, str, MessageId]] = field(default_factory=list)
    statuses: list[MessageStatusWrite] = field(default_factory=list)
    jobs: list[NewJob] = field(default_factory=list)
    failed_reason: str | None = None
    # More writes for the same transaction, with the jobs they produce (e.g. applying a status
    # that arrived before the send's answer did).
    also: list[Callable[[Tx], Sequence[NewJob]]] = field(default_factory=list)
    # Items for writers that take many at once, (writer, item): each writer is called once per
    # transaction with the items of every completion in it (one executemany, not one each).
    rows: list[tuple[Callable[[Tx, list[Any]], None], Any]] = field(default_factory=list)


class Tx(ContactQueries, ConversationQueries, MessageQueries, OutboxQueries, ValueQueries):
    """Batched statements on one connection."""

    def apply(self, completions: Sequence[Completion], now: float) -> int:
        """Write finished jobs and what they produced; return how many new rows were queued."""
        done = [i for c in completions if c.failed_reason is None for i in c.job_ids]
        self.finish(done, now)
        for c in completions:
            if c.failed_reason is not None:
                self.finish(c.job_ids, now, c.failed_reason)
        self.add_threads([t for c in completions for t in c.threads])
        self.add_refs([r for c in completions for r in c.refs])
        self.write_statuses([s for c in completions for s in c.statuses])
        grouped: dict[Callable[[Tx, list[Any]], None], list[Any]] = {}
        for c in completions:
            for writer, item in c.rows:
                grouped.setdefault(writer, []).append(item)
        for writer, items in grouped.items():
            writer(self, items)
        jobs = [j for c in completions for j in c.jobs]
        for c in completions:
            for write in c.also:
                jobs.extend(write(self))
        return self.enqueue(jobs, now)

    # -- repositories

    @property
    def api_keys(self) -> ApiKeys:
        """REST API keys and the answers kept per idempotency key."""
        return ApiKeys(self.conn)

    @property
    def broadcasts(self) -> Broadcasts:
        """Broadcasts, their audience in batches, per-contact outcomes and publishing."""
        return Broadcasts(self.conn)

    @property
    def contact_admin(self) -> ContactAdmin:
        """Contacts as staff manage them: finding, the card, adding, export and erasure."""
        return ContactAdmin(self.conn)

    @property
    def history(self) -> History:
        """Conversations and messages as they were stored, page by page."""
        return History(self.conn)

    @property
    def links(self) -> LinkStore:
        """Short links and their clicks."""
        return LinkStore(self.conn)

    @property
    def members(self) -> ChannelMembers:
        """Channel member pages, and the contacts an address names."""
        return ChannelMembers(self.conn)

    @property
    def monitoring(self) -> Monitoring:
        """Figures for monitoring: the outbox backlog."""
        return Monitoring(self.conn)

    @property
    def retention(self) -> Retention:
        """Emptying what is kept longer than needed."""
        return Retention(self.conn)

    @property
    def roles(self) -> Roles:
        """The roles given to staff members."""
        return Roles(self.conn)

    @property
    def rules(self) -> RuleStore:
        """Chatbot rules, their change log, firings and answer-files."""
        return RuleStore(self.conn)

    @property
    def stats(self) -> Stats:
        """Figures for `/stats`, the REST API and the stats page."""
        return Stats(self.conn)

    @property
    def subscriptions(self) -> Subscriptions:
        """Channels, memberships, consent words and the blacklist."""
        return Subscriptions(self.conn)

    @property
    def templates(self) -> Templates:
        """WhatsApp message templates."""
        return Templates(self.conn)

    @property
    def textblocks(self) -> TextBlocks:
        """Saved replies with placeholders."""
        return TextBlocks(self.conn)

    @property
    def webhooks(self) -> WebhookStore:
        """Outgoing webhook subscriptions and their waiting deliveries."""
        return WebhookStore(self.conn)


__all__ = [
    "Completion",
    "early_key",
    "quote_key",
    "reaction_key",
    "ContactRecord",
    "ConversationRecord",
    "Job",
    "MessageRecord",
    "MessageStatusWrite",
    "NewJob",
    "Tx",
    "upsert_insert",
]
