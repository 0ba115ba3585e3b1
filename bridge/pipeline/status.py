"""Delivery statuses the platforms report (sent, delivered, read, failed) and read watermarks:
recorded on the message and shown on the staff message it belongs to."""

from __future__ import annotations

import json

from bridge.metrics import Metrics
from bridge.pipeline.directory import Directory
from bridge.pipeline.policy import Policy
from bridge.types import DeliveryStatus, StatusUpdate, WatermarkUpdate
from bridge.webhooks import WebhookEvents
from storage import MessageRecord, MessageStatusWrite, NewJob, Tx, early_key


class Status:
    """Records what the platforms report of the messages the bridge sent."""

    def __init__(
        self, directory: Directory, policy: Policy, webhooks: WebhookEvents, metrics: Metrics
    ) -> None:
        self.directory = directory
        self.policy = policy
        self.webhooks = webhooks
        self.metrics = metrics

    def store_status(self, tx: Tx, status: StatusUpdate, jobs: list[NewJob]) -> None:
        """Record a status update (or keep it for a send whose answer is not recorded yet)."""
        if status.status is DeliveryStatus.FAILED:
            platform = status.platform
            tx.after_commit.append(lambda: self.metrics.delivery_failed(platform, "report"))
        found = tx.messages_by_external(status.platform, status.account, [status.external_id])
        message = found.get(status.external_id)
        if message is None and tx.broadcasts.apply_status(
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
                self.apply_status(
                    tx, message, status.status, status.code, status.reason, status.opted_out
                )
            )

    def apply_status(
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
            jobs.append(
                self.directory.mark_job(message.conversation_id, surface, ref, status, message.id)
            )
            if status is DeliveryStatus.FAILED:
                words = reason or "the platform reported a failure"
                platform = message.platform.capitalize() if message.platform != "sms" else "SMS"
                detail = f" ({platform} {code})" if code and code not in words else ""
                jobs.append(
                    self.directory.notice_job(
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
                    self.policy.opt_out(
                        tx, conversation.contact_id, conversation.id, "platform refusal"
                    )
                )
        return jobs

    def store_watermark(self, tx: Tx, mark: WatermarkUpdate, jobs: list[NewJob]) -> None:
        """Advance every message up to a read (or delivered) watermark."""
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
                    self.directory.mark_job(
                        message.conversation_id, surface, ref, mark.status, message.id
                    )
                )
