"""Inbound: platform events → deduplicate → contact → conversation → message → outbox rows
(open the thread, mirror the message, refresh the card), all in the writer's transaction."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from bridge.config import Settings
from bridge.jobs import StaffEditJob, StaffPostJob
from bridge.metrics import Metrics
from bridge.pipeline.attachments import attachment_dict
from bridge.pipeline.automation import Arrival, apply_rules
from bridge.pipeline.chatbot import KEYWORD_MAX, Chatbot
from bridge.pipeline.directory import Directory
from bridge.pipeline.policy import Policy
from bridge.pipeline.reactions import quotes, remember_quotes, store_reaction
from bridge.pipeline.status import Status
from bridge.types import (
    AccountId,
    ChatId,
    Consent,
    ContactId,
    ConversationId,
    ConversationStatus,
    InboundEdit,
    InboundEvent,
    InboundMessage,
    InboundReaction,
    MessageId,
    Platform,
    StatusUpdate,
    WatermarkUpdate,
)
from bridge.webhooks import SCOPE_CONTACT, WebhookEvents
from storage import ContactRecord, NewJob, Tx
from storage.subscriptions import BlockRecord, fold

# A customer's message this soon after a broadcast reached them counts as a reply to it.
REPLY_TO_BROADCAST_WITHIN = timedelta(days=7)


@dataclass(slots=True)
class _Batch:
    """One platform account's new messages, as the inbound steps learn about them."""

    platform: Platform
    account: AccountId
    now: datetime
    fresh: list[InboundMessage]
    contact_of: dict[str, ContactId] = field(default_factory=dict)
    conv_of: dict[ContactId, ConversationId] = field(default_factory=dict)
    contacts: dict[str, ContactRecord] = field(default_factory=dict)
    new_contacts: list[dict[str, Any]] = field(default_factory=list)
    new_conv_ids: set[ConversationId] = field(default_factory=set)
    rows: list[dict[str, Any]] = field(default_factory=list)
    ids: list[MessageId] = field(default_factory=list)
    per_contact: dict[ContactId, list[InboundMessage]] = field(default_factory=dict)
    blocked: set[ContactId] = field(default_factory=set)
    blocks: dict[ContactId, BlockRecord] = field(default_factory=dict)


