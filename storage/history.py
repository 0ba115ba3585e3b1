"""A contact's conversations and a conversation's messages, page by page (id order)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from bridge.types import ContactId, ConversationId, MessageId
from storage.records import Repository
from storage.tables import conversations, messages


@dataclass(frozen=True, slots=True)
class ConversationLine:
    """A conversation with its state and times."""

    id: ConversationId
    contact_id: ContactId
    status: str
    opened_at: datetime
    closed_at: datetime | None
    previous_id: ConversationId | None
    last_inbound_at: datetime | None


@dataclass(frozen=True, slots=True)
class MessageLine:
    """A stored message with its delivery state."""

    id: MessageId
    conversation_id: ConversationId
    direction: str  # in, out or note
    platform: str
    account: str
    external_id: str | None
    author: str | None
    text: str
    attachments: tuple[dict[str, Any], ...]
    sent_at: datetime
    edited_at: datetime | None
    deleted: bool
    status: str | None
    error_code: str | None
    error_reason: str | None


def _conversation(row: Any) -> ConversationLine:
    return ConversationLine(
        id=ConversationId(row.id),
        contact_id=ContactId(row.contact_id),
        status=row.status,
        opened_at=row.opened_at,
        closed_at=row.closed_at,
        previous_id=ConversationId(row.previous_id) if row.previous_id is not None else None,
        last_inbound_at=row.last_inbound_at,
    )


def _message(row: Any) -> MessageLine:
    return MessageLine(
        id=MessageId(row.id),
        conversation_id=ConversationId(row.conversation_id),
        direction=row.direction,
        platform=row.platform,
        account=row.account,
        external_id=row.external_id,
        author=row.author,
        text=row.text,
        attachments=tuple(row.attachments or ()),
        sent_at=row.sent_at,
        edited_at=row.edited_at,
        deleted=bool(row.deleted),
        status=row.status,
        error_code=row.error_code,
        error_reason=row.error_reason,
    )


class History(Repository):
    """Conversations and messages as they were stored, read page by page."""

    def conversation(self, conversation_id: int) -> ConversationLine | None:
        """One conversation by id."""
        row = self.conn.execute(
            select(conversations).where(conversations.c.id == conversation_id)
        ).first()
        return _conversation(row) if row is not None else None

    def conversations_of(
        self, contact_id: int, *, after: int | None, limit: int
    ) -> list[ConversationLine]:
        """A contact's conversations, oldest first, those after id `after`."""
        query = select(conversations).where(conversations.c.contact_id == contact_id)
        if after is not None:
            query = query.where(conversations.c.id > after)
        rows = self.conn.execute(query.order_by(conversations.c.id).limit(limit))
        return [_conversation(r) for r in rows]

    def message(self, message_id: int) -> MessageLine | None:
        """One message by id."""
        row = self.conn.execute(select(messages).where(messages.c.id == message_id)).first()
        return _message(row) if row is not None else None

    def messages_of(
        self, conversation_id: int, *, after: int | None, limit: int
    ) -> list[MessageLine]:
        """A conversation's messages, oldest first, those after id `after`."""
        query = select(messages).where(messages.c.conversation_id == conversation_id)
        if after is not None:
            query = query.where(messages.c.id > after)
        rows = self.conn.execute(query.order_by(messages.c.id).limit(limit))
        return [_message(r) for r in rows]
