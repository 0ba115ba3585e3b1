"""Statements on messages: batched inserts, edits, delivery statuses and staff-surface refs."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, or_, select, update

from bridge.types import (
    AccountId,
    ContactId,
    MessageId,
    Platform,
    StaffMessageRef,
    SurfaceName,
)
from storage.records import (
    STATUS_ORDER,
    MessageRecord,
    MessageStatusWrite,
    TxBase,
    message_record,
    sqlite_time,
)
from storage.tables import (
    conversations,
    messages,
    refs,
)


class MessageQueries(TxBase):
    """Message statements of `Tx`."""

    # -- messages -------------------------------------------------------------------------

    def messages_by_external(
        self, platform: Platform, account: AccountId, external_ids: Sequence[str]
    ) -> dict[str, MessageRecord]:
        """Stored messages of one platform account by the platform's ids."""
        if not external_ids:
            return {}
        if self.dialect == "sqlite":
            return self._messages_by_external_sqlite(platform, account, external_ids)
        result = self.conn.execute(
            select(messages).where(
                messages.c.platform == platform,
                messages.c.account == account,
                messages.c.external_id.in_(list(external_ids)),
            )
        )
        return {row.external_id: message_record(row) for row in result}

    def _messages_by_external_sqlite(
        self, platform: Platform, account: AccountId, external_ids: Sequence[str]
    ) -> dict[str, MessageRecord]:
        # Asked once per inbound batch, nearly always finding nothing: keep it cheap.
        marks = ",".join("?" * len(external_ids))
        found = self.conn.exec_driver_sql(
            f"SELECT id FROM messages WHERE platform = ? AND account = ? "
            f"AND external_id IN ({marks})",
            (platform, account, *external_ids),
        ).all()
        if not found:
            return {}
        result = self.conn.execute(select(messages).where(messages.c.id.in_([r[0] for r in found])))
        return {row.external_id: message_record(row) for row in result}

    def insert_messages(self, rows: list[dict[str, Any]]) -> list[MessageId]:
        """Store messages; return their ids in the order given."""
        if not rows:
            return []
        for row in rows:
            row.setdefault("deleted", False)
        if self.dialect == "sqlite":
            return self._insert_messages_sqlite(rows)
        result = self.conn.execute(
            messages.insert().returning(messages.c.id, sort_by_parameter_order=True), rows
        )
        return [MessageId(row[0]) for row in result]

    def _insert_messages_sqlite(self, rows: list[dict[str, Any]]) -> list[MessageId]:
        # The hot path of every inbound batch: plain tuples through the driver, ids assigned
        # here. Safe because SQLite has one writer: this transaction holds the write lock from
        # its first write on, and a clash would only roll the batch back to be retried.
        # Above the highest id ever handed out (AUTOINCREMENT keeps it in sqlite_sequence),
        # not just the highest there is: the ids of erased messages never come back.
        start = int(
            self.conn.exec_driver_sql(
                "SELECT max(coalesce((SELECT max(id) FROM messages), 0),"
                " coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'messages'), 0))"
            ).scalar_one()
        )
        params = []
        for offset, row in enumerate(rows, start=1):
            attachments = row.get("attachments")
            params.append(
                (
                    start + offset,
                    row["conversation_id"],
                    row["direction"],
                    row["platform"],
                    row["account"],
                    row.get("external_id"),
                    row.get("author"),
                    row["text"],
                    json.dumps(attachments) if attachments is not None else None,
                    sqlite_time(row["sent_at"]),
                    1 if row.get("deleted") else 0,
                    row.get("status"),
                )
            )
        self.conn.exec_driver_sql(
            "INSERT INTO messages (id, conversation_id, direction, platform, account, "
            "external_id, author, text, attachments, sent_at, deleted, status) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            params,
        )
        return [MessageId(start + offset) for offset in range(1, len(rows) + 1)]

    def message(self, message_id: MessageId) -> MessageRecord | None:
        """One message by id."""
        row = (self.conn.execute(select(messages).where(messages.c.id == message_id))).first()
        return message_record(row) if row is not None else None

    def messages(self, message_ids: Sequence[MessageId]) -> list[MessageRecord]:
        """Messages by id, oldest first."""
        result = self.conn.execute(
            select(messages).where(messages.c.id.in_(list(message_ids))).order_by(messages.c.id)
        )
        return [message_record(row) for row in result]

    def edit_message(self, message_id: MessageId, text: str, at: datetime) -> None:
        """Replace a message's text."""
        self.conn.execute(
            update(messages).where(messages.c.id == message_id).values(text=text, edited_at=at)
        )

    def delete_message(self, message_id: MessageId) -> None:
        """Mark a message deleted (the row stays for the record)."""
        self.conn.execute(update(messages).where(messages.c.id == message_id).values(deleted=True))

    def write_statuses(self, writes: Sequence[MessageStatusWrite]) -> None:
        """Store delivery outcomes; a status never moves back (a late `sent` after `read`).
        One statement per kind of outcome for the whole batch; a message named twice gets
        its outcomes one after the other, in order."""
        if len({w.message_id for w in writes}) < len(writes):
            for w in writes:
                self._write_statuses([w])
        elif writes:
            self._write_statuses(writes)

    def _write_statuses(self, writes: Sequence[MessageStatusWrite]) -> None:
        ids = [
            {"b_id": w.message_id, "b_ext": w.external_id}
            for w in writes
            if w.external_id is not None
        ]
        if ids:
            self.conn.execute(
                update(messages)
                .where(messages.c.id == bindparam("b_id"))
                .values(external_id=bindparam("b_ext")),
                ids,
            )
        groups: dict[tuple[str, bool], list[dict[str, Any]]] = {}
        for w in writes:
            errors = w.code is not None or w.reason is not None
            row = {"b_id": w.message_id, "b_code": w.code, "b_reason": w.reason}
            groups.setdefault((w.status, errors), []).append(row)
        for (status, errors), rows in groups.items():
            values: dict[str, Any] = {"status": status}
            if errors:
                values["error_code"] = bindparam("b_code")
                values["error_reason"] = bindparam("b_reason")
            rank = STATUS_ORDER.index(status) if status in STATUS_ORDER else 0
            before = (messages.c.status == earlier for earlier in STATUS_ORDER[:rank])
            moves = or_(messages.c.status.is_(None), *before)
            self.conn.execute(
                update(messages).where(messages.c.id == bindparam("b_id"), moves).values(**values),
                rows,
            )

    def advance_to_watermark(
        self,
        contact_id: ContactId,
        platform: Platform,
        account: AccountId,
        status: str,
        watermark: datetime,
    ) -> list[MessageRecord]:
        """Messages sent to a contact up to `watermark` reach `status`; return those that moved."""
        earlier = [s for s in STATUS_ORDER[: STATUS_ORDER.index(status)] if s != "queued"]
        conv_ids = select(conversations.c.id).where(conversations.c.contact_id == contact_id)
        where = (
            messages.c.conversation_id.in_(conv_ids),
            messages.c.direction == "out",
            messages.c.platform == platform,
            messages.c.account == account,
            messages.c.sent_at <= watermark,
            messages.c.status.in_(earlier),
        )
        moved = [message_record(row) for row in self.conn.execute(select(messages).where(*where))]
        if moved:
            self.conn.execute(
                update(messages)
                .where(messages.c.id.in_([m.id for m in moved]))
                .values(status=status)
            )
        return moved

    # -- staff refs -----------------------------------------------------------------------

    def add_refs(self, rows: Sequence[tuple[SurfaceName, StaffMessageRef, str, MessageId]]) -> None:
        """Link staff-surface messages to stored messages."""
        if not rows:
            return
        if self.dialect == "sqlite":
            self.conn.exec_driver_sql(
                "INSERT INTO staff_refs (surface, ref, kind, message_id) VALUES (?, ?, ?, ?) "
                "ON CONFLICT DO NOTHING",
                list(rows),
            )
            return
        stmt = self._insert(refs).on_conflict_do_nothing()
        self.conn.execute(
            stmt,
            [{"surface": s, "ref": r, "kind": k, "message_id": m} for s, r, k, m in rows],
        )

    def message_by_ref(
        self, surface: SurfaceName, ref: StaffMessageRef, kind: str
    ) -> MessageRecord | None:
        """The message a staff-surface message wrote ('origin') or shows ('mirror')."""
        row = (
            self.conn.execute(
                select(messages)
                .join(refs, refs.c.message_id == messages.c.id)
                .where(refs.c.surface == surface, refs.c.ref == ref, refs.c.kind == kind)
                .order_by(messages.c.id)
                .limit(1)
            )
        ).first()
        return message_record(row) if row is not None else None

    def refs_of(
        self, message_id: MessageId, kind: str
    ) -> list[tuple[SurfaceName, StaffMessageRef]]:
        """Where a message is shown on staff surfaces."""
        result = self.conn.execute(
            select(refs.c.surface, refs.c.ref).where(
                refs.c.message_id == message_id, refs.c.kind == kind
            )
        )
        return [(SurfaceName(r[0]), StaffMessageRef(r[1])) for r in result]

    def messages_behind(self, surface: SurfaceName, ref: StaffMessageRef) -> list[MessageRecord]:
        """Every message one staff post shows (several when customer messages were joined)."""
        result = self.conn.execute(
            select(messages)
            .join(refs, refs.c.message_id == messages.c.id)
            .where(refs.c.surface == surface, refs.c.ref == ref, refs.c.kind == "mirror")
            .order_by(messages.c.id)
        )
        return [message_record(row) for row in result]
