"""Outbox handlers that reach the customer: send a message (or a template), change or delete
what they were sent, and, in the thread, explain a reply that could not be sent or clear a
thread whose contact was erased."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime

from bridge.errors import OptedOut, PermanentError, TransientError, WindowClosed
from bridge.handlers.base import Handler
from bridge.jobs import (
    CustomerDeleteJob,
    CustomerEditJob,
    CustomerSendJob,
    StaffTombstoneJob,
    StaffWindowJob,
)
from bridge.pipeline.attachments import attachment
from bridge.pipeline.directory import Directory
from bridge.pipeline.policy import Policy
from bridge.pipeline.status import Status
from bridge.protocols import Connector, CostsToSend, StaffSurface
from bridge.types import (
    DeliveryStatus,
    ExternalMessageId,
    FileData,
    MessageId,
    OutboundMessage,
    StaffMessageRef,
    SurfaceName,
    TemplateCall,
    ThreadRef,
)
from bridge.webhooks import WebhookEvents
from storage import (
    Completion,
    ContactRecord,
    Job,
    MessageRecord,
    MessageStatusWrite,
    NewJob,
    Tx,
    early_key,
)


def message_and_contact(
    tx: Tx, message_id: MessageId
) -> tuple[MessageRecord | None, ContactRecord | None]:
    message = tx.message(message_id)
    conversation = tx.conversation(message.conversation_id) if message else None
    contact = tx.contact(conversation.contact_id) if conversation else None
    return message, contact


class CustomerSend(Handler):
    """Send a reply, a template or the bridge's own answer to the customer."""

    def __init__(
        self, directory: Directory, webhooks: WebhookEvents, status: Status, policy: Policy
    ) -> None:
        super().__init__(directory)
        self.webhooks = webhooks
        self.status = status
        self.policy = policy

    async def run(self, jobs: Sequence[Job]) -> Completion:
        [job] = jobs
        send = CustomerSendJob.from_job(job)
        connector = self.directory.connector(send.platform, send.account)
        # Replies come from a surface; the bridge's own confirmations have none.
        surface = self.directory.surface(send.surface) if send.surface else None
        files = await self._files(send, surface)
        template = send.template
        last_in = send.last_inbound
        outbound = OutboundMessage(
            platform=send.platform,
            account=send.account,
            chat_id=send.chat,
            text=send.text,
            files=files,
            template=await self._template(connector, template) if template else None,
            last_inbound_at=datetime.fromtimestamp(last_in, UTC) if last_in else None,
            idempotency_key=job.idem_key,
        )
        external = await self.directory.deliver(connector, outbound)
        message_id = send.message
        key = early_key(send.platform, send.account, external)
        marks = []
        if surface is not None and send.ref:
            marks.append(
                self.directory.mark_job(
                    send.conversation,
                    surface.name,
                    StaffMessageRef(send.ref),
                    DeliveryStatus.SENT,
                    message_id,
                )
            )
            # What the reply cost, after its sent mark, when the platform bills more than one
            # unit for it (an SMS in several segments or in UCS-2).
            cost = connector.send_cost(outbound) if isinstance(connector, CostsToSend) else None
            if cost:
                notice = self.directory.notice_job
                marks.append(notice(send.conversation, surface.name, f"cost:{message_id}", cost))
        return Completion(
            [job.id],
            statuses=[MessageStatusWrite(message_id, DeliveryStatus.SENT.value, external)],
            jobs=marks,
            also=[
                lambda tx: self.webhooks.message_status(tx, message_id, "sent"),
                lambda tx: self._early(tx, message_id, key),
            ],
        )

    async def _files(
        self, send: CustomerSendJob, surface: StaffSurface | None
    ) -> tuple[FileData, ...]:
        """The send's files: a rule's (or a bot's) from the database, staff's from the surface."""
        loaded: list[FileData] = []
        for f in send.files:
            if f.get("rule_file") is not None:  # a file a rule (or a bot) answers with
                found = await self._rule_file(int(f["rule_file"]))
                if found is None:
                    raise PermanentError("file_gone", "the rule's file no longer exists")
                loaded.append(found)
            elif surface is not None:
                loaded.append(await surface.fetch(attachment(f)))
        return tuple(loaded)

    async def _rule_file(self, file_id: int) -> FileData | None:
        return await self.directory.db.read_tx(lambda tx: tx.rules.load_file(file_id))

    async def _template(self, connector: Connector, template: TemplateCall) -> TemplateCall:
        """The template call, with the language looked up when the agent named none."""
        if template.language:
            return template
        known = [t for t in await connector.templates() if t.name == template.name]
        approved = [t for t in known if t.status.upper() == "APPROVED"] or known
        if not approved:
            raise PermanentError(
                "132001", f"no template named {template.name} is known for this number"
            )
        return replace(template, language=approved[0].language)

    def _early(self, tx: Tx, message_id: MessageId, key: str) -> list[NewJob]:
        """Apply a status the platform reported before the send's answer was recorded."""
        found = tx.take_early_statuses([key])
        message = tx.message(message_id) if found else None
        if message is None:
            return []
        early = json.loads(found[key])
        return self.status.apply_status(
            tx,
            message,
            DeliveryStatus(early["status"]),
            early.get("code"),
            early.get("reason"),
            bool(early.get("opted_out")),
        )

    async def failed(self, jobs: Sequence[Job], error: PermanentError) -> Completion:
        [job] = jobs
        send = CustomerSendJob.from_job(job)
        follow: list[NewJob] = []
        surface = SurfaceName(send.surface or "")
        conv, message_id = send.conversation, send.message
        if surface in self.directory.surfaces:
            if send.ref:
                follow.append(
                    self.directory.mark_job(
                        conv, surface, StaffMessageRef(send.ref), DeliveryStatus.FAILED, message_id
                    )
                )
            if isinstance(error, WindowClosed):
                follow.append(
                    self.directory.window_job(
                        conv, surface, send.platform, send.account, message_id, error.reason
                    )
                )
            else:
                follow.append(
                    self.directory.notice_job(
                        conv, surface, f"fail:{message_id}", f"not delivered: {error.reason}"
                    )
                )
        also: list[Callable[[Tx], Sequence[NewJob]]] = [
            lambda tx: self.webhooks.message_status(tx, message_id, DeliveryStatus.FAILED.value)
        ]
        if isinstance(error, OptedOut):

            def opt_out(tx: Tx) -> list[NewJob]:
                conversation = tx.conversation(conv)
                if conversation is None:
                    return []
                return self.policy.opt_out(tx, conversation.contact_id, conv, "platform refusal")

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


