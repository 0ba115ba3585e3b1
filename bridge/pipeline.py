"""The one place that decides.

Inbound: platform events → deduplicate → contact → conversation → message → outbox rows
(open the thread, mirror the message, refresh the card), all in the writer's transaction.
Staff: a message in a thread → note, thread action, or a reply queued for the customer.
The outbox handlers at the bottom carry the rows out through connectors and surfaces.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import aiohttp
from sqlalchemy.engine import Connection

from bridge import automation
from bridge.automation import Arrival, RuleBook, apply_rules
from bridge.broadcasts import BroadcastHandlers
from bridge.config import Settings
from bridge.errors import (
    NotAllowed,
    OptedOut,
    PermanentError,
    RateLimited,
    TooLarge,
    TransientError,
    WindowClosed,
)
from bridge.mirror import post_in_pieces
from bridge.outbox import JobHandler
from bridge.protocols import Connector, StaffSurface
from bridge.publish import Publisher
from bridge.security import OutboundGuard, guard_from
from bridge.staff_refusal import Refusal, refusal_jobs, staff_role
from bridge.types import (
    AccountId,
    Attachment,
    ChatId,
    Consent,
    ContactCard,
    ContactId,
    ConversationId,
    ConversationStatus,
    DeliveryStatus,
    ExternalMessageId,
    FileData,
    InboundEdit,
    InboundEvent,
    InboundMessage,
    MediaKind,
    MessageId,
    MirrorPost,
    OutboundMessage,
    Platform,
    RateLimit,
    Role,
    StaffDelete,
    StaffEdit,
    StaffEvent,
    StaffMessage,
    StaffMessageRef,
    StaffUserId,
    StatusUpdate,
    SurfaceName,
    TemplateCall,
    ThreadRef,
    WatermarkUpdate,
)
from bridge.web.metrics import Metrics
from bridge.webhooks import SCOPE_CHANNELS, SCOPE_CONTACT, WebhookEvents
from storage import (
    BatchKind,
    Completion,
    ContactRecord,
    Database,
    Job,
    MessageRecord,
    MessageStatusWrite,
    NewJob,
    Tx,
    Writer,
    broadcasts_store,
    early_key,
    rules_store,
    subscriptions,
)

log = logging.getLogger(__name__)

UNKNOWN_THREAD_WAIT = 2.0
# Consent words and keywords are whole messages; longer texts are never looked up.
KEYWORD_MAX = 64
KEYWORD_CACHE_S = 5.0


def utcnow() -> datetime:
    """The current time, aware, in UTC."""
    return datetime.now(UTC)


def _attachment_dict(a: Attachment) -> dict[str, Any]:
    return {k: v for k, v in asdict(a).items() if v is not None}


def _attachment(d: Mapping[str, Any]) -> Attachment:
    return Attachment(
        kind=MediaKind(d["kind"]),
        ref=str(d["ref"]),
        filename=d.get("filename"),
        mime_type=d.get("mime_type"),
        size=d.get("size"),
    )


# A customer's message this soon after a broadcast reached them counts as a reply to it.
REPLY_TO_BROADCAST_WITHIN = timedelta(days=7)


def mirror_text(text: str, attachments: Sequence[Mapping[str, Any]]) -> str:
    """What a customer message shows in the thread when it has no text of its own."""
    if text or not attachments:
        return text
    return ", ".join(f"[{a.get('filename') or a['kind']}]" for a in attachments)


@dataclass(frozen=True, slots=True)
class Queued:
    """What became of a message for a contact sent from outside a thread (the REST API)."""

    contact_id: ContactId
    conversation_id: ConversationId | None
    message_id: MessageId | None
    # Why nothing was sent (in words, and as a code: blacklisted, opted_out, window_closed,
    # no_connector); None when the message was queued.
    refusal: str | None
    code: str | None


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
        # Late-bound clock: tests replace the pipeline's after it is built.
        self.webhooks = WebhookEvents(lambda: self.clock())
        self.connectors: dict[tuple[Platform, AccountId], Connector] = {}
        self.surfaces: dict[SurfaceName, StaffSurface] = {}
        self.publishers: dict[str, Publisher] = {}
        self._threads: dict[tuple[ConversationId, SurfaceName], ThreadRef] = {}
        # Who is who, for the inbound hot path: (platform, account, chat) → (contact, open
        # conversation). Only on SQLite, where this process is the database's only writer;
        # entries are added after their transaction commits and dropped when a conversation
        # closes, so a hit is always true.
        self._known: dict[tuple[Platform, AccountId, ChatId], tuple[ContactId, ConversationId]] = {}
        self._known_by_contact: dict[ContactId, tuple[Platform, AccountId, ChatId]] = {}
        self._remember = db.dialect == "sqlite"
        self._keyword_cache: (
            tuple[
                float,
                dict[str, str],
                dict[str, subscriptions.ChannelRecord],
                dict[str, subscriptions.ChannelRecord],
            ]
            | None
        ) = None
        self._inbound: BatchKind[Sequence[InboundEvent], None] = BatchKind(
            "pipeline.inbound", self._store_inbound
        )
        self._staff: BatchKind[StaffEvent, bool] = BatchKind("pipeline.staff", self._store_staff)

    # -- wiring ---------------------------------------------------------------------------

    @property
    def http(self) -> aiohttp.ClientSession | None:
        """The shared HTTP client session (None for a pipeline built without one)."""
        return self._http

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

    def handlers(self) -> dict[str, JobHandler]:
        """The outbox handler of each row kind."""
        return {
            "staff.open": _OpenThread(self),
            "staff.post": _Mirror(self),
            "staff.card": _Card(self),
            "staff.edit": _MirrorEdit(self),
            "staff.mark": _Mark(self),
            "staff.notice": _Notice(self),
            "staff.tell": _Tell(self),
            "staff.window": _WindowNotice(self),
            "staff.tombstone": _Tombstone(self),
            "customer.send": _Send(self),
            "customer.edit": _CustomerChange(self, delete=False),
            "customer.delete": _CustomerChange(self, delete=True),
            **automation.handlers(self, self.outbound if self._http else None),
            **BroadcastHandlers(self).handlers(),
            **self.webhooks.handlers(self.db, self.outbound if self._http else None),
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

    async def close(self, conversation_id: ConversationId) -> bool:
        """Close a conversation (the customer's next message opens a new one); False if closed."""

        def close(tx: Tx) -> bool:
            return self._close(tx, conversation_id)

        return await self.writer.call(close)

    def _close(self, tx: Tx, conversation_id: ConversationId) -> bool:
        conversation = tx.conversation(conversation_id)
        if conversation is None:
            return False
        changed = tx.set_conversation_status(
            conversation_id, ConversationStatus.CLOSED, self.clock()
        )
        if changed:
            tx.after_commit.append(lambda: self.forget_contact(conversation.contact_id))
        return changed

    # -- inbound --------------------------------------------------------------------------

    def _store_inbound(self, tx: Tx, batches: Sequence[Sequence[InboundEvent]]) -> list[None]:
        now = self.clock()
        messages: dict[tuple[Platform, AccountId], list[InboundMessage]] = defaultdict(list)
        edits: list[InboundEdit] = []
        statuses: list[StatusUpdate] = []
        watermarks: list[WatermarkUpdate] = []
        for events in batches:
            for event in events:
                if isinstance(event, InboundMessage):
                    messages[(event.platform, event.account)].append(event)
                elif isinstance(event, InboundEdit):
                    edits.append(event)
                elif isinstance(event, WatermarkUpdate):
                    watermarks.append(event)
                else:
                    statuses.append(event)
        jobs: list[NewJob] = []
        for (platform, account), group in messages.items():
            self._store_messages(tx, platform, account, group, now, jobs)
        for edit in edits:
            self._store_edit(tx, edit, jobs)
        for status in statuses:
            self._store_status(tx, status, jobs)
        for mark in watermarks:
            self._store_watermark(tx, mark, jobs)
        tx.enqueue(jobs, time.time())
        return [None] * len(batches)

    def _store_status(self, tx: Tx, status: StatusUpdate, jobs: list[NewJob]) -> None:
        if status.status is DeliveryStatus.FAILED:
            platform = status.platform
            tx.after_commit.append(lambda: self.metrics.delivery_failed(platform, "report"))
        found = tx.messages_by_external(status.platform, status.account, [status.external_id])
        message = found.get(status.external_id)
        if message is None and broadcasts_store.apply_status(
            tx.conn,
            status.platform,
            status.account,
            status.external_id,
            status.status.value,
            status.reason,
        ):
            return  # a broadcast message: its state is counted, not shown in a thread
        if message is None:
            # The platform can report before the send's answer is recorded: keep it for then.
            early = {
                "status": status.status.value,
                "code": status.code,
                "reason": status.reason,
                "opted_out": status.opted_out,
            }
            key = early_key(status.platform, status.account, status.external_id)
            tx.keep_early_status(key, json.dumps(early))
            return
        if message.direction == "out":
            jobs.extend(
                self._apply_status(
                    tx, message, status.status, status.code, status.reason, status.opted_out
                )
            )

    def _apply_status(
        self,
        tx: Tx,
        message: MessageRecord,
        status: DeliveryStatus,
        code: str | None,
        reason: str | None,
        opted_out: bool,
    ) -> list[NewJob]:
        """Record a delivery status reported by the platform and show it in the threads."""
        jobs: list[NewJob] = []
        tx.write_statuses([MessageStatusWrite(message.id, status.value, None, code, reason)])
        jobs.extend(self.webhooks.message_status(tx, message.id, status.value))
        for surface, ref in tx.refs_of(message.id, "origin"):
            jobs.append(self._mark_job(message.conversation_id, surface, ref, status, message.id))
            if status is DeliveryStatus.FAILED:
                words = reason or "the platform reported a failure"
                platform = message.platform.capitalize() if message.platform != "sms" else "SMS"
                detail = f" ({platform} {code})" if code and code not in words else ""
                jobs.append(
                    self._notice_job(
                        message.conversation_id,
                        surface,
                        f"fail:{message.id}",
                        f"not delivered: {words}{detail}",
                    )
                )
        if opted_out:
            conversation = tx.conversation(message.conversation_id)
            if conversation is not None:
                jobs.extend(
                    self._opt_out(tx, conversation.contact_id, conversation.id, "platform refusal")
                )
        return jobs

    def _store_watermark(self, tx: Tx, mark: WatermarkUpdate, jobs: list[NewJob]) -> None:
        contact = tx.contact_by_address(mark.platform, mark.account, mark.chat_id)
        if contact is None:
            return
        moved = tx.advance_to_watermark(
            contact.id, mark.platform, mark.account, mark.status.value, mark.watermark
        )
        for message in moved:
            jobs.extend(self.webhooks.message_status(tx, message.id, mark.status.value))
            for surface, ref in tx.refs_of(message.id, "origin"):
                jobs.append(
                    self._mark_job(message.conversation_id, surface, ref, mark.status, message.id)
                )

    def _opt_out(
        self,
        tx: Tx,
        contact_id: ContactId,
        conversation_id: ConversationId,
        source: str,
        *,
        back_in: bool = False,
        cause: str | None = None,
    ) -> list[NewJob]:
        """Record an opt-out (or an opt-in again) and tell the thread."""
        # `cause` (the message that asked for it) names the webhook event, else the moment of
        # the change does: a change is recorded once, so either is stable.
        at = self.clock()
        changed = tx.set_opt_out(contact_id, None if back_in else at, source)
        if not changed:
            return []
        text = (
            f"The customer opted in again ({source}); replies reach them again."
            if back_in
            else f"The customer opted out ({source}): nothing is sent to them until they opt in"
            " again (for SMS, by texting START)."
        )
        jobs = self.webhooks.opted(
            tx,
            contact_id,
            opted_in=back_in,
            scope=SCOPE_CONTACT,
            source=source,
            cause=cause or f"t{int(at.timestamp() * 1000)}",
        )
        for surface in self.surfaces:
            jobs.append(self._card_job(conversation_id, surface, None))
            jobs.append(
                self._notice_job(
                    conversation_id, surface, f"consent:{contact_id}:{time.time()}", text
                )
            )
        return jobs

    def _store_messages(
        self,
        tx: Tx,
        platform: Platform,
        account: AccountId,
        group: list[InboundMessage],
        now: datetime,
        jobs: list[NewJob],
    ) -> None:
        existing = tx.messages_by_external(platform, account, [m.external_id for m in group])
        fresh: list[InboundMessage] = []
        seen: set[str] = set(existing)
        for m in group:  # a platform retry, or the same update twice in one batch
            if m.external_id not in seen:
                seen.add(m.external_id)
                fresh.append(m)
        if not fresh:
            return
        chat_ids = list(dict.fromkeys(m.chat_id for m in fresh))
        contact_of: dict[str, ContactId] = {}
        conv_of: dict[ContactId, ConversationId] = {}
        unknown = []
        for chat_id in chat_ids:
            hit = self._known.get((platform, account, chat_id)) if self._remember else None
            if hit is None:
                unknown.append(chat_id)
            else:
                contact_of[chat_id], conv_of[hit[0]] = hit
        contacts = tx.contacts_by_address(platform, account, unknown)
        new_contacts = []
        for chat_id in unknown:
            if chat_id in contacts:
                continue
            first = next(m for m in fresh if m.chat_id == chat_id)
            payload = first.start_payload
            source = f"deep link: {payload}" if payload else "first message"
            if not payload and first.text and len(first.text) <= KEYWORD_MAX:
                joined = self._keyword_tables(tx)[1].get(subscriptions.fold(first.text))
                if joined is not None:
                    source = f"keyword: {joined.join_keyword}"
            new_contacts.append(
                {
                    "platform": platform,
                    "account": account,
                    "chat_id": chat_id,
                    "display_name": first.profile.display_name,
                    "username": first.profile.username,
                    "language": first.profile.language,
                    "first_seen": first.sent_at,
                    "last_seen": first.sent_at,
                    "message_count": 0,
                    "opt_in_source": source,
                    "opt_in_at": now,
                }
            )
        for record in tx.insert_contacts(new_contacts):
            contacts[record.chat_id] = record
        for chat_id in unknown:
            contact_of[chat_id] = contacts[chat_id].id
        lookup = [contact_of[chat_id] for chat_id in unknown]
        for cid, conv in tx.open_conversations(lookup).items():
            conv_of[cid] = conv.id
        missing = [cid for cid in lookup if cid not in conv_of]
        previous = tx.last_conversation_ids(missing)
        created = tx.insert_conversations(
            [
                {
                    "contact_id": cid,
                    "status": ConversationStatus.OPEN.value,
                    "opened_at": now,
                    "previous_id": previous.get(cid),
                }
                for cid in missing
            ]
        )
        new_conv_ids = {c.id for c in created}
        for c in created:
            conv_of[c.contact_id] = c.id
        if self._remember and unknown:
            learned = {
                (platform, account, ch): (contact_of[ch], conv_of[contact_of[ch]]) for ch in unknown
            }
            tx.after_commit.append(lambda: self._learn(learned))
        rows: list[dict[str, Any]] = []
        for m in fresh:
            attachments = [_attachment_dict(a) for a in m.attachments]
            rows.append(
                {
                    "conversation_id": conv_of[contact_of[m.chat_id]],
                    "direction": "in",
                    "platform": platform,
                    "account": account,
                    "external_id": m.external_id,
                    "author": m.profile.display_name,
                    "text": m.text,
                    "attachments": attachments or None,
                    "sent_at": m.sent_at,
                    "status": None,
                }
            )
        ids = tx.insert_messages(rows)
        stored = len(rows)
        tx.after_commit.append(lambda: self.metrics.received(platform, stored))
        per_contact: dict[ContactId, list[InboundMessage]] = defaultdict(list)
        for m in fresh:
            per_contact[contact_of[m.chat_id]].append(m)
        tx.update_contacts(
            [
                {
                    "b_id": cid,
                    "b_add": len(ms),
                    "b_seen": max(x.sent_at for x in ms),
                    "b_name": ms[-1].profile.display_name,
                    "b_username": ms[-1].profile.username,
                }
                for cid, ms in per_contact.items()
            ]
        )
        tx.touch_conversations(
            [
                {"b_id": conv_of[cid], "b_at": max(x.sent_at for x in ms)}
                for cid, ms in per_contact.items()
            ]
        )
        # What consent words and keywords cause (notices, confirmations) goes after the jobs
        # that open the thread and mirror the message: a notice ahead of its thread's opening
        # in the same lane would hold that lane (and the thread) back until it gave up.
        consent_jobs: list[NewJob] = []
        for m in fresh:
            if m.consent is not None:
                cid = contact_of[m.chat_id]
                consent_jobs.extend(
                    self._opt_out(
                        tx,
                        cid,
                        conv_of[cid],
                        f"replied {m.text.strip().upper()[:20]}",
                        back_in=m.consent is Consent.START,
                        cause=f"msg:{m.external_id}",
                    )
                )
        all_ids = list(per_contact)
        blocks = subscriptions.blocks_of(tx.conn, all_ids)
        blocked = {cid for cid, entry in blocks.items() if entry.blocks("in", now)}
        # Webhook events: a new contact's opt-in, then the messages (but a blocked contact's).
        for new in new_contacts:
            record = contacts[str(new["chat_id"])]
            if record.id not in blocked:
                jobs.extend(
                    self.webhooks.opted(
                        tx,
                        record,
                        opted_in=True,
                        scope=SCOPE_CONTACT,
                        source=str(new["opt_in_source"]),
                        cause="new",
                    )
                )
        jobs.extend(
            self.webhooks.messages_received(
                tx,
                [
                    (ids[i], conv_of[contact_of[m.chat_id]], contact_of[m.chat_id], m)
                    for i, m in enumerate(fresh)
                    if contact_of[m.chat_id] not in blocked
                ],
            )
        )
        signed_up = {str(c["chat_id"]) for c in new_contacts}
        if signed_up:
            bound = subscriptions.channels_for_platform(tx.conn, platform)
            for address in signed_up:
                for listed in bound:
                    subscriptions.join(
                        tx.conn, listed.id, contact_of[address], f"signed up on {platform}", now
                    )
        handled = self._keywords(
            tx, platform, account, fresh, contact_of, conv_of, blocked, now, consent_jobs
        )
        # Chatbot rules, for what is neither blocked nor a consent word or channel keyword.
        arrivals = [
            Arrival(m, int(ids[i]), contact_of[m.chat_id], conv_of[contact_of[m.chat_id]])
            for i, m in enumerate(fresh)
            if contact_of[m.chat_id] not in blocked and m.external_id not in handled
        ]
        rule_jobs, swallowed_at = apply_rules(self, tx, platform, account, arrivals, now)
        consent_jobs.extend(rule_jobs)
        # Answers to a newsletter land in the conversation like any message, marked as such.
        for replier, broadcast_id in broadcasts_store.replied(
            tx.conn,
            [a.contact_id for i, a in enumerate(arrivals) if i not in swallowed_at],
            now,
            REPLY_TO_BROADCAST_WITHIN,
        ):
            consent_jobs.extend(
                self._notice_job(
                    conv_of[ContactId(replier)],
                    surface,
                    f"bcreply:{broadcast_id}:{replier}",
                    f"This is a reply to broadcast #{broadcast_id}.",
                )
                for surface in self.surfaces
            )
        swallowed = {arrivals[i].message.external_id for i in swallowed_at}
        if blocked or swallowed:
            # Stored, but not shown to staff: the thread, the mirror and the card stay as they
            # are (a blocked contact, or a message a rule keeps out, e.g. spam).
            keep = [
                i
                for i, m in enumerate(fresh)
                if contact_of[m.chat_id] not in blocked and m.external_id not in swallowed
            ]
            shown_convs = {conv_of[contact_of[fresh[i].chat_id]] for i in keep}
            new_conv_ids = {c for c in new_conv_ids if c in shown_convs}
            fresh = [fresh[i] for i in keep]
            ids = [ids[i] for i in keep]
            rows = [rows[i] for i in keep]
        window = int(time.time() // self.settings.bridge.card_refresh_s)
        for surface_name, surface in self.surfaces.items():
            channel = self.route(surface_name, platform, account)
            post_keys = surface.rate_keys("post", channel)
            for conv_id in sorted(new_conv_ids):
                jobs.append(
                    NewJob(
                        kind="staff.open",
                        idem_key=f"open:{conv_id}:{surface_name}",
                        lane=f"c{conv_id}:{surface_name}",
                        rate_keys=post_keys,
                        payload={"conv": conv_id, "surface": surface_name, "channel": channel},
                    )
                )
            for m, message_id, row in zip(fresh, ids, rows, strict=True):
                post_conv = row["conversation_id"]
                jobs.append(
                    NewJob(
                        kind="staff.post",
                        idem_key=f"post:{message_id}:{surface_name}",
                        lane=f"c{post_conv}:{surface_name}",
                        rate_keys=post_keys,
                        payload={
                            "conv": post_conv,
                            "surface": surface_name,
                            "msg": message_id,
                            "author": m.profile.display_name,
                            "text": m.text,
                            "files": row["attachments"] or [],
                            "platform": platform,
                            "account": account,
                            "chat": m.chat_id,
                        },
                    )
                )
            touched: set[int] = {int(row["conversation_id"]) for row in rows} - new_conv_ids
            for touched_id in sorted(touched):
                jobs.append(self._card_job(touched_id, surface_name, window))
        jobs.extend(consent_jobs)

    def _keywords(
        self,
        tx: Tx,
        platform: Platform,
        account: AccountId,
        fresh: Sequence[InboundMessage],
        contact_of: Mapping[str, ContactId],
        conv_of: Mapping[ContactId, ConversationId],
        blocked: set[ContactId],
        now: datetime,
        jobs: list[NewJob],
    ) -> set[str]:
        """Consent words and channel keywords: whole messages that (un)subscribe the sender.
        Returns the external ids of the messages that were such a word."""
        handled: set[str] = set()
        short = [m for m in fresh if m.start_payload or (m.text and len(m.text) <= KEYWORD_MAX)]
        if not short:
            return handled
        words, join, leave = self._keyword_tables(tx)
        for m in short:
            cid = contact_of[m.chat_id]
            said = subscriptions.fold(m.start_payload or m.text)
            first, _, rest = said.partition(" ")
            answer: str | None = None
            if words.get(said) == "stop" or (words.get(first) == "stop" and rest in join):
                channel = join.get(rest) if words.get(said) != "stop" else None
                ended = subscriptions.leave(
                    tx.conn, cid, "STOP", now, channel.id if channel else None
                )
                if ended and channel is None:
                    jobs.extend(self._channels_event(tx, cid, m, ended, opted_in=False))
                if ended:
                    answer = (
                        (
                            channel.leave_reply
                            or f"You have left {channel.name}."
                            f" Send {channel.join_keyword} to join again."
                        )
                        if channel
                        else "You are unsubscribed and will get no more newsletters."
                        " Send START to subscribe again."
                    )
            elif words.get(said) == "start":
                back = subscriptions.rejoin_after_stop(tx.conn, cid, now)
                if back:
                    jobs.extend(self._channels_event(tx, cid, m, back, opted_in=True))
                    answer = "Welcome back: you are subscribed again."
            elif said in join and cid not in blocked:
                channel = join[said]
                if subscriptions.join(
                    tx.conn, channel.id, cid, f"keyword {channel.join_keyword}", now
                ):
                    leave_word = channel.leave_keyword or "STOP"
                    answer = channel.join_reply or (
                        f"You have joined {channel.name}. Send {leave_word} to leave."
                    )
            elif said in leave:
                channel = leave[said]
                if subscriptions.leave(
                    tx.conn, cid, f"keyword {channel.leave_keyword}", now, channel.id
                ):
                    answer = channel.leave_reply or f"You have left {channel.name}."
            if said in words or said in join or said in leave or rest in join:
                handled.add(m.external_id)
            if answer is not None and cid not in blocked:
                jobs.extend(
                    self._auto_reply(
                        tx, platform, account, m.chat_id, cid, conv_of[cid], answer, m.external_id
                    )
                )
        return handled

    def _channels_event(
        self, tx: Tx, cid: ContactId, m: InboundMessage, channels: list[int], *, opted_in: bool
    ) -> list[NewJob]:
        """contact.opted_in/out for a STOP or START that ended or restored every channel."""
        return self.webhooks.opted(
            tx,
            cid,
            opted_in=opted_in,
            scope=SCOPE_CHANNELS,
            source=f"replied {m.text.strip().upper()[:20]}",
            cause=f"msg:{m.external_id}",
            channels=channels,
        )

    def _keyword_tables(
        self, tx: Tx
    ) -> tuple[
        dict[str, str],
        dict[str, subscriptions.ChannelRecord],
        dict[str, subscriptions.ChannelRecord],
    ]:
        """Consent words and channel keywords, read at most every few seconds."""
        cached = self._keyword_cache
        if cached is not None and time.monotonic() - cached[0] < KEYWORD_CACHE_S:
            return cached[1], cached[2], cached[3]
        words = subscriptions.consent_words(tx.conn)
        join, leave = subscriptions.channels_by_keyword(tx.conn)
        self._keyword_cache = (time.monotonic(), words, join, leave)
        return words, join, leave

    def keywords_changed(self) -> None:
        """Read consent words and channel keywords again (a command changed them)."""
        self._keyword_cache = None

    def rules_changed(self) -> None:
        """Build the chatbot rules again (a command changed them)."""
        self.rulebook.changed()

    def _auto_reply(
        self,
        tx: Tx,
        platform: Platform,
        account: AccountId,
        chat_id: ChatId,
        contact_id: ContactId,
        conv_id: ConversationId,
        text: str,
        cause: str,
        *,
        files: Sequence[Mapping[str, Any]] = (),
        notice: str | None = "",
    ) -> list[NewJob]:
        """A message the bridge sends by itself (a confirmation, a rule's answer), shown to
        staff as a notice: `notice`, by default "Sent automatically: <text>"; None for none."""
        contact = tx.contact(contact_id)
        connector = self.connectors.get((platform, account))
        if contact is None or connector is None:
            return []
        if self._refusal(tx, contact, connector, template=False) is not None:
            return []  # e.g. SMS after STOP: the carrier answers for us, we may not send
        [message_id] = tx.insert_messages(
            [
                {
                    "conversation_id": conv_id,
                    "direction": "out",
                    "platform": platform,
                    "account": account,
                    "external_id": None,
                    "author": "bridge",
                    "text": text,
                    "attachments": list(files) or None,
                    "sent_at": self.clock(),
                    "status": DeliveryStatus.QUEUED.value,
                }
            ]
        )
        jobs = [
            NewJob(
                kind="customer.send",
                idem_key=f"auto:{platform}:{account}:{cause}",
                lane=f"c{conv_id}:out",
                rate_keys=connector.rate_keys(chat_id),
                payload={
                    "conv": conv_id,
                    "msg": message_id,
                    "platform": platform,
                    "account": account,
                    "chat": chat_id,
                    "text": text,
                    "files": list(files),
                    "last_in": time.time(),
                },
            )
        ]
        if notice is not None:
            shown = notice or f"Sent automatically: {text}"
            for surface in self.surfaces:
                jobs.append(self._notice_job(conv_id, surface, f"auto:{message_id}", shown))
        return jobs

    def _learn(
        self, learned: Mapping[tuple[Platform, AccountId, ChatId], tuple[ContactId, ConversationId]]
    ) -> None:
        for key, value in learned.items():
            self._known[key] = value
            self._known_by_contact[value[0]] = key

    def forget_contact(self, contact_id: ContactId) -> None:
        """Drop what the inbound path remembers of a contact (its conversation closed, say)."""
        key = self._known_by_contact.pop(contact_id, None)
        if key is not None:
            self._known.pop(key, None)

    def _card_job(self, conv_id: int, surface: SurfaceName, window: int | None) -> NewJob:
        """A card refresh; with a window, one per conversation per `card_refresh_s` seconds."""
        key = f"card:{conv_id}:{surface}:{window if window is not None else time.time()}"
        return NewJob(
            kind="staff.card",
            idem_key=key,
            lane=f"card{conv_id}:{surface}",
            rate_keys=self.surfaces[surface].rate_keys("update", None),
            payload={"conv": conv_id, "surface": surface},
            next_at=(window + 1) * self.settings.bridge.card_refresh_s
            if window is not None
            else 0.0,
        )

    def _mark_job(
        self,
        conv_id: int,
        surface: SurfaceName,
        ref: StaffMessageRef,
        status: DeliveryStatus,
        message_id: MessageId,
    ) -> NewJob:
        return NewJob(
            kind="staff.mark",
            idem_key=f"mark:{message_id}:{surface}:{status.value}",
            lane=f"c{conv_id}:{surface}",
            rate_keys=self.surfaces[surface].rate_keys("mark", None),
            payload={"surface": surface, "ref": ref, "status": status.value},
        )

    def _notice_job(self, conv_id: int, surface: SurfaceName, key: str, text: str) -> NewJob:
        return NewJob(
            kind="staff.notice",
            idem_key=f"notice:{key}:{surface}",
            lane=f"c{conv_id}:{surface}",
            rate_keys=self.surfaces[surface].rate_keys("post", None),
            payload={"conv": conv_id, "surface": surface, "text": text},
        )

    def _store_edit(self, tx: Tx, edit: InboundEdit, jobs: list[NewJob]) -> None:
        found = tx.messages_by_external(edit.platform, edit.account, [edit.external_id])
        message = found.get(edit.external_id)
        if message is None or message.direction != "in" or message.text == edit.text:
            return
        tx.edit_message(message.id, edit.text, edit.edited_at)
        for surface_name, surface in self.surfaces.items():
            jobs.append(
                NewJob(
                    kind="staff.edit",
                    idem_key=f"edit:{message.id}:{surface_name}:{edit.edited_at.timestamp()}",
                    lane=f"c{message.conversation_id}:{surface_name}",
                    rate_keys=surface.rate_keys("update", None),
                    payload={
                        "conv": message.conversation_id,
                        "surface": surface_name,
                        "msg": message.id,
                    },
                )
            )

    # -- staff ----------------------------------------------------------------------------

    def _store_staff(self, tx: Tx, events: Sequence[StaffEvent]) -> list[bool]:
        jobs: list[NewJob] = []
        known = [True] * len(events)
        for index, event in enumerate(events):
            if isinstance(event, StaffMessage):
                known[index] = self._staff_message(tx, event, jobs)
            elif isinstance(event, StaffEdit):
                self._staff_edit(tx, event, jobs)
            elif isinstance(event, StaffDelete):
                self._staff_delete(tx, event, jobs)
        tx.enqueue(jobs, time.time())
        return known

    def _staff_message(self, tx: Tx, event: StaffMessage, jobs: list[NewJob]) -> bool:
        """Store a staff message; False when its thread is not (yet) known."""
        if tx.message_by_ref(event.surface, event.ref, "origin") is not None:
            return True  # a retried or replayed event
        conv_id = tx.conversation_by_thread(event.surface, event.thread)
        if conv_id is None:
            return False
        # Sending to a customer is the agent's power: checked here, where it is used.
        role = staff_role(tx, self.settings, event.surface, event.author, stranger=event.stranger)
        if role < Role.AGENT:
            refusal = Refusal(
                conversation=conv_id,
                surface=event.surface,
                thread=event.thread,
                user=event.author,
                what="reply",
                role=role,
                stranger=event.stranger,
                answer_to=event.ref,
                mark=event.ref,
            )
            jobs.extend(refusal_jobs(tx, self.settings, self.surfaces[event.surface], refusal))
            return True
        self._staff_reply(
            tx,
            conv_id,
            surface=event.surface,
            ref=event.ref,
            author=event.author_name or event.author,
            text=event.text,
            attachments=event.attachments,
            at=event.at,
            template=None,
            jobs=jobs,
        )
        return True

    def _staff_reply(
        self,
        tx: Tx,
        conv_id: ConversationId,
        *,
        surface: SurfaceName,
        ref: StaffMessageRef,
        author: str,
        text: str,
        attachments: Sequence[Attachment],
        at: datetime,
        template: TemplateCall | None,
        jobs: list[NewJob],
        note: bool | None = None,
    ) -> MessageId | None:
        """Store what staff wrote in a conversation; queue it for the customer unless a note.

        `surface` may name no staff surface (the REST API): then every thread shows the message
        and no delivery marks are set. Returns the stored message's id."""
        conversation = tx.conversation(conv_id)
        contact = tx.contact(conversation.contact_id) if conversation else None
        if conversation is None or contact is None:
            return None
        staffed = surface in self.surfaces
        prefix = self.settings.bridge.note_prefix
        is_note = note if note is not None else bool(prefix) and text.strip().startswith(prefix)
        connector = self.connectors.get((contact.platform, contact.account))
        refusal: str | None = None
        if not is_note:
            refusal = self._refusal(tx, contact, connector, template is not None)
        [message_id] = tx.insert_messages(
            [
                {
                    "conversation_id": conv_id,
                    "direction": "note" if is_note else "out",
                    "platform": contact.platform,
                    "account": contact.account,
                    "external_id": None,
                    "author": author,
                    "text": text,
                    "attachments": [_attachment_dict(a) for a in attachments] or None,
                    "sent_at": at,
                    "status": None if is_note else DeliveryStatus.QUEUED.value,
                }
            ]
        )
        if staffed:
            tx.add_refs([(surface, ref, "origin", message_id)])
        # A team on both surfaces sees in each thread what was written in the other.
        for name, other in self.surfaces.items():
            if name == surface:
                continue
            jobs.append(
                NewJob(
                    kind="staff.post",
                    idem_key=f"echo:{message_id}:{name}",
                    lane=f"c{conv_id}:{name}",
                    rate_keys=other.rate_keys(
                        "post", self.route(name, contact.platform, contact.account)
                    ),
                    payload={
                        "conv": conv_id,
                        "surface": name,
                        "msg": message_id,
                        "author": f"{author} ({'note' if is_note else 'reply'} in {surface})",
                        "text": text,
                        "files": [_attachment_dict(a) for a in attachments],
                        "origin": surface,
                    },
                )
            )
        if is_note:
            return message_id
        if refusal is not None:
            tx.write_statuses(
                [
                    MessageStatusWrite(
                        message_id, DeliveryStatus.FAILED.value, None, "refused", refusal
                    )
                ]
            )
            jobs.extend(self.webhooks.message_status(tx, message_id, DeliveryStatus.FAILED.value))
            for name in self.surfaces:
                if name == surface:
                    jobs.append(
                        self._mark_job(conv_id, name, ref, DeliveryStatus.FAILED, message_id)
                    )
                jobs.append(
                    self._window_job(
                        conv_id, name, contact.platform, contact.account, message_id, refusal
                    )
                )
            return message_id
        payload: dict[str, Any] = {
            "conv": conv_id,
            "msg": message_id,
            "platform": contact.platform,
            "account": contact.account,
            "chat": contact.chat_id,
            "text": text,
            "files": [_attachment_dict(a) for a in attachments],
            "surface": surface if staffed else None,
            "ref": ref if staffed else None,
            "last_in": contact.last_seen.timestamp() if contact.last_seen else None,
        }
        if template is not None:
            payload["template"] = {
                "name": template.name,
                "language": template.language,
                "params": list(template.params),
            }
        jobs.append(
            NewJob(
                kind="customer.send",
                idem_key=f"send:{message_id}",
                lane=f"c{conv_id}:out",
                rate_keys=connector.rate_keys(contact.chat_id) if connector else (),
                payload=payload,
            )
        )
        return message_id

    def _refusal(
        self,
        tx: Tx,
        contact: ContactRecord,
        connector: Connector | None,
        template: bool,
    ) -> str | None:
        """Why nothing may be sent to this contact now, or None."""
        now = self.clock()
        entry = subscriptions.blocks_of(tx.conn, [contact.id]).get(contact.id)
        if entry is not None and entry.blocks("out", now):
            until = f" until {entry.until:%Y-%m-%d %H:%M} UTC" if entry.until else ""
            why = f" ({entry.reason})" if entry.reason else ""
            return f"the contact is blacklisted for outgoing messages{until}{why}"
        if contact.opted_out_at is not None:
            return (
                f"the customer opted out on {contact.opted_out_at:%Y-%m-%d %H:%M} UTC; nothing"
                " is sent to them until they opt in again"
            )
        if connector is not None and not template:
            return connector.window_refusal(contact.last_seen, now)
        return None

    # -- what commands ask of the pipeline -------------------------------------------------

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
        """Send text or a template from a thread command (`!tb`, `!template`) of someone with
        `role`; False if the command's message was handled already (a retried event)."""
        if role < Role.AGENT:
            raise NotAllowed(f"sending to a customer needs the agent role, not {role.label}")
        at = self.clock()

        def write(tx: Tx) -> bool:
            if tx.message_by_ref(surface, ref, "origin") is not None:
                return False
            jobs: list[NewJob] = []
            self._staff_reply(
                tx,
                conversation,
                surface=surface,
                ref=ref,
                author=author,
                text=text,
                attachments=(),
                at=at,
                template=template,
                jobs=jobs,
                note=note,
            )
            tx.enqueue(jobs, time.time())
            return True

        return await self.writer.call(write)

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
        """Queue text or a template for a contact from outside a thread (the REST API), in the
        caller's transaction: the checks of an agent's reply (blacklist, opt-out, the platform's
        window), then the same path, shown in every thread under `author`. A contact without an
        open conversation gets a new one (and its threads). None for an unknown contact; a
        refused send writes nothing."""
        contact = tx.contact(contact_id)
        if contact is None:
            return None
        connector = self.connectors.get((contact.platform, contact.account))
        if connector is None:
            reason = f"the bridge has no {contact.platform} connector for account {contact.account}"
            return Queued(contact_id, None, None, reason, "no_connector")
        refusal = self._refusal(tx, contact, connector, template is not None)
        if refusal is not None:
            entry = subscriptions.blocks_of(tx.conn, [contact_id]).get(contact_id)
            if entry is not None and entry.blocks("out", self.clock()):
                code = "blacklisted"
            elif contact.opted_out_at is not None:
                code = "opted_out"
            else:
                code = "window_closed"
            return Queued(contact_id, None, None, refusal, code)
        jobs: list[NewJob] = []
        conversation = tx.open_conversations([contact_id]).get(contact_id)
        if conversation is None:
            previous = tx.last_conversation_ids([contact_id]).get(contact_id)
            [conversation] = tx.insert_conversations(
                [
                    {
                        "contact_id": contact_id,
                        "status": ConversationStatus.OPEN.value,
                        "opened_at": self.clock(),
                        "previous_id": previous,
                    }
                ]
            )
            for name, surface in self.surfaces.items():
                channel = self.route(name, contact.platform, contact.account)
                jobs.append(
                    NewJob(
                        kind="staff.open",
                        idem_key=f"open:{conversation.id}:{name}",
                        lane=f"c{conversation.id}:{name}",
                        rate_keys=surface.rate_keys("post", channel),
                        payload={"conv": conversation.id, "surface": name, "channel": channel},
                    )
                )
        message_id = self._staff_reply(
            tx,
            conversation.id,
            surface=origin,
            ref=StaffMessageRef(f"{origin}:{contact_id}:{time.time_ns()}"),
            author=author,
            text=text,
            attachments=(),
            at=self.clock(),
            template=template,
            jobs=jobs,
            note=False,
        )
        tx.enqueue(jobs, time.time())
        return Queued(contact_id, conversation.id, message_id, None, None)

    async def set_open(self, conversation: ConversationId, is_open: bool, who: str) -> str:
        """Close or reopen a conversation; returns what happened, in words."""

        def write(tx: Tx) -> str:
            found = tx.conversation(conversation)
            if found is None:
                return "This conversation no longer exists."
            if not is_open:
                changed = self._close(tx, conversation)
                text = (
                    f"Conversation closed by {who}. The customer's next message opens a new"
                    " thread."
                    if changed
                    else "This conversation is already closed."
                )
            else:
                other = tx.open_conversations([found.contact_id]).get(found.contact_id)
                if other is not None and other.id != conversation:
                    return "The customer has a newer open conversation; reply there instead."
                changed = tx.set_conversation_status(
                    conversation, ConversationStatus.OPEN, self.clock()
                )
                text = f"Conversation reopened by {who}." if changed else "It is open already."
            if changed:
                tx.enqueue([self._card_job(conversation, s, None) for s in self.surfaces], 0)
            return text

        return await self.writer.call(write)

    async def refresh_card(self, conversation: ConversationId) -> None:
        """Redraw the conversation's contact card on every surface (after a staff change)."""
        jobs = [self._card_job(conversation, s, None) for s in self.surfaces]
        await self.writer.call(lambda tx: tx.enqueue(jobs, time.time()))

    async def unblocked(self, contact_id: ContactId) -> None:
        """After an inbound block is lifted: open the thread its messages were kept out of."""

        def write(tx: Tx) -> None:
            conversation = tx.open_conversations([contact_id]).get(contact_id)
            contact = tx.contact(contact_id)
            if conversation is None or contact is None:
                return
            jobs = []
            for name, surface in self.surfaces.items():
                if tx.thread(conversation.id, name) is not None:
                    continue
                channel = self.route(name, contact.platform, contact.account)
                jobs.append(
                    NewJob(
                        kind="staff.open",
                        idem_key=f"open:{conversation.id}:{name}",
                        lane=f"c{conversation.id}:{name}",
                        rate_keys=surface.rate_keys("post", channel),
                        payload={"conv": conversation.id, "surface": name, "channel": channel},
                    )
                )
            tx.enqueue(jobs, time.time())

        await self.writer.call(write)

    async def notify(
        self, conversation: ConversationId, text: str, *, key: str, skip: SurfaceName | None = None
    ) -> None:
        """Post a notice from the bridge into the conversation's threads (but `skip`'s)."""
        jobs = [self._notice_job(conversation, s, key, text) for s in self.surfaces if s != skip]
        await self.writer.call(lambda tx: tx.enqueue(jobs, time.time()))

    def _window_job(
        self,
        conv_id: int,
        surface: SurfaceName,
        platform: str,
        account: str,
        message_id: MessageId,
        reason: str,
    ) -> NewJob:
        """A notice that a reply was not sent, with the templates that could be sent instead."""
        return NewJob(
            kind="staff.window",
            idem_key=f"window:{message_id}:{surface}",
            lane=f"c{conv_id}:{surface}",
            rate_keys=self.surfaces[surface].rate_keys("post", None),
            payload={
                "conv": conv_id,
                "surface": surface,
                "platform": platform,
                "account": account,
                "reason": reason,
            },
        )

    def route(self, surface: SurfaceName, platform: str, account: str) -> str | None:
        """The channel or room of a platform account's threads on a surface; None: the default."""
        if surface == "matrix":
            return self.settings.matrix_room(platform, account)
        return self.settings.slack_channel(platform, account)

    def _staff_edit(self, tx: Tx, event: StaffEdit, jobs: list[NewJob]) -> None:
        message = tx.message_by_ref(event.surface, event.ref, "origin")
        if message is None or message.text == event.text or message.deleted:
            return
        if self._refused_change(tx, event, message, "edit", jobs):
            return
        tx.edit_message(message.id, event.text, self.clock())
        if message.direction == "out":
            jobs.append(
                self._customer_job(
                    tx, message, "customer.edit", f"cedit:{message.id}:{time.time()}"
                )
            )

    def _staff_delete(self, tx: Tx, event: StaffDelete, jobs: list[NewJob]) -> None:
        message = tx.message_by_ref(event.surface, event.ref, "origin")
        if message is None or message.deleted:
            return
        if self._refused_change(tx, event, message, "deletion", jobs):
            return
        tx.delete_message(message.id)
        if message.direction == "out":
            jobs.append(self._customer_job(tx, message, "customer.delete", f"cdel:{message.id}"))

    def _refused_change(
        self,
        tx: Tx,
        event: StaffEdit | StaffDelete,
        message: MessageRecord,
        what: str,
        jobs: list[NewJob],
    ) -> bool:
        """Refuse an edit or deletion by someone without the agent role (queue the
        explanation); True when refused."""
        role = staff_role(tx, self.settings, event.surface, event.author, stranger=event.stranger)
        if role >= Role.AGENT:
            return False
        thread = tx.thread(message.conversation_id, event.surface)
        if thread is None:
            return True
        deleted = isinstance(event, StaffDelete)
        refusal = Refusal(
            conversation=message.conversation_id,
            surface=event.surface,
            thread=thread,
            user=event.author,
            what=what,
            role=role,
            stranger=event.stranger,
            answer_to=event.event or event.ref,
            # Their own edit event where the surface has one: a Matrix edit may target another
            # member's message, which must not look failed.
            mark=None if deleted else event.event or event.ref,
        )
        jobs.extend(refusal_jobs(tx, self.settings, self.surfaces[event.surface], refusal))
        return True

    def _customer_job(self, tx: Tx, message: MessageRecord, kind: str, key: str) -> NewJob:
        """A row in the conversation's outgoing lane, after any send of the same message."""
        conversation = tx.conversation(message.conversation_id)
        contact = tx.contact(conversation.contact_id) if conversation else None
        connector = self.connectors.get((message.platform, message.account))
        keys = connector.rate_keys(contact.chat_id) if connector and contact else ()
        return NewJob(
            kind=kind,
            idem_key=key,
            lane=f"c{message.conversation_id}:out",
            rate_keys=keys,
            payload={"conv": message.conversation_id, "msg": message.id},
        )

    # -- helpers for the handlers ---------------------------------------------------------

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
            found = await self.db.run_read(lambda conn: Tx(conn).thread(conv_id, surface))
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

        def read(conn: Connection) -> tuple[ContactCard | None, ThreadRef | None]:
            tx = Tx(conn)
            conversation = tx.conversation(conv_id)
            previous = None
            if conversation is not None and conversation.previous_id is not None:
                previous = tx.thread(conversation.previous_id, surface.name)
            return tx.card(conv_id), previous

        card, previous = await self.db.run_read(read)
        if card is None:
            return None
        if previous is not None:
            card = replace(card, previous_thread_url=await surface.permalink(previous))
        return card


# -- outbox handlers ------------------------------------------------------------------------


def _message_and_contact(
    tx: Tx, message_id: MessageId
) -> tuple[MessageRecord | None, ContactRecord | None]:
    message = tx.message(message_id)
    conversation = tx.conversation(message.conversation_id) if message else None
    contact = tx.contact(conversation.contact_id) if conversation else None
    return message, contact


class _Handler:
    """Shared defaults: no coalescing, and a failure is recorded with its reason."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.p = pipeline

    def coalesce(self, head: Job, following: Sequence[Job]) -> int:
        return 0

    async def failed(self, jobs: Sequence[Job], error: PermanentError) -> Completion:
        return Completion([j.id for j in jobs], failed_reason=str(error))


class _OpenThread(_Handler):
    async def run(self, jobs: Sequence[Job]) -> Completion:
        [job] = jobs
        conv = ConversationId(job.payload["conv"])
        surface = self.p.surface(job.payload["surface"])
        existing = await self.p.thread(conv, surface.name)
        if existing is not None:
            return Completion([job.id])
        channel = job.payload.get("channel")
        if job.attempts:
            # Attempted before a crash or a timeout: the root may be in the channel already.
            found = await surface.find_thread(channel, str(job.id))
            if found is not None:
                self.p.remember_thread(conv, surface.name, found)
                return Completion([job.id], threads=[(conv, surface.name, found)])
        card = await self.p.card(conv, surface)
        if card is None:
            return Completion([job.id], failed_reason="the conversation no longer exists")
        thread = await surface.open_thread(card, channel, marker=str(job.id))
        self.p.remember_thread(conv, surface.name, thread)
        return Completion([job.id], threads=[(conv, surface.name, thread)])


class _Mirror(_Handler):
    """Customer messages into the thread: joined while a backlog waits, within the platform's
    size limit; a text past it is posted in pieces; a loss is told in the thread."""

    def coalesce(self, head: Job, following: Sequence[Job]) -> int:
        if head.payload.get("files") or head.attempts:
            return 0
        surface = self.p.surface(head.payload["surface"])
        limit = self.p.settings.slack.coalesce_max - 1
        author = head.payload["author"]
        # Joined only while the post stays under the platform's size limit: past it (Slack's
        # 40,000 characters, a Matrix event's 64 KiB) the whole post is refused. Sizes add up
        # text by text (escaping and JSON encoding go character by character), so each
        # message is measured once rather than the whole joined post again for every one.
        empty = surface.post_size(MirrorPost(author=author, text=""))
        size = surface.post_size(MirrorPost(author=author, text=_post_text(head)))
        count = 0
        for job in following[:limit]:
            if job.kind != "staff.post" or job.payload.get("files") or job.attempts:
                break
            if job.payload.get("origin") or head.payload.get("origin"):
                break  # a staff member's words stay under their own name
            size += surface.post_size(MirrorPost(author=author, text="\n" + _post_text(job)))
            size -= empty
            if size > surface.post_limit:
                break
            count += 1
        return count

    async def run(self, jobs: Sequence[Job]) -> Completion:
        head = jobs[0]
        conv = ConversationId(head.payload["conv"])
        surface = self.p.surface(head.payload["surface"])
        thread = await self.p.thread(conv, surface.name)
        opened: list[tuple[ConversationId, SurfaceName, ThreadRef]] = []
        if thread is None:
            # No open job went ahead in this lane: the conversation's first messages were not
            # shown (a rule kept them out, or the contact was blocked). Open it now.
            card = await self.p.card(conv, surface)
            if card is None:
                return Completion(
                    [j.id for j in jobs], failed_reason="the conversation no longer exists"
                )
            channel = self.p.route(surface.name, card.platform, card.account or "")
            marker = f"open-c{conv}"
            earlier = await surface.find_thread(channel, marker) if head.attempts else None
            thread = earlier or await surface.open_thread(card, channel, marker=marker)
            self.p.remember_thread(conv, surface.name, thread)
            opened.append((conv, surface.name, thread))
        if head.attempts:
            # This row was attempted before a crash or a timeout: it may be in the thread already.
            found = await surface.find_post(thread, str(head.id))
            if found is not None:
                log.info("outbox %s was already posted as %s; not posting again", head.id, found)
                return Completion(
                    [head.id],
                    threads=opened,
                    refs=[(surface.name, found, "mirror", head.payload["msg"])],
                )
        post = await self._post_of(jobs)
        if len(jobs) > 1:
            try:
                ref = await surface.post(thread, post)
            except TooLarge as exc:
                # The platform counts differently: show each message on its own, cut smaller.
                log.info("outbox staff.post %s refused as too large (%s); one by one", head.id, exc)
                return await self._one_by_one(surface, thread, jobs, opened)
            return Completion(
                [j.id for j in jobs],
                threads=opened,
                refs=[(surface.name, ref, "mirror", MessageId(j.payload["msg"])) for j in jobs],
            )
        resume = head.attempts > 0
        ref = await post_in_pieces(surface, thread, post, surface.post_limit, resume=resume)
        return Completion(
            [head.id], threads=opened, refs=[(surface.name, ref, "mirror", head.payload["msg"])]
        )

    async def _post_of(self, jobs: Sequence[Job]) -> MirrorPost:
        """One post showing `jobs` (several only when text alone)."""
        head = jobs[0]
        files = []
        origin = head.payload.get("origin")
        for f in head.payload.get("files") or []:
            if origin:  # a file staff attached on the other surface
                files.append(await self.p.surface(origin).fetch(_attachment(f)))
                continue
            connector = self.p.connector(head.payload["platform"], head.payload["account"])
            files.append(await connector.fetch(_attachment(f)))
        text = "\n".join(_post_text(j) for j in jobs)
        if files and not head.payload["text"]:
            text = ""
        chat = head.payload.get("chat")
        return MirrorPost(
            author=head.payload["author"],
            text=text,
            files=tuple(files),
            marker=",".join(str(j.id) for j in jobs),
            customer=f"{head.payload['platform']}_{chat}" if chat and not origin else None,
        )

    async def _one_by_one(
        self,
        surface: StaffSurface,
        thread: ThreadRef,
        jobs: Sequence[Job],
        opened: list[tuple[ConversationId, SurfaceName, ThreadRef]],
    ) -> Completion:
        """Each of `jobs` in its own post(s); the ones that still fail are told in the thread."""
        refs: list[tuple[SurfaceName, StaffMessageRef, str, MessageId]] = []
        lost: list[Job] = []
        reason = ""
        for job in jobs:
            post = await self._post_of([job])
            try:
                ref = await post_in_pieces(surface, thread, post, surface.post_limit, resume=False)
            except PermanentError as exc:
                lost.append(job)
                reason = exc.reason
                log.warning("outbox staff.post %s failed for good: %s", job.id, exc)
                continue
            refs.append((surface.name, ref, "mirror", MessageId(job.payload["msg"])))
        if len(lost) == len(jobs):
            raise PermanentError("mirror_failed", reason)
        lost_ids = [j.id for j in lost]

        def record_lost(tx: Tx) -> list[NewJob]:
            tx.finish(lost_ids, time.time(), f"not shown: {reason}"[:500])
            return []

        return Completion(
            [j.id for j in jobs],
            threads=opened,
            refs=refs,
            jobs=[self._lost_notice(lost, reason)] if lost else [],
            also=[record_lost] if lost else [],
        )

    def _lost_notice(self, lost: Sequence[Job], reason: str) -> NewJob:
        """The thread's notice that `lost` messages could not be shown there, and why."""
        head = lost[0]
        who = head.payload.get("author") or "the customer"
        count = len(lost)
        text = (
            f"{count} message{'s' if count != 1 else ''} from {who} could not be shown here:"
            f" {reason}"
        )
        return self.p._notice_job(
            head.payload["conv"], SurfaceName(head.payload["surface"]), f"lost:{head.id}", text
        )

    async def failed(self, jobs: Sequence[Job], error: PermanentError) -> Completion:
        return Completion(
            [j.id for j in jobs],
            failed_reason=str(error),
            jobs=[self._lost_notice(jobs, error.reason)],
        )


def _post_text(job: Job) -> str:
    """What a mirror row shows in the thread as text."""
    return mirror_text(job.payload["text"], job.payload.get("files") or [])


def _shown_text(messages: Sequence[MessageRecord]) -> str:
    """What a mirror post of stored messages shows as text, one line per message."""
    return "\n".join(mirror_text(m.text, m.attachments) for m in messages)


class _Card(_Handler):
    async def run(self, jobs: Sequence[Job]) -> Completion:
        [job] = jobs
        conv = ConversationId(job.payload["conv"])
        surface = self.p.surface(job.payload["surface"])
        thread = await self.p.thread(conv, surface.name)
        card = await self.p.card(conv, surface)
        if thread is not None and card is not None:
            await surface.update_root(thread, card)
        return Completion([job.id])


class _MirrorEdit(_Handler):
    async def run(self, jobs: Sequence[Job]) -> Completion:
        [job] = jobs
        surface = self.p.surface(job.payload["surface"])
        message_id = MessageId(job.payload["msg"])

        def read(conn: Connection) -> list[tuple[StaffMessageRef, list[MessageRecord]]]:
            tx = Tx(conn)
            return [
                (ref, tx.messages_behind(surface.name, ref))
                for s, ref in tx.refs_of(message_id, "mirror")
                if s == surface.name
            ]

        posts = await self.p.db.run_read(read)
        for n, (ref, shown) in enumerate(posts):
            if not shown:
                continue
            edited = any(m.edited for m in shown)
            post = MirrorPost(author=shown[0].author or "", text=_shown_text(shown), edited=edited)
            if surface.post_size(post) <= surface.post_limit:
                try:
                    await surface.edit_post(ref, post)
                    continue
                except TooLarge:
                    pass
            # Too long to show in place (joined with other messages, or grown by the edit, past
            # the platform's size limit): the edited message follows in the thread instead.
            thread = await self.p.thread(shown[0].conversation_id, surface.name)
            mine = [m for m in shown if m.id == message_id] or shown
            again = MirrorPost(
                author=post.author,
                text="(edited) " + _shown_text(mine),
                marker=f"edit{job.id}-{n}",
            )
            if thread is not None:
                await post_in_pieces(
                    surface, thread, again, surface.post_limit, resume=job.attempts > 0
                )
        return Completion([job.id])


class _Mark(_Handler):
    async def run(self, jobs: Sequence[Job]) -> Completion:
        [job] = jobs
        surface = self.p.surface(job.payload["surface"])
        await surface.mark(
            StaffMessageRef(job.payload["ref"]), DeliveryStatus(job.payload["status"])
        )
        return Completion([job.id])


class _Notice(_Handler):
    async def run(self, jobs: Sequence[Job]) -> Completion:
        [job] = jobs
        surface = self.p.surface(job.payload["surface"])
        thread = await self.p.thread(ConversationId(job.payload["conv"]), surface.name)
        if thread is None:
            raise TransientError("the conversation's thread is not open yet")
        await surface.notice(thread, job.payload["text"])
        return Completion([job.id])


class _Tell(_Handler):
    async def run(self, jobs: Sequence[Job]) -> Completion:
        [job] = jobs
        p = job.payload
        surface = self.p.surface(p["surface"])
        await surface.tell(
            ThreadRef(p["thread"]),
            StaffUserId(p["user"]) if p.get("user") else None,
            StaffMessageRef(p["ref"]),
            p["text"],
        )
        return Completion([job.id])


class _Send(_Handler):
    async def run(self, jobs: Sequence[Job]) -> Completion:
        [job] = jobs
        p = job.payload
        connector = self.p.connector(p["platform"], p["account"])
        # Replies come from a surface; the bridge's own confirmations have none.
        surface = self.p.surface(p["surface"]) if p.get("surface") else None
        loaded: list[FileData] = []
        for f in p.get("files") or []:
            if f.get("rule_file") is not None:  # a file a rule (or a bot) answers with
                file_id = int(f["rule_file"])
                found = await self.p.db.run_read(partial(rules_store.load_file, file_id=file_id))
                if found is None:
                    raise PermanentError("file_gone", "the rule's file no longer exists")
                loaded.append(found)
            elif surface is not None:
                loaded.append(await surface.fetch(_attachment(f)))
        files = tuple(loaded)
        template = p.get("template")
        last_in = p.get("last_in")
        external = await self.p.deliver(
            connector,
            OutboundMessage(
                platform=Platform(p["platform"]),
                account=AccountId(p["account"]),
                chat_id=ChatId(p["chat"]),
                text=p["text"],
                files=files,
                template=await self._template(connector, template) if template else None,
                last_inbound_at=datetime.fromtimestamp(last_in, UTC) if last_in else None,
                idempotency_key=job.idem_key,
            ),
        )
        message_id = MessageId(p["msg"])
        key = early_key(p["platform"], p["account"], external)
        marks = []
        if surface is not None and p.get("ref"):
            marks.append(
                self.p._mark_job(
                    p["conv"],
                    surface.name,
                    StaffMessageRef(p["ref"]),
                    DeliveryStatus.SENT,
                    message_id,
                )
            )
        return Completion(
            [job.id],
            statuses=[MessageStatusWrite(message_id, DeliveryStatus.SENT.value, external)],
            jobs=marks,
            also=[
                lambda tx: self.p.webhooks.message_status(tx, message_id, "sent"),
                lambda tx: self._early(tx, message_id, key),
            ],
        )

    async def _template(self, connector: Connector, spec: Mapping[str, Any]) -> TemplateCall:
        """The template call, with the language looked up when the agent named none."""
        language = spec.get("language") or ""
        if not language:
            known = [t for t in await connector.templates() if t.name == spec["name"]]
            approved = [t for t in known if t.status.upper() == "APPROVED"] or known
            if not approved:
                raise PermanentError(
                    "132001", f"no template named {spec['name']} is known for this number"
                )
            language = approved[0].language
        return TemplateCall(name=spec["name"], language=language, params=tuple(spec["params"]))

    def _early(self, tx: Tx, message_id: MessageId, key: str) -> list[NewJob]:
        """Apply a status the platform reported before the send's answer was recorded."""
        found = tx.take_early_statuses([key])
        message = tx.message(message_id) if found else None
        if message is None:
            return []
        early = json.loads(found[key])
        return self.p._apply_status(
            tx,
            message,
            DeliveryStatus(early["status"]),
            early.get("code"),
            early.get("reason"),
            bool(early.get("opted_out")),
        )

    async def failed(self, jobs: Sequence[Job], error: PermanentError) -> Completion:
        [job] = jobs
        p = job.payload
        follow: list[NewJob] = []
        surface = SurfaceName(p.get("surface") or "")
        message_id = MessageId(p["msg"])
        if surface in self.p.surfaces:
            if p.get("ref"):
                follow.append(
                    self.p._mark_job(
                        p["conv"],
                        surface,
                        StaffMessageRef(p["ref"]),
                        DeliveryStatus.FAILED,
                        message_id,
                    )
                )
            if isinstance(error, WindowClosed):
                follow.append(
                    self.p._window_job(
                        p["conv"], surface, p["platform"], p["account"], message_id, error.reason
                    )
                )
            else:
                follow.append(
                    self.p._notice_job(
                        p["conv"], surface, f"fail:{p['msg']}", f"not delivered: {error.reason}"
                    )
                )
        also: list[Callable[[Tx], Sequence[NewJob]]] = [
            lambda tx: self.p.webhooks.message_status(tx, message_id, DeliveryStatus.FAILED.value)
        ]
        if isinstance(error, OptedOut):
            conv = ConversationId(p["conv"])

            def opt_out(tx: Tx) -> list[NewJob]:
                conversation = tx.conversation(conv)
                if conversation is None:
                    return []
                return self.p._opt_out(tx, conversation.contact_id, conv, "platform refusal")

            also.append(opt_out)
        return Completion(
            [job.id],
            statuses=[
                MessageStatusWrite(
                    message_id, DeliveryStatus.FAILED.value, None, error.code, error.reason
                )
            ],
            jobs=follow,
            failed_reason=str(error),
            also=also,
        )


class _Tombstone(_Handler):
    """After a contact's data was erased: clear the thread, leaving a tombstone."""

    async def run(self, jobs: Sequence[Job]) -> Completion:
        [job] = jobs
        surface = self.p.surface(job.payload["surface"])
        await surface.erase_thread(ThreadRef(job.payload["thread"]), job.payload["text"])
        return Completion([job.id])


class _WindowNotice(_Handler):
    """Explain a reply that was not sent, listing the approved templates that could be."""

    async def run(self, jobs: Sequence[Job]) -> Completion:
        [job] = jobs
        p = job.payload
        surface = self.p.surface(p["surface"])
        thread = await self.p.thread(ConversationId(p["conv"]), surface.name)
        if thread is None:
            raise TransientError("the conversation's thread is not open yet")
        text = f"Not sent: {p['reason']}"
        connector = self.p.connectors.get((Platform(p["platform"]), AccountId(p["account"])))
        templates = await connector.templates() if connector is not None else []
        approved = [t for t in templates if t.status.upper() == "APPROVED"]
        if approved:
            lines = []
            for t in approved[:15]:
                body = (t.body or "").replace("\n", " ")
                body = body if len(body) <= 80 else body[:79] + "…"
                count = t.param_count
                params = f", {count} parameter{'s' if count != 1 else ''}" if count else ""
                lines.append(f"• {t.name}:{t.language}{params}: {body}")
            more = f"\n…and {len(approved) - 15} more" if len(approved) > 15 else ""
            text += (
                "\nApproved templates you can send instead:\n"
                + "\n".join(lines)
                + more
                + "\nSend one by replying in this thread:"
                + " !template send <name>:<language> <parameter>…"
            )
        elif p["platform"] == "whatsapp":
            text += (
                "\nNo approved message templates are known for this number (set"
                " business_account_id in [whatsapp] to list them); a template is the only way to"
                " reach the customer until they write again."
            )
        await surface.notice(thread, text)
        return Completion([job.id])


class _CustomerChange(_Handler):
    """Apply a staff member's edit or deletion to the message the customer received."""

    def __init__(self, pipeline: Pipeline, *, delete: bool) -> None:
        super().__init__(pipeline)
        self.delete = delete

    async def run(self, jobs: Sequence[Job]) -> Completion:
        [job] = jobs
        message, contact = await self.p.db.run_read(
            lambda conn: _message_and_contact(Tx(conn), MessageId(job.payload["msg"]))
        )
        if message is None or contact is None or message.external_id is None:
            return Completion([job.id])  # never delivered: nothing to change on the platform
        connector = self.p.connector(message.platform, message.account)
        external = ExternalMessageId(message.external_id)
        if self.delete:
            await connector.delete(contact.chat_id, external)
        elif not message.deleted:
            await connector.edit(contact.chat_id, external, message.text)
        return Completion([job.id])
