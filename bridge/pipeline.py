"""The one place that decides.

Inbound: platform events → deduplicate → contact → conversation → message → outbox rows
(open the thread, mirror the message, refresh the card), all in the writer's transaction.
Staff: a message in a thread → note, thread action, or a reply queued for the customer.
The outbox handlers at the bottom carry the rows out through connectors and surfaces.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import shlex
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import Connection

from bridge.config import Settings
from bridge.errors import OptedOut, PermanentError, TransientError, WindowClosed
from bridge.outbox import JobHandler
from bridge.protocols import Connector, StaffSurface
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
    InboundEdit,
    InboundEvent,
    InboundMessage,
    MediaKind,
    MessageId,
    MirrorPost,
    OutboundMessage,
    Platform,
    RateLimit,
    StaffDelete,
    StaffEdit,
    StaffEvent,
    StaffMessage,
    StaffMessageRef,
    StatusUpdate,
    SurfaceName,
    TemplateCall,
    ThreadRef,
    WatermarkUpdate,
)
from storage import (
    BatchKind,
    Completion,
    ContactRecord,
    ConversationRecord,
    Database,
    Job,
    MessageRecord,
    MessageStatusWrite,
    NewJob,
    Tx,
    Writer,
)

log = logging.getLogger(__name__)

UNKNOWN_THREAD_WAIT = 2.0


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


TEMPLATE_USAGE = (
    "Usage: !template <name>[:<language>] <parameter>… (quote a parameter that has spaces),"
    ' e.g. !template order_update:en_US "Anna Schmidt" 12345'
)


def _early_key(platform: str, account: str, external_id: str) -> str:
    key = f"early:{platform}:{account}:{external_id}"
    if len(key) > 128:  # the kv key column's size
        key = "early:" + hashlib.sha256(key.encode()).hexdigest()
    return key


def mirror_text(text: str, attachments: Sequence[Mapping[str, Any]]) -> str:
    """What a customer message shows in the thread when it has no text of its own."""
    if text or not attachments:
        return text
    return ", ".join(f"[{a.get('filename') or a['kind']}]" for a in attachments)


class Pipeline:
    """Decides what happens to every inbound and staff event, and carries out outbox rows."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        writer: Writer,
        *,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.settings = settings
        self.db = db
        self.writer = writer
        self.clock = clock
        self.connectors: dict[tuple[Platform, AccountId], Connector] = {}
        self.surfaces: dict[SurfaceName, StaffSurface] = {}
        self._threads: dict[tuple[ConversationId, SurfaceName], ThreadRef] = {}
        # Who is who, for the inbound hot path: (platform, account, chat) → (contact, open
        # conversation). Only on SQLite, where this process is the database's only writer;
        # entries are added after their transaction commits and dropped when a conversation
        # closes, so a hit is always true.
        self._known: dict[tuple[Platform, AccountId, ChatId], tuple[ContactId, ConversationId]] = {}
        self._known_by_contact: dict[ContactId, tuple[Platform, AccountId, ChatId]] = {}
        self._remember = db.dialect == "sqlite"
        self._inbound: BatchKind[Sequence[InboundEvent], None] = BatchKind(
            "pipeline.inbound", self._store_inbound
        )
        self._staff: BatchKind[StaffEvent, bool] = BatchKind("pipeline.staff", self._store_staff)

    # -- wiring ---------------------------------------------------------------------------

    def add_connector(self, connector: Connector) -> None:
        """Route a platform account's messages through this pipeline."""
        self.connectors[(connector.platform, connector.account)] = connector

    def add_surface(self, surface: StaffSurface) -> None:
        """Mirror every conversation into this staff surface."""
        self.surfaces[surface.name] = surface

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
            "staff.window": _WindowNotice(self),
            "customer.send": _Send(self),
            "customer.edit": _CustomerChange(self, delete=False),
            "customer.delete": _CustomerChange(self, delete=True),
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
        found = tx.messages_by_external(status.platform, status.account, [status.external_id])
        message = found.get(status.external_id)
        if message is None:
            # The platform can report before the send's answer is recorded: keep it for then.
            early = {
                "status": status.status.value,
                "code": status.code,
                "reason": status.reason,
                "opted_out": status.opted_out,
            }
            key = _early_key(status.platform, status.account, status.external_id)
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
    ) -> list[NewJob]:
        """Record an opt-out (or an opt-in again) and tell the thread."""
        changed = tx.set_opt_out(contact_id, None if back_in else self.clock(), source)
        if not changed:
            return []
        text = (
            f"The customer opted in again ({source}); replies reach them again."
            if back_in
            else f"The customer opted out ({source}): nothing is sent to them until they opt in"
            " again (for SMS, by texting START)."
        )
        jobs: list[NewJob] = []
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
                    "opt_in_source": f"deep link: {payload}" if payload else "first message",
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
        for m in fresh:
            if m.consent is not None:
                cid = contact_of[m.chat_id]
                jobs.extend(
                    self._opt_out(
                        tx,
                        cid,
                        conv_of[cid],
                        f"replied {m.text.strip().upper()[:20]}",
                        back_in=m.consent is Consent.START,
                    )
                )
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
                        },
                    )
                )
            touched: set[int] = {int(row["conversation_id"]) for row in rows} - new_conv_ids
            for touched_id in sorted(touched):
                jobs.append(self._card_job(touched_id, surface_name, window))

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
        conversation = tx.conversation(conv_id)
        contact = tx.contact(conversation.contact_id) if conversation else None
        if conversation is None or contact is None:
            return True
        text = event.text.strip()
        action = text.split()[0].lower() if text.startswith("!") and text.split() else None
        if action in ("!close", "!reopen"):
            self._thread_action(tx, event, conversation, action, jobs)
            return True
        template: TemplateCall | None = None
        if action == "!template":
            template = self._template_call(text)
            if template is None:
                for surface in self.surfaces:
                    jobs.append(
                        self._notice_job(conv_id, surface, f"action:{event.ref}", TEMPLATE_USAGE)
                    )
                return True
        prefix = self.settings.bridge.note_prefix
        is_note = bool(prefix) and text.startswith(prefix)
        connector = self.connectors.get((contact.platform, contact.account))
        refusal: str | None = None
        if not is_note:
            if contact.opted_out_at is not None:
                refusal = (
                    "the customer opted out"
                    f" on {contact.opted_out_at:%Y-%m-%d %H:%M} UTC; nothing is sent to them"
                    " until they opt in again"
                )
            elif connector is not None and template is None:
                refusal = connector.window_refusal(contact.last_seen, self.clock())
        [message_id] = tx.insert_messages(
            [
                {
                    "conversation_id": conv_id,
                    "direction": "note" if is_note else "out",
                    "platform": contact.platform,
                    "account": contact.account,
                    "external_id": None,
                    "author": event.author_name or event.author,
                    "text": event.text,
                    "attachments": [_attachment_dict(a) for a in event.attachments] or None,
                    "sent_at": event.at,
                    "status": None if is_note else DeliveryStatus.QUEUED.value,
                }
            ]
        )
        tx.add_refs([(event.surface, event.ref, "origin", message_id)])
        if is_note:
            return True
        if refusal is not None:
            tx.write_statuses(
                [
                    MessageStatusWrite(
                        message_id, DeliveryStatus.FAILED.value, None, "refused", refusal
                    )
                ]
            )
            for surface in self.surfaces:
                jobs.append(
                    self._mark_job(conv_id, surface, event.ref, DeliveryStatus.FAILED, message_id)
                )
                jobs.append(
                    self._window_job(
                        conv_id, surface, contact.platform, contact.account, message_id, refusal
                    )
                )
            return True
        payload: dict[str, Any] = {
            "conv": conv_id,
            "msg": message_id,
            "platform": contact.platform,
            "account": contact.account,
            "chat": contact.chat_id,
            "text": event.text,
            "files": [_attachment_dict(a) for a in event.attachments],
            "surface": event.surface,
            "ref": event.ref,
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
        return True

    @staticmethod
    def _template_call(text: str) -> TemplateCall | None:
        """`!template name[:language] param…` (quote parameters that have spaces)."""
        try:
            words = shlex.split(text)
        except ValueError:
            return None
        if len(words) < 2:
            return None
        name, _, language = words[1].partition(":")
        if not name:
            return None
        return TemplateCall(name=name, language=language, params=tuple(words[2:]))

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

    def _thread_action(
        self,
        tx: Tx,
        event: StaffMessage,
        conversation: ConversationRecord,
        action: str,
        jobs: list[NewJob],
    ) -> None:
        who = event.author_name or event.author
        if action == "!close":
            changed = self._close(tx, conversation.id)
            text = (
                f"Conversation closed by {who}. The customer's next message opens a new thread."
                if changed
                else "This conversation is already closed."
            )
        else:
            others = tx.open_conversations([conversation.contact_id])
            other = others.get(conversation.contact_id)
            if other is not None and other.id != conversation.id:
                text = "The customer has a newer open conversation; reply there instead."
                changed = False
            else:
                changed = tx.set_conversation_status(
                    conversation.id, ConversationStatus.OPEN, self.clock()
                )
                text = f"Conversation reopened by {who}." if changed else "It is open already."
        for surface in self.surfaces:
            if changed:
                jobs.append(self._card_job(conversation.id, surface, None))
            jobs.append(self._notice_job(conversation.id, surface, f"action:{event.ref}", text))

    def _staff_edit(self, tx: Tx, event: StaffEdit, jobs: list[NewJob]) -> None:
        message = tx.message_by_ref(event.surface, event.ref, "origin")
        if message is None or message.text == event.text or message.deleted:
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
        tx.delete_message(message.id)
        if message.direction == "out":
            jobs.append(self._customer_job(tx, message, "customer.delete", f"cdel:{message.id}"))

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
    def coalesce(self, head: Job, following: Sequence[Job]) -> int:
        if head.payload.get("files") or head.attempts:
            return 0
        limit = self.p.settings.slack.coalesce_max - 1
        count = 0
        for job in following[:limit]:
            if job.kind != "staff.post" or job.payload.get("files") or job.attempts:
                break
            count += 1
        return count

    async def run(self, jobs: Sequence[Job]) -> Completion:
        head = jobs[0]
        conv = ConversationId(head.payload["conv"])
        surface = self.p.surface(head.payload["surface"])
        thread = await self.p.thread(conv, surface.name)
        if thread is None:
            raise TransientError("the conversation's thread is not open yet")
        if head.attempts:
            # This row was attempted before a crash or a timeout: it may be in the thread already.
            found = await surface.find_post(thread, str(head.id))
            if found is not None:
                log.info("outbox %s was already posted as %s; not posting again", head.id, found)
                return Completion(
                    [head.id], refs=[(surface.name, found, "mirror", head.payload["msg"])]
                )
        files = []
        for f in head.payload.get("files") or []:
            connector = self.p.connector(head.payload["platform"], head.payload["account"])
            files.append(await connector.fetch(_attachment(f)))
        text = "\n".join(mirror_text(j.payload["text"], j.payload.get("files") or []) for j in jobs)
        if files and not head.payload["text"]:
            text = ""
        post = MirrorPost(
            author=head.payload["author"],
            text=text,
            files=tuple(files),
            marker=",".join(str(j.id) for j in jobs),
        )
        ref = await surface.post(thread, post)
        return Completion(
            [j.id for j in jobs],
            refs=[(surface.name, ref, "mirror", MessageId(j.payload["msg"])) for j in jobs],
        )


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
        for ref, shown in posts:
            if not shown:
                continue
            text = "\n".join(mirror_text(m.text, m.attachments) for m in shown)
            edited = any(m.edited for m in shown)
            await surface.edit_post(
                ref, MirrorPost(author=shown[0].author or "", text=text, edited=edited)
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


class _Send(_Handler):
    async def run(self, jobs: Sequence[Job]) -> Completion:
        [job] = jobs
        p = job.payload
        connector = self.p.connector(p["platform"], p["account"])
        surface = self.p.surface(p["surface"])
        files = tuple([await surface.fetch(_attachment(f)) for f in p.get("files") or []])
        template = p.get("template")
        last_in = p.get("last_in")
        external = await connector.send(
            OutboundMessage(
                platform=Platform(p["platform"]),
                account=AccountId(p["account"]),
                chat_id=ChatId(p["chat"]),
                text=p["text"],
                files=files,
                template=await self._template(connector, template) if template else None,
                last_inbound_at=datetime.fromtimestamp(last_in, UTC) if last_in else None,
                idempotency_key=job.idem_key,
            )
        )
        message_id = MessageId(p["msg"])
        key = _early_key(p["platform"], p["account"], external)
        return Completion(
            [job.id],
            statuses=[MessageStatusWrite(message_id, DeliveryStatus.SENT.value, external)],
            jobs=[
                self.p._mark_job(
                    p["conv"],
                    surface.name,
                    StaffMessageRef(p["ref"]),
                    DeliveryStatus.SENT,
                    message_id,
                )
            ],
            also=[lambda tx: self._early(tx, message_id, key)],
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
        surface = SurfaceName(p["surface"])
        message_id = MessageId(p["msg"])
        if surface in self.p.surfaces:
            follow.append(
                self.p._mark_job(
                    p["conv"], surface, StaffMessageRef(p["ref"]), DeliveryStatus.FAILED, message_id
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
        also: list[Callable[[Tx], Sequence[NewJob]]] = []
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
                + "\nSend one by replying in this thread: !template <name>:<language> <parameter>…"
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