class Tombstone(Handler):
    """After a contact's data was erased: clear the thread, leaving a tombstone."""

    async def run(self, jobs: Sequence[Job]) -> Completion:
        [job] = jobs
        tombstone = StaffTombstoneJob.from_job(job)
        surface = self.directory.surface(tombstone.surface)
        await surface.erase_thread(ThreadRef(tombstone.thread), tombstone.text)
        return Completion([job.id])


class WindowNotice(Handler):
    """Explain a reply that was not sent, listing the approved templates that could be."""

    async def run(self, jobs: Sequence[Job]) -> Completion:
        [job] = jobs
        notice = StaffWindowJob.from_job(job)
        surface = self.directory.surface(notice.surface)
        thread = await self.directory.thread(notice.conversation, surface.name)
        if thread is None:
            raise TransientError("the conversation's thread is not open yet")
        text = f"Not sent: {notice.reason}"
        connector = self.directory.connectors.get((notice.platform, notice.account))
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
        elif notice.platform == "whatsapp":
            text += (
                "\nNo approved message templates are known for this number (set"
                " business_account_id in [whatsapp] to list them); a template is the only way to"
                " reach the customer until they write again."
            )
        await surface.notice(thread, text)
        return Completion([job.id])


class CustomerChange(Handler):
    """Apply a staff member's edit or deletion to the message the customer received."""

    def __init__(self, directory: Directory, *, delete: bool) -> None:
        super().__init__(directory)
        self.delete = delete

    async def run(self, jobs: Sequence[Job]) -> Completion:
        [job] = jobs
        change = (CustomerDeleteJob if self.delete else CustomerEditJob).from_job(job)
        message, contact = await self.directory.db.read_tx(
            lambda tx: message_and_contact(tx, change.message)
        )
        if message is None or contact is None or message.external_id is None:
            return Completion([job.id])  # never delivered: nothing to change on the platform
        connector = self.directory.connector(message.platform, message.account)
        external = ExternalMessageId(message.external_id)
        if self.delete:
            await connector.delete(contact.chat_id, external)
        elif not message.deleted:
            await connector.edit(contact.chat_id, external, message.text)
        return Completion([job.id])
