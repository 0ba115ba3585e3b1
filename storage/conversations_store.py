"""Statements on conversations, the card a thread shows, and where their staff threads are."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, func, select, update

from bridge.types import (
    AccountId,
    ChatId,
    ContactCard,
    ContactId,
    ConversationId,
    ConversationStatus,
    Platform,
    SurfaceName,
    ThreadRef,
)
from storage.records import (
    ConversationRecord,
    TxBase,
    conversation_record,
    sqlite_time,
)
from storage.tables import (
    blacklist,
    contacts,
    conversations,
    threads,
)


class ConversationQueries(TxBase):
    """Conversation and thread statements of `Tx`."""

    # -- conversations --------------------------------------------------------------------

    def open_conversations(
        self, contact_ids: Iterable[ContactId]
    ) -> dict[ContactId, ConversationRecord]:
        """The open conversation of each contact that has one."""
        ids = list(contact_ids)
        if not ids:
            return {}
        c = conversations.c
        result = self.conn.execute(
            select(c.id, c.contact_id, c.status, c.previous_id).where(
                conversations.c.contact_id.in_(ids),
                conversations.c.status == ConversationStatus.OPEN.value,
            )
        )
        return {ContactId(row.contact_id): conversation_record(row) for row in result}

    def last_conversation_ids(
        self, contact_ids: Iterable[ContactId]
    ) -> dict[ContactId, ConversationId]:
        """The newest conversation of each contact that had any."""
        ids = list(contact_ids)
        if not ids:
            return {}
        result = self.conn.execute(
            select(conversations.c.contact_id, func.max(conversations.c.id))
            .where(conversations.c.contact_id.in_(ids))
            .group_by(conversations.c.contact_id)
        )
        return {ContactId(row[0]): ConversationId(row[1]) for row in result}

    def insert_conversations(self, rows: list[dict[str, Any]]) -> list[ConversationRecord]:
        """Open conversations; return them in the order given."""
        if not rows:
            return []
        result = self.conn.execute(
            conversations.insert().returning(*conversations.c, sort_by_parameter_order=True), rows
        )
        return [conversation_record(row) for row in result]

    def touch_conversations(self, rows: list[dict[str, Any]]) -> None:
        """Record the time of each conversation's newest customer message."""
        if rows and self.dialect == "sqlite":
            self.conn.exec_driver_sql(
                "UPDATE conversations SET last_inbound_at = ? WHERE id = ?",
                [(sqlite_time(r["b_at"]), r["b_id"]) for r in rows],
            )
        elif rows:
            self.conn.execute(
                update(conversations)
                .where(conversations.c.id == bindparam("b_id"))
                .values(last_inbound_at=bindparam("b_at")),
                rows,
            )

    def set_conversation_status(
        self, conversation_id: ConversationId, status: ConversationStatus, at: datetime
    ) -> bool:
        """Open or close a conversation; False when it already had that status."""
        result = self.conn.execute(
            update(conversations)
            .where(conversations.c.id == conversation_id, conversations.c.status != status.value)
            .values(
                status=status.value,
                closed_at=at if status is ConversationStatus.CLOSED else None,
            )
        )
        return bool(result.rowcount)

    def conversation(self, conversation_id: ConversationId) -> ConversationRecord | None:
        """One conversation by id."""
        row = (
            self.conn.execute(select(conversations).where(conversations.c.id == conversation_id))
        ).first()
        return conversation_record(row) if row is not None else None

    def card(self, conversation_id: ConversationId) -> ContactCard | None:
        """What the thread's root message shows, as of now."""
        row = (
            self.conn.execute(
                select(conversations, contacts)
                .join(contacts, contacts.c.id == conversations.c.contact_id)
                .where(conversations.c.id == conversation_id)
            )
        ).first()
        if row is None:
            return None
        m = row._mapping
        block = self.conn.execute(
            select(blacklist.c.direction, blacklist.c.until).where(
                blacklist.c.contact_id == m[contacts.c.id]
            )
        ).first()
        return ContactCard(
            conversation_id=conversation_id,
            contact_id=ContactId(m[contacts.c.id]),
            display_name=m[contacts.c.display_name],
            username=m[contacts.c.username],
            platform=Platform(m[contacts.c.platform]),
            chat_id=ChatId(m[contacts.c.chat_id]),
            first_contact=m[contacts.c.first_seen],
            message_count=m[contacts.c.message_count],
            status=ConversationStatus(m[conversations.c.status]),
            opt_in_source=m[contacts.c.opt_in_source],
            account=AccountId(m[contacts.c.account]),
            opted_out=m[contacts.c.opted_out_at] is not None,
            assigned_to=m[contacts.c.assigned_to],
            blocked=block.direction if block is not None else None,
            blocked_until=block.until if block is not None else None,
        )

    # -- threads --------------------------------------------------------------------------

    def thread(self, conversation_id: ConversationId, surface: SurfaceName) -> ThreadRef | None:
        """The conversation's thread on a surface, once it exists."""
        value = self.conn.scalar(
            select(threads.c.thread_ref).where(
                threads.c.conversation_id == conversation_id, threads.c.surface == surface
            )
        )
        return ThreadRef(value) if value is not None else None

    def conversation_by_thread(
        self, surface: SurfaceName, thread: ThreadRef
    ) -> ConversationId | None:
        """Which conversation a staff thread belongs to."""
        value = self.conn.scalar(
            select(threads.c.conversation_id).where(
                threads.c.surface == surface, threads.c.thread_ref == thread
            )
        )
        return ConversationId(value) if value is not None else None

    # -- threads (writes) -----------------------------------------------------------------

    def add_threads(self, rows: Sequence[tuple[ConversationId, SurfaceName, ThreadRef]]) -> None:
        """Remember where conversations' threads are."""
        if rows:
            self.conn.execute(
                self._insert(threads).on_conflict_do_nothing(),
                [{"conversation_id": c, "surface": s, "thread_ref": t} for c, s, t in rows],
            )
