"""The bridge's own answers of one write batch (keyword confirmations, rule answers), together.

Whether each contact may be sent to is judged from state read once for the batch (the contacts'
whole rows and their blacklist entries, on the first answer), and the answers' message rows go
in with one multi-row insert when the batch is flushed. The outbox rows come out in the order
they were added, each answer's where it was asked for, so every conversation's rows keep the
order they had when each answer was written on its own.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bridge.jobs import CustomerSendJob
from bridge.pipeline.directory import Directory
from bridge.pipeline.policy import refused_now
from bridge.types import AccountId, ChatId, ContactId, ConversationId, DeliveryStatus, Platform
from storage import ContactRecord, NewJob, Tx
from storage.subscriptions import BlockRecord


@dataclass(slots=True)
class _Answer:
    """One answer waiting for its message row; its outbox rows once it has one."""

    conversation: ConversationId
    chat: ChatId
    text: str
    files: tuple[Mapping[str, Any], ...]
    cause: str
    notice: str | None
    rate_keys: tuple[str, ...]
    jobs: list[NewJob] = field(default_factory=list)


class AnswerBatch:
    """Answers to one platform account's customers within one transaction."""

    def __init__(
        self,
        tx: Tx,
        directory: Directory,
        platform: Platform,
        account: AccountId,
        now: datetime,
        contacts: Collection[ContactId] = (),
        blocks: Mapping[ContactId, BlockRecord] | None = None,
    ) -> None:
        """`contacts`: whom the batch may answer (read together on the first answer);
        `blocks`: their blacklist entries, when the caller has read them already."""
        self.tx = tx
        self.directory = directory
        self.platform = platform
        self.account = account
        self.now = now
        self.connector = directory.connectors.get((platform, account))
        self._wanted = set(contacts)
        self._contacts: dict[ContactId, ContactRecord] = {}
        self._blocks: dict[ContactId, BlockRecord] = dict(blocks or {})
        self._blocks_known: set[ContactId] = set(self._wanted) if blocks is not None else set()
        self._loaded: set[ContactId] = set()
        self._rate_keys: dict[ChatId, tuple[str, ...]] = {}
        self._items: list[NewJob | _Answer] = []

    def extend(self, jobs: Iterable[NewJob]) -> None:
        """Rows that go out between the answers, in this place."""
        self._items.extend(jobs)

    def answer(
        self,
        chat_id: ChatId,
        contact_id: ContactId,
        conv_id: ConversationId,
        text: str,
        cause: str,
        *,
        files: Sequence[Mapping[str, Any]] = (),
        notice: str | None = "",
    ) -> bool:
        """Answer a customer (shown to staff as `notice`: by default "Sent automatically:
        <text>", None for none); False when they may not be sent to (refused, no connector)."""
        contact = self._contact(contact_id)
        connector = self.connector
        if contact is None or connector is None:
            return False
        block = self._blocks.get(contact_id)
        if refused_now(contact, block, connector, False, self.now) is not None:
            return False  # e.g. SMS after STOP: the carrier answers for us, we may not send
        keys = self._rate_keys.get(chat_id)
        if keys is None:
            keys = self._rate_keys[chat_id] = tuple(connector.rate_keys(chat_id))
        self._items.append(_Answer(conv_id, chat_id, text, tuple(files), cause, notice, keys))
        return True

    def flush(self) -> list[NewJob]:
        """Store the answers (one insert for all) and return every row, in order."""
        items, self._items = self._items, []
        answers = [item for item in items if isinstance(item, _Answer)]
        if answers:
            self._write(answers)
        out: list[NewJob] = []
        for item in items:
            if isinstance(item, _Answer):
                out.extend(item.jobs)
            else:
                out.append(item)
        return out

    def _contact(self, contact_id: ContactId) -> ContactRecord | None:
        """The contact as refusals need it; the first call reads every contact of the batch at once
        (and its blacklist entry), so the answers cost no read each."""
        if contact_id not in self._loaded:
            ids = (self._wanted | {contact_id}) - self._loaded
            self._contacts.update(self.tx.contacts_by_ids(ids))
            if ids - self._blocks_known:
                self._blocks.update(self.tx.subscriptions.blocks_of(ids - self._blocks_known))
                self._blocks_known |= ids
            self._loaded |= ids
        return self._contacts.get(contact_id)

    def _write(self, answers: list[_Answer]) -> None:
        platform, account = self.platform, self.account
        ids = self.tx.insert_messages(
            [
                {
                    "conversation_id": a.conversation,
                    "direction": "out",
                    "platform": platform,
                    "account": account,
                    "external_id": None,
                    "author": "bridge",
                    "text": a.text,
                    "attachments": list(a.files) or None,
                    "sent_at": self.now,
                    "status": DeliveryStatus.QUEUED.value,
                }
                for a in answers
            ]
        )
        last_inbound = time.time()
        surfaces = list(self.directory.surfaces)
        for a, message_id in zip(answers, ids, strict=True):
            send = CustomerSendJob(
                conversation=a.conversation,
                message=message_id,
                platform=platform,
                account=account,
                chat=a.chat,
                text=a.text,
                files=a.files,
                automatic=True,
                last_inbound=last_inbound,
            )
            a.jobs.append(send.new_job(a.rate_keys, cause=a.cause))
            if a.notice is not None:
                shown = a.notice or f"Sent automatically: {a.text}"
                a.jobs.extend(
                    self.directory.notice_job(a.conversation, s, f"auto:{message_id}", shown)
                    for s in surfaces
                )
