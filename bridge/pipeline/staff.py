"""Staff: a message in a thread → note, or a reply queued for the customer; edits and
deletions carried to the customer; and what commands and the REST API ask of a conversation
(send, close, reopen, notify)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from bridge.config import Settings
from bridge.errors import NotAllowed
from bridge.jobs import CustomerDeleteJob, CustomerEditJob, CustomerSendJob, StaffPostJob
from bridge.pipeline.attachments import attachment_dict
from bridge.pipeline.directory import Directory
from bridge.pipeline.policy import Policy, Refusal, refusal_jobs, staff_role
from bridge.protocols import Connector
from bridge.types import (
    Attachment,
    ContactId,
    ConversationId,
    ConversationStatus,
    DeliveryStatus,
    MessageId,
    Role,
    StaffDelete,
    StaffEdit,
    StaffEvent,
    StaffMessage,
    StaffMessageRef,
    SurfaceName,
    TemplateCall,
)
from bridge.webhooks import WebhookEvents
from storage import ContactRecord, MessageRecord, MessageStatusWrite, NewJob, Tx, Writer


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


@dataclass(frozen=True, slots=True, kw_only=True)
class _Written:
    """What staff wrote in a conversation, on its way to the threads and the customer."""

    conv_id: ConversationId
    contact: ContactRecord
    connector: Connector | None
    surface: SurfaceName
    staffed: bool
    ref: StaffMessageRef
    author: str
    text: str
    attachments: Sequence[Attachment]
    template: TemplateCall | None
    is_note: bool


class Staff:
    """Stores what staff do in threads and queues what it causes."""

    def __init__(
        self,
        settings: Settings,
        directory: Directory,
        policy: Policy,
        webhooks: WebhookEvents,
        writer: Writer,
        clock: Callable[[], datetime],
        forget_contact: Callable[[ContactId], None],
    ) -> None:
        self.settings = settings
        self.directory = directory
        self.policy = policy
        self.webhooks = webhooks
        self.writer = writer
        self.clock = clock
        self.forget_contact = forget_contact

    async def close(self, conversation_id: ConversationId) -> bool:
        """Close a conversation (the customer's next message opens a new one); False if closed."""

        def close(tx: Tx) -> bool:
            return self.close_in(tx, conversation_id)

        return await self.writer.call(close)

    def close_in(self, tx: Tx, conversation_id: ConversationId) -> bool:
        """Close a conversation in the caller's transaction; False if it was closed already."""
        conversation = tx.conversation(conversation_id)
        if conversation is None:
            return False
        changed = tx.set_conversation_status(
            conversation_id, ConversationStatus.CLOSED, self.clock()
        )
        if changed:
            tx.after_commit.append(lambda: self.forget_contact(conversation.contact_id))
        return changed

    def store(self, tx: Tx, events: Sequence[StaffEvent]) -> list[bool]:
        """Store what staff did in threads (the writer's call); False for an unknown thread."""
        jobs: list[NewJob] = []
        known = [True] * len(events)
        for index, event in enumerate(events):
            if isinstance(event, StaffMessage):
                known[index] = self.staff_message(tx, event, jobs)
            elif isinstance(event, StaffEdit):
                self.staff_edit(tx, event, jobs)
            elif isinstance(event, StaffDelete):
                self.staff_delete(tx, event, jobs)
        tx.enqueue(jobs, time.time())
        return known

    def staff_message(self, tx: Tx, event: StaffMessage, jobs: list[NewJob]) -> bool:
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
            jobs.extend(
                refusal_jobs(tx, self.settings, self.directory.surfaces[event.surface], refusal)
            )
            return True
        self.staff_reply(
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

    def staff_reply(
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
        prefix = self.settings.bridge.note_prefix
        is_note = note if note is not None else bool(prefix) and text.strip().startswith(prefix)
        written = _Written(
            conv_id=conv_id,
            contact=contact,
            connector=self.directory.connectors.get((contact.platform, contact.account)),
            surface=surface,
            staffed=surface in self.directory.surfaces,
            ref=ref,
            author=author,
            text=text,
            attachments=attachments,
            template=template,
            is_note=is_note,
        )
        refusal: str | None = None
        if not is_note:
            refusal = self.policy.refusal(tx, contact, written.connector, template is not None)
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
                    "attachments": [attachment_dict(a) for a in attachments] or None,
                    "sent_at": at,
                    "status": None if is_note else DeliveryStatus.QUEUED.value,
                }
            ]
        )
        if written.staffed:
            tx.add_refs([(surface, ref, "origin", message_id)])
        self._echo(written, message_id, jobs)
        if is_note:
            return message_id
        if refusal is not None:
            self._refused_send(tx, written, message_id, refusal, jobs)
            return message_id
        jobs.append(self._send_job(written, message_id))
        return message_id

    def _echo(self, written: _Written, message_id: MessageId, jobs: list[NewJob]) -> None:
        """A team on both surfaces sees in each thread what was written in the other."""
        conv_id, contact, surface = written.conv_id, written.contact, written.surface
        author, text, is_note = written.author, written.text, written.is_note
        for name, other in self.directory.surfaces.items():
            if name == surface:
                continue
            echo = StaffPostJob(
                conversation=conv_id,
                surface=name,
                message=message_id,
                author=f"{author} ({'note' if is_note else 'reply'} in {surface})",
                text=text,
                files=tuple(attachment_dict(a) for a in written.attachments),
                origin=surface,
            )
            route = self.directory.route(name, contact.platform, contact.account)
            jobs.append(echo.new_job(other.rate_keys("post", route)))

    def _refused_send(
        self, tx: Tx, written: _Written, message_id: MessageId, refusal: str, jobs: list[NewJob]
    ) -> None:
        """A reply that may not be sent: marked failed, and the threads say why."""
        conv_id, contact = written.conv_id, written.contact
        tx.write_statuses(
            [MessageStatusWrite(message_id, DeliveryStatus.FAILED.value, None, "refused", refusal)]
        )
        jobs.extend(self.webhooks.message_status(tx, message_id, DeliveryStatus.FAILED.value))
        for name in self.directory.surfaces:
            if name == written.surface:
                jobs.append(
                    self.directory.mark_job(
                        conv_id, name, written.ref, DeliveryStatus.FAILED, message_id
                    )
                )
            jobs.append(
                self.directory.window_job(
                    conv_id, name, contact.platform, contact.account, message_id, refusal
                )
            )

    def _send_job(self, written: _Written, message_id: MessageId) -> NewJob:
        """The row that sends a reply to the customer."""
        contact, connector, staffed = written.contact, written.connector, written.staffed
        send = CustomerSendJob(
            conversation=written.conv_id,
            message=message_id,
            platform=contact.platform,
            account=contact.account,
            chat=contact.chat_id,
            text=written.text,
            files=tuple(attachment_dict(a) for a in written.attachments),
            surface=written.surface if staffed else None,
            ref=written.ref if staffed else None,
            last_inbound=contact.last_seen.timestamp() if contact.last_seen else None,
            template=written.template,
        )
        return send.new_job(connector.rate_keys(contact.chat_id) if connector else ())

    # -- what commands and the REST API ask of a conversation ------------------------------

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
            self.staff_reply(
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
        connector = self.directory.connectors.get((contact.platform, contact.account))
        if connector is None:
            reason = f"the bridge has no {contact.platform} connector for account {contact.account}"
            return Queued(contact_id, None, None, reason, "no_connector")
        refused = self.policy.refused(tx, contact, connector, template is not None)
        if refused is not None:
            return Queued(contact_id, None, None, *refused)
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
            for name, surface in self.directory.surfaces.items():
                channel = self.directory.route(name, contact.platform, contact.account)
                keys = surface.rate_keys("post", channel)
                jobs.append(self.directory.open_job(conversation.id, name, channel, keys))
        message_id = self.staff_reply(
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
                changed = self.close_in(tx, conversation)
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
                tx.enqueue(
                    [
                        self.directory.card_job(conversation, s, None)
                        for s in self.directory.surfaces
                    ],
                    0,
                )
            return text

        return await self.writer.call(write)

    async def refresh_card(self, conversation: ConversationId) -> None:
        """Redraw the conversation's contact card on every surface (after a staff change)."""
        jobs = [self.directory.card_job(conversation, s, None) for s in self.directory.surfaces]
        await self.writer.call(lambda tx: tx.enqueue(jobs, time.time()))

    async def unblocked(self, contact_id: ContactId) -> None:
        """After an inbound block is lifted: open the thread its messages were kept out of."""

        def write(tx: Tx) -> None:
            conversation = tx.open_conversations([contact_id]).get(contact_id)
            contact = tx.contact(contact_id)
            if conversation is None or contact is None:
                return
            jobs = []
            for name, surface in self.directory.surfaces.items():
                if tx.thread(conversation.id, name) is not None:
                    continue
                channel = self.directory.route(name, contact.platform, contact.account)
                keys = surface.rate_keys("post", channel)
                jobs.append(self.directory.open_job(conversation.id, name, channel, keys))
            tx.enqueue(jobs, time.time())

        await self.writer.call(write)

    async def notify(
        self, conversation: ConversationId, text: str, *, key: str, skip: SurfaceName | None = None
    ) -> None:
        """Post a notice from the bridge into the conversation's threads (but `skip`'s)."""
        jobs = [
            self.directory.notice_job(conversation, s, key, text)
            for s in self.directory.surfaces
            if s != skip
        ]
        await self.writer.call(lambda tx: tx.enqueue(jobs, time.time()))

    def staff_edit(self, tx: Tx, event: StaffEdit, jobs: list[NewJob]) -> None:
        """Store a staff member's edit; queue it for the customer when it was sent to them."""
        message = tx.message_by_ref(event.surface, event.ref, "origin")
        if message is None or message.text == event.text or message.deleted:
            return
        if self._refused_change(tx, event, message, "edit", jobs):
            return
        tx.edit_message(message.id, event.text, self.clock())
        if message.direction == "out":
            edit = CustomerEditJob(conversation=message.conversation_id, message=message.id)
            jobs.append(edit.new_job(self._customer_rate_keys(tx, message)))

    def staff_delete(self, tx: Tx, event: StaffDelete, jobs: list[NewJob]) -> None:
        """Store a staff member's deletion; delete what the customer was sent too."""
        message = tx.message_by_ref(event.surface, event.ref, "origin")
        if message is None or message.deleted:
            return
        if self._refused_change(tx, event, message, "deletion", jobs):
            return
        tx.delete_message(message.id)
        if message.direction == "out":
            deletion = CustomerDeleteJob(conversation=message.conversation_id, message=message.id)
            jobs.append(deletion.new_job(self._customer_rate_keys(tx, message)))

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
        jobs.extend(
            refusal_jobs(tx, self.settings, self.directory.surfaces[event.surface], refusal)
        )
        return True

    def _customer_rate_keys(self, tx: Tx, message: MessageRecord) -> tuple[str, ...]:
        """The rate keys of a change to what the customer was sent: their connector's."""
        conversation = tx.conversation(message.conversation_id)
        contact = tx.contact(conversation.contact_id) if conversation else None
        connector = self.directory.connectors.get((message.platform, message.account))
        return connector.rate_keys(contact.chat_id) if connector and contact else ()