class Inbound:
    """Stores what the connectors receive and queues what it causes."""

    def __init__(
        self,
        settings: Settings,
        directory: Directory,
        chatbot: Chatbot,
        policy: Policy,
        status: Status,
        webhooks: WebhookEvents,
        metrics: Metrics,
        clock: Callable[[], datetime],
        *,
        remember: bool,
    ) -> None:
        self.settings = settings
        self.directory = directory
        self.chatbot = chatbot
        self.policy = policy
        self.status = status
        self.webhooks = webhooks
        self.metrics = metrics
        self.clock = clock
        # Who is who, for the inbound hot path: (platform, account, chat) → (contact, open
        # conversation). Only on SQLite, where this process is the database's only writer;
        # entries are added after their transaction commits and dropped when a conversation
        # closes, so a hit is always true.
        self._known: dict[tuple[Platform, AccountId, ChatId], tuple[ContactId, ConversationId]] = {}
        self._known_by_contact: dict[ContactId, tuple[Platform, AccountId, ChatId]] = {}
        self._remember = remember

    def store(self, tx: Tx, batches: Sequence[Sequence[InboundEvent]]) -> list[None]:
        """Store a batch of platform events and queue what they cause (the writer's call)."""
        now = self.clock()
        messages: dict[tuple[Platform, AccountId], list[InboundMessage]] = defaultdict(list)
        edits: list[InboundEdit] = []
        reactions: list[InboundReaction] = []
        statuses: list[StatusUpdate] = []
        watermarks: list[WatermarkUpdate] = []
        for events in batches:
            for event in events:
                if isinstance(event, InboundMessage):
                    messages[(event.platform, event.account)].append(event)
                elif isinstance(event, InboundEdit):
                    edits.append(event)
                elif isinstance(event, InboundReaction):
                    reactions.append(event)
                elif isinstance(event, WatermarkUpdate):
                    watermarks.append(event)
                else:
                    statuses.append(event)
        jobs: list[NewJob] = []
        for (platform, account), group in messages.items():
            self.store_messages(tx, platform, account, group, now, jobs)
        for edit in edits:
            self.store_edit(tx, edit, jobs)
        for reaction in reactions:
            store_reaction(tx, self.directory, reaction, jobs)
        for status in statuses:
            self.status.store_status(tx, status, jobs)
        for mark in watermarks:
            self.status.store_watermark(tx, mark, jobs)
        tx.enqueue(jobs, time.time())
        return [None] * len(batches)

    def store_messages(
        self,
        tx: Tx,
        platform: Platform,
        account: AccountId,
        group: list[InboundMessage],
        now: datetime,
        jobs: list[NewJob],
    ) -> None:
        """Store one platform account's messages and queue what they cause."""
        existing = tx.messages_by_external(platform, account, [m.external_id for m in group])
        fresh: list[InboundMessage] = []
        seen: set[str] = set(existing)
        for m in group:  # a platform retry, or the same update twice in one batch
            if m.external_id not in seen:
                seen.add(m.external_id)
                fresh.append(m)
        if not fresh:
            return
        batch = _Batch(platform, account, now, fresh)
        unknown = self._contacts(tx, batch)
        self._conversations(tx, batch, unknown)
        self._insert(tx, batch)
        # What consent words and keywords cause (notices, confirmations) goes after the jobs
        # that open the thread and mirror the message: a notice ahead of its thread's opening
        # in the same lane would hold that lane (and the thread) back until it gave up.
        consent_jobs = self._consent(tx, batch)
        self._events(tx, batch, jobs)
        swallowed = self._answers(tx, batch, consent_jobs)
        if batch.blocked or swallowed:
            self._keep_out(batch, swallowed)
        self._staff_rows(tx, batch, jobs)
        jobs.extend(consent_jobs)

    def _contacts(self, tx: Tx, batch: _Batch) -> list[ChatId]:
        """Find (or add) the senders' contacts; returns the chat ids not remembered."""
        platform, account, fresh = batch.platform, batch.account, batch.fresh
        contact_of, conv_of = batch.contact_of, batch.conv_of
        chat_ids = list(dict.fromkeys(m.chat_id for m in fresh))
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
                joined = self.chatbot.keyword_tables(tx)[1].get(fold(first.text))
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
                    "opt_in_at": batch.now,
                }
            )
        for record in tx.insert_contacts(new_contacts):
            contacts[record.chat_id] = record
        for chat_id in unknown:
            contact_of[chat_id] = contacts[chat_id].id
        batch.contacts = contacts
        batch.new_contacts = new_contacts
        return unknown

    def _conversations(self, tx: Tx, batch: _Batch, unknown: list[ChatId]) -> None:
        """Find (or open) each contact's conversation, and remember who is who after commit."""
        platform, account = batch.platform, batch.account
        contact_of, conv_of = batch.contact_of, batch.conv_of
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
                    "opened_at": batch.now,
                    "previous_id": previous.get(cid),
                }
                for cid in missing
            ]
        )
        batch.new_conv_ids = {c.id for c in created}
        for c in created:
            conv_of[c.contact_id] = c.id
        if self._remember and unknown:
            learned = {
                (platform, account, ch): (contact_of[ch], conv_of[contact_of[ch]]) for ch in unknown
            }
            tx.after_commit.append(lambda: self._learn(learned))

    def _insert(self, tx: Tx, batch: _Batch) -> None:
        """Store the messages, and count them on their contacts and conversations."""
        platform, account = batch.platform, batch.account
        contact_of, conv_of = batch.contact_of, batch.conv_of
        rows: list[dict[str, Any]] = []
        for m in batch.fresh:
            attachments = [attachment_dict(a) for a in m.attachments]
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
        batch.ids = tx.insert_messages(rows)
        batch.rows = rows
        stored = len(rows)
        tx.after_commit.append(lambda: self.metrics.received(platform, stored))
        per_contact: dict[ContactId, list[InboundMessage]] = defaultdict(list)
        for m in batch.fresh:
            per_contact[contact_of[m.chat_id]].append(m)
        batch.per_contact = per_contact
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

    def _consent(self, tx: Tx, batch: _Batch) -> list[NewJob]:
        """Opt-outs and opt-ins the messages ask for (STOP, START and the like)."""
        consent_jobs: list[NewJob] = []
        for m in batch.fresh:
            if m.consent is not None:
                cid = batch.contact_of[m.chat_id]
                consent_jobs.extend(
                    self.policy.opt_out(
                        tx,
                        cid,
                        batch.conv_of[cid],
                        f"replied {m.text.strip().upper()[:20]}",
                        back_in=m.consent is Consent.START,
                        cause=f"msg:{m.external_id}",
                    )
                )
        return consent_jobs

    def _events(self, tx: Tx, batch: _Batch, jobs: list[NewJob]) -> None:
        """Who is blocked; webhook events; new contacts into their platform's channels."""
        contact_of, conv_of, fresh, now = batch.contact_of, batch.conv_of, batch.fresh, batch.now
        all_ids = list(batch.per_contact)
        blocks = tx.subscriptions.blocks_of(all_ids)
        blocked = {cid for cid, entry in blocks.items() if entry.blocks("in", now)}
        batch.blocked, batch.blocks = blocked, blocks
        # Webhook events: a new contact's opt-in, then the messages (but a blocked contact's).
        for new in batch.new_contacts:
            record = batch.contacts[str(new["chat_id"])]
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
                    (batch.ids[i], conv_of[contact_of[m.chat_id]], contact_of[m.chat_id], m)
                    for i, m in enumerate(fresh)
                    if contact_of[m.chat_id] not in blocked
                ],
            )
        )
        signed_up = {str(c["chat_id"]) for c in batch.new_contacts}
        if signed_up:
            bound = tx.subscriptions.channels_for_platform(batch.platform)
            for address in signed_up:
                for listed in bound:
                    tx.subscriptions.join(
                        listed.id,
                        contact_of[address],
                        f"signed up on {batch.platform}",
                        now,
                    )

    def _answers(self, tx: Tx, batch: _Batch, consent_jobs: list[NewJob]) -> set[str]:
        """Keywords, chatbot rules and replies to broadcasts; returns the external ids of the
        messages a rule keeps out of the thread."""
        contact_of, conv_of, fresh = batch.contact_of, batch.conv_of, batch.fresh
        platform, account, now, blocked = batch.platform, batch.account, batch.now, batch.blocked
        # Every answer of the batch (keywords' and rules') is judged and stored together.
        answers = self.chatbot.answers(
            tx, platform, account, [c for c in batch.per_contact if c not in blocked], batch.blocks
        )
        handled = self.chatbot.keywords(
            tx, platform, account, fresh, contact_of, conv_of, blocked, now, answers
        )
        # Chatbot rules, for what is neither blocked nor a consent word or channel keyword.
        arrivals = [
            Arrival(m, int(batch.ids[i]), contact_of[m.chat_id], conv_of[contact_of[m.chat_id]])
            for i, m in enumerate(fresh)
            if contact_of[m.chat_id] not in blocked and m.external_id not in handled
        ]
        swallowed_at = apply_rules(self.chatbot, tx, platform, account, arrivals, now, answers)
        consent_jobs.extend(answers.flush())
        # Answers to a newsletter land in the conversation like any message, marked as such.
        for replier, broadcast_id in tx.broadcasts.replied(
            [a.contact_id for i, a in enumerate(arrivals) if i not in swallowed_at],
            now,
            REPLY_TO_BROADCAST_WITHIN,
        ):
            consent_jobs.extend(
                self.directory.notice_job(
                    conv_of[ContactId(replier)],
                    surface,
                    f"bcreply:{broadcast_id}:{replier}",
                    f"This is a reply to broadcast #{broadcast_id}.",
                )
                for surface in self.directory.surfaces
            )
        return {arrivals[i].message.external_id for i in swallowed_at}

    def _keep_out(self, batch: _Batch, swallowed: set[str]) -> None:
        """Stored, but not shown to staff: the thread, the mirror and the card stay as they
        are (a blocked contact, or a message a rule keeps out, e.g. spam)."""
        contact_of, conv_of, fresh = batch.contact_of, batch.conv_of, batch.fresh
        keep = [
            i
            for i, m in enumerate(fresh)
            if contact_of[m.chat_id] not in batch.blocked and m.external_id not in swallowed
        ]
        shown_convs = {conv_of[contact_of[fresh[i].chat_id]] for i in keep}
        batch.new_conv_ids = {c for c in batch.new_conv_ids if c in shown_convs}
        batch.fresh = [fresh[i] for i in keep]
        batch.ids = [batch.ids[i] for i in keep]
        batch.rows = [batch.rows[i] for i in keep]

    def _staff_rows(self, tx: Tx, batch: _Batch, jobs: list[NewJob]) -> None:
        """Open the new conversations' threads, mirror the messages, refresh the cards."""
        platform, account, new_conv_ids = batch.platform, batch.account, batch.new_conv_ids
        window = int(time.time() // self.settings.bridge.card_refresh_s)
        senders = [batch.contact_of[m.chat_id] for m in batch.fresh]
        quoted = quotes(tx, batch.fresh, senders) if self.directory.surfaces else []
        remember_quotes(tx, batch.ids, [quote for quote, _ in quoted])
        for surface_name, surface in self.directory.surfaces.items():
            channel = self.directory.route(surface_name, platform, account)
            post_keys = surface.rate_keys("post", channel)
            for conv_id in sorted(new_conv_ids):
                jobs.append(self.directory.open_job(conv_id, surface_name, channel, post_keys))
            shown = zip(batch.fresh, batch.ids, batch.rows, quoted, strict=True)
            for message, message_id, row, (quote, answers) in shown:
                post = StaffPostJob(
                    conversation=ConversationId(row["conversation_id"]),
                    surface=surface_name,
                    message=message_id,
                    author=message.profile.display_name,
                    text=message.text,
                    files=tuple(row["attachments"] or ()),
                    platform=platform,
                    account=account,
                    chat=message.chat_id,
                    quote=quote,
                    answers=answers,
                    styled=message.styled,
                )
                jobs.append(post.new_job(post_keys))
            touched: set[int] = {int(row["conversation_id"]) for row in batch.rows} - new_conv_ids
            for touched_id in sorted(touched):
                jobs.append(self.directory.card_job(touched_id, surface_name, window))

    def store_edit(self, tx: Tx, edit: InboundEdit, jobs: list[NewJob]) -> None:
        """Record a customer's edit of a message and show it in the threads."""
        found = tx.messages_by_external(edit.platform, edit.account, [edit.external_id])
        message = found.get(edit.external_id)
        if message is None or message.direction != "in":
            return
        if message.text == edit.text and edit.styled is None:
            return  # the same words (an edit that only styles them still shows)
        tx.edit_message(message.id, edit.text, edit.edited_at)
        for surface_name, surface in self.directory.surfaces.items():
            shown = StaffEditJob(
                conversation=message.conversation_id,
                surface=surface_name,
                message=message.id,
                styled=edit.styled,
            )
            rate_keys = surface.rate_keys("update", None)
            jobs.append(shown.new_job(rate_keys, edited_at=edit.edited_at))

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
