"""Every statement the bridge runs, batched: one round trip per step for a whole batch.

`Tx` wraps one synchronous connection and returns records, never ORM rows. Its methods are plain
functions on purpose: a whole transaction runs in one call (`Database.run_write` /
`run_read`), instead of one event-loop round trip per statement.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BigInteger, bindparam, delete, exists, func, or_, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from bridge.types import (
    AccountId,
    ChatId,
    ContactCard,
    ContactId,
    ConversationId,
    ConversationStatus,
    MessageId,
    Platform,
    StaffMessageRef,
    SurfaceName,
    ThreadRef,
)
from storage.tables import (
    blacklist,
    contacts,
    conversations,
    kv,
    media_files,
    messages,
    outbox,
    refs,
    threads,
)

# Delivery statuses in the order they are reached; `failed` ends any of them.
STATUS_ORDER = ["queued", "sent", "delivered", "read", "failed"]


@dataclass(frozen=True, slots=True)
class ContactRecord:
    """A contact as the pipeline needs it."""

    id: ContactId
    platform: Platform
    account: AccountId
    chat_id: ChatId
    display_name: str
    username: str | None
    message_count: int
    opt_in_source: str | None
    # Only filled where the whole row was read (`Tx.contact`).
    last_seen: datetime | None = None
    opted_out_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ConversationRecord:
    """A conversation's identity and state."""

    id: ConversationId
    contact_id: ContactId
    status: ConversationStatus
    previous_id: ConversationId | None


@dataclass(frozen=True, slots=True)
class MessageRecord:
    """A stored message."""

    id: MessageId
    conversation_id: ConversationId
    direction: str
    platform: Platform
    account: AccountId
    external_id: str | None
    author: str | None
    text: str
    attachments: list[dict[str, Any]]
    deleted: bool
    edited: bool


@dataclass(frozen=True, slots=True)
class Job:
    """A pending outbox row."""

    id: int
    kind: str
    idem_key: str
    lane: str
    rate_keys: tuple[str, ...]
    payload: Mapping[str, Any]
    attempts: int
    next_at: float
    created_at: float
    bulk: bool = False


@dataclass(frozen=True, slots=True)
class NewJob:
    """An outbox row to insert; a second row with the same `idem_key` is ignored.

    `bulk`: a broadcast's row. The dispatcher loads bulk rows apart from conversation traffic
    and sends them only from the rate that traffic leaves over (see bridge.outbox).
    """

    kind: str
    idem_key: str
    lane: str
    payload: Mapping[str, Any]
    rate_keys: tuple[str, ...] = ()
    next_at: float = 0.0
    bulk: bool = False


@dataclass(slots=True)
class MessageStatusWrite:
    """The outcome of sending a message to the customer."""

    message_id: MessageId
    status: str
    external_id: str | None = None
    code: str | None = None
    reason: str | None = None


@dataclass(slots=True)
class Completion:
    """Everything a finished outbox job changes, written in one transaction with its `done`."""

    job_ids: list[int]
    threads: list[tuple[ConversationId, SurfaceName, ThreadRef]] = field(default_factory=list)
    refs: list[tuple[SurfaceName, StaffMessageRef, str, MessageId]] = field(default_factory=list)
    statuses: list[MessageStatusWrite] = field(default_factory=list)
    jobs: list[NewJob] = field(default_factory=list)
    failed_reason: str | None = None
    # More writes for the same transaction, with the jobs they produce (e.g. applying a status
    # that arrived before the send's answer did).
    also: list[Callable[[Tx], Sequence[NewJob]]] = field(default_factory=list)
    # Items for writers that take many at once, (writer, item): each writer is called once per
    # transaction with the items of every completion in it (one executemany, not one each).
    rows: list[tuple[Callable[[Tx, list[Any]], None], Any]] = field(default_factory=list)


def early_key(platform: str, account: str, external_id: str) -> str:
    """The kv key of a delivery status that came before the send's answer was recorded."""
    key = f"early:{platform}:{account}:{external_id}"
    if len(key) > 128:  # the kv key column's size
        key = "early:" + hashlib.sha256(key.encode()).hexdigest()
    return key


def upsert_insert(conn: Connection, table: Any) -> Any:
    """An INSERT of the connection's dialect, the kind that has `on_conflict_do_nothing`."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def _job(row: Any) -> Job:
    """An outbox row as the dispatcher works with it."""
    return Job(
        id=row.id,
        kind=row.kind,
        idem_key=row.idem_key,
        lane=row.lane,
        rate_keys=tuple(row.rate_keys.split()) if row.rate_keys else (),
        payload=row.payload if isinstance(row.payload, dict) else json.loads(row.payload),
        attempts=row.attempts,
        next_at=row.next_at,
        created_at=row.created_at,
        bulk=bool(row.bulk),
    )


def _sqlite_time(value: datetime) -> str:
    """A datetime as SQLAlchemy stores it on SQLite (naive UTC text)."""
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    return value.replace(tzinfo=None).isoformat(" ", "microseconds")


def _message(row: Any) -> MessageRecord:
    return MessageRecord(
        id=MessageId(row.id),
        conversation_id=ConversationId(row.conversation_id),
        direction=row.direction,
        platform=Platform(row.platform),
        account=AccountId(row.account),
        external_id=row.external_id,
        author=row.author,
        text=row.text,
        attachments=list(row.attachments or []),
        deleted=bool(row.deleted),
        edited=row.edited_at is not None,
    )


def _contact(row: Any) -> ContactRecord:
    return ContactRecord(
        id=ContactId(row.id),
        platform=Platform(row.platform),
        account=AccountId(row.account),
        chat_id=ChatId(row.chat_id),
        display_name=row.display_name,
        username=row.username,
        message_count=row.message_count,
        opt_in_source=row.opt_in_source,
        last_seen=getattr(row, "last_seen", None),
        opted_out_at=getattr(row, "opted_out_at", None),
    )


def _conversation(row: Any) -> ConversationRecord:
    return ConversationRecord(
        id=ConversationId(row.id),
        contact_id=ContactId(row.contact_id),
        status=ConversationStatus(row.status),
        previous_id=ConversationId(row.previous_id) if row.previous_id is not None else None,
    )


class Tx:
    """Batched statements on one connection."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.dialect = conn.dialect.name
        self.enqueued = 0
        self.after_commit: list[Callable[[], None]] = []

    # -- contacts -------------------------------------------------------------------------

    def contacts_by_address(
        self, platform: Platform, account: AccountId, chat_ids: Sequence[str]
    ) -> dict[str, ContactRecord]:
        """Contacts of one platform account by their chat ids."""
        if not chat_ids:
            return {}
        c = contacts.c
        columns = (c.id, c.platform, c.account, c.chat_id, c.display_name, c.username)
        result = self.conn.execute(
            select(*columns, c.message_count, c.opt_in_source).where(
                contacts.c.platform == platform,
                contacts.c.account == account,
                contacts.c.chat_id.in_(list(chat_ids)),
            )
        )
        return {row.chat_id: _contact(row) for row in result}

    def insert_contacts(self, rows: list[dict[str, Any]]) -> list[ContactRecord]:
        """Insert contacts; return them with their ids, in the order given."""
        if not rows:
            return []
        result = self.conn.execute(
            contacts.insert().returning(*contacts.c, sort_by_parameter_order=True), rows
        )
        return [_contact(row) for row in result]

    def update_contacts(self, rows: list[dict[str, Any]]) -> None:
        """Per contact: add to the message count, set last_seen, name and username."""
        if not rows:
            return
        if self.dialect == "sqlite":
            self.conn.exec_driver_sql(
                "UPDATE contacts SET message_count = message_count + ?, last_seen = ?, "
                "display_name = ?, username = ? WHERE id = ?",
                [
                    (r["b_add"], _sqlite_time(r["b_seen"]), r["b_name"], r["b_username"], r["b_id"])
                    for r in rows
                ],
            )
            return
        self.conn.execute(
            update(contacts)
            .where(contacts.c.id == bindparam("b_id"))
            .values(
                message_count=contacts.c.message_count + bindparam("b_add"),
                last_seen=bindparam("b_seen"),
                display_name=bindparam("b_name"),
                username=bindparam("b_username"),
            ),
            rows,
        )

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
        return {ContactId(row.contact_id): _conversation(row) for row in result}

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
        return [_conversation(row) for row in result]

    def touch_conversations(self, rows: list[dict[str, Any]]) -> None:
        """Record the time of each conversation's newest customer message."""
        if rows and self.dialect == "sqlite":
            self.conn.exec_driver_sql(
                "UPDATE conversations SET last_inbound_at = ? WHERE id = ?",
                [(_sqlite_time(r["b_at"]), r["b_id"]) for r in rows],
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
        return _conversation(row) if row is not None else None

    def contact(self, contact_id: ContactId) -> ContactRecord | None:
        """One contact by id."""
        row = (self.conn.execute(select(contacts).where(contacts.c.id == contact_id))).first()
        return _contact(row) if row is not None else None

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
        return {row.external_id: _message(row) for row in result}

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
        return {row.external_id: _message(row) for row in result}

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
                    _sqlite_time(row["sent_at"]),
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
        return _message(row) if row is not None else None

    def messages(self, message_ids: Sequence[MessageId]) -> list[MessageRecord]:
        """Messages by id, oldest first."""
        result = self.conn.execute(
            select(messages).where(messages.c.id.in_(list(message_ids))).order_by(messages.c.id)
        )
        return [_message(row) for row in result]

    def edit_message(self, message_id: MessageId, text: str, at: datetime) -> None:
        """Replace a message's text."""
        self.conn.execute(
            update(messages).where(messages.c.id == message_id).values(text=text, edited_at=at)
        )

    def delete_message(self, message_id: MessageId) -> None:
        """Mark a message deleted (the row stays for the record)."""
        self.conn.execute(update(messages).where(messages.c.id == message_id).values(deleted=True))

    def write_statuses(self, writes: Sequence[MessageStatusWrite]) -> None:
        """Store delivery outcomes; a status never moves back (a late `sent` after `read`)."""
        for w in writes:
            if w.external_id is not None:
                self.conn.execute(
                    update(messages)
                    .where(messages.c.id == w.message_id)
                    .values(external_id=w.external_id)
                )
            values: dict[str, Any] = {"status": w.status}
            if w.code is not None or w.reason is not None:
                values["error_code"] = w.code
                values["error_reason"] = w.reason
            rank = STATUS_ORDER.index(w.status) if w.status in STATUS_ORDER else 0
            earlier = STATUS_ORDER[:rank]
            self.conn.execute(
                update(messages)
                .where(
                    messages.c.id == w.message_id,
                    or_(messages.c.status.is_(None), messages.c.status.in_(earlier)),
                )
                .values(**values)
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
        moved = [_message(row) for row in self.conn.execute(select(messages).where(*where))]
        if moved:
            self.conn.execute(
                update(messages)
                .where(messages.c.id.in_([m.id for m in moved]))
                .values(status=status)
            )
        return moved

    def update_contact(self, contact_id: ContactId, **values: Any) -> bool:
        """Change a contact's staff fields (display_name, note, remark, assigned_to)."""
        allowed = {"display_name", "note", "remark", "assigned_to"}
        unknown = set(values) - allowed
        if unknown:
            msg = f"not a staff field of contacts: {sorted(unknown)}"
            raise ValueError(msg)
        result = self.conn.execute(
            update(contacts).where(contacts.c.id == contact_id).values(**values)
        )
        return bool(result.rowcount)

    def set_opt_out(self, contact_id: ContactId, at: datetime | None, source: str | None) -> bool:
        """Record that a contact opted out (`at` set) or back in (`at` None); False if unchanged."""
        condition = contacts.c.opted_out_at.is_(None) if at else contacts.c.opted_out_at.isnot(None)
        result = self.conn.execute(
            update(contacts)
            .where(contacts.c.id == contact_id, condition)
            .values(opted_out_at=at, opt_out_source=source)
        )
        return bool(result.rowcount)

    def contact_by_address(
        self, platform: Platform, account: AccountId, chat_id: ChatId
    ) -> ContactRecord | None:
        """One whole contact row by its address on a platform account."""
        row = self.conn.execute(
            select(contacts).where(
                contacts.c.platform == platform,
                contacts.c.account == account,
                contacts.c.chat_id == chat_id,
            )
        ).first()
        return _contact(row) if row is not None else None

    # -- early statuses: a platform may report on a message before the bridge has recorded
    # the id it answered the send with (WhatsApp's `sent` webhook races the send's answer).

    def keep_early_status(self, key: str, value: str) -> None:
        """Remember a status for an external id the bridge does not know yet."""
        self.kv_put(key, value)

    def kv_put(self, key: str, value: str) -> None:
        """Store a value under a key, replacing what was there."""
        self.conn.execute(delete(kv).where(kv.c.key == key))
        self.conn.execute(kv.insert().values(key=key, value=value))

    def take_early_statuses(self, keys: Sequence[str]) -> dict[str, str]:
        """Statuses kept for these keys, removed as they are taken."""
        if not keys:
            return {}
        found = {
            row.key: row.value
            for row in self.conn.execute(select(kv).where(kv.c.key.in_(list(keys))))
        }
        if found:
            self.conn.execute(delete(kv).where(kv.c.key.in_(list(found))))
        return found

    # -- small durable values -------------------------------------------------------------

    def kv_get(self, key: str) -> str | None:
        """A stored value."""
        return self.conn.execute(select(kv.c.value).where(kv.c.key == key)).scalar()

    def kv_put_new(self, key: str, value: str) -> str:
        """Store a value unless the key has one; return the value that is stored."""
        current = self.kv_get(key)
        if current is not None:
            return current
        self.conn.execute(kv.insert().values(key=key, value=value))
        return value

    # -- media files ----------------------------------------------------------------------

    def put_media(self, filename: str, mime_type: str, data: bytes, now: float, ttl: float) -> int:
        """Store a file to serve; expired files are dropped on the way."""
        self.conn.execute(delete(media_files).where(media_files.c.expires_at < now))
        result = self.conn.execute(
            media_files.insert()
            .values(
                filename=filename,
                mime_type=mime_type,
                data=data,
                created_at=now,
                expires_at=now + ttl,
            )
            .returning(media_files.c.id)
        )
        return int(result.scalar_one())

    def media(self, media_id: int) -> tuple[str, str, bytes, float] | None:
        """A stored file: name, type, bytes and expiry."""
        row = self.conn.execute(
            select(
                media_files.c.filename,
                media_files.c.mime_type,
                media_files.c.data,
                media_files.c.expires_at,
            ).where(media_files.c.id == media_id)
        ).first()
        return (row[0], row[1], bytes(row[2]), float(row[3])) if row is not None else None

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
        return _message(row) if row is not None else None

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
        return [_message(row) for row in result]

    # -- threads (writes) -----------------------------------------------------------------

    def add_threads(self, rows: Sequence[tuple[ConversationId, SurfaceName, ThreadRef]]) -> None:
        """Remember where conversations' threads are."""
        if rows:
            self.conn.execute(
                self._insert(threads).on_conflict_do_nothing(),
                [{"conversation_id": c, "surface": s, "thread_ref": t} for c, s, t in rows],
            )

    # -- outbox ---------------------------------------------------------------------------

    def _insert(self, table: Any) -> Any:
        return upsert_insert(self.conn, table)

    def enqueue(self, jobs: Sequence[NewJob], now: float) -> int:
        """Add outbox rows; rows whose idempotency key exists already are skipped."""
        if not jobs:
            return 0
        if self.dialect == "sqlite":
            # The other hot insert: plain tuples, no per-row SQL expression processing.
            before = self.conn.connection.dbapi_connection.total_changes  # type: ignore[union-attr]
            self.conn.exec_driver_sql(
                "INSERT INTO outbox (kind, idem_key, lane, rate_keys, payload, state, attempts, "
                "next_at, created_at, bulk) VALUES (?, ?, ?, ?, ?, 'pending', 0, ?, ?, ?) "
                "ON CONFLICT (idem_key) DO NOTHING",
                [
                    (
                        j.kind,
                        j.idem_key,
                        j.lane,
                        " ".join(j.rate_keys),
                        json.dumps(dict(j.payload)),
                        j.next_at,
                        now,
                        1 if j.bulk else 0,
                    )
                    for j in jobs
                ],
            )
            after = self.conn.connection.dbapi_connection.total_changes  # type: ignore[union-attr]
            self.enqueued += after - before
            return int(after - before)
        stmt = self._insert(outbox).on_conflict_do_nothing(index_elements=["idem_key"])
        result = self.conn.execute(
            stmt,
            [
                {
                    "kind": j.kind,
                    "idem_key": j.idem_key,
                    "lane": j.lane,
                    "rate_keys": " ".join(j.rate_keys),
                    "payload": dict(j.payload),
                    "state": "pending",
                    "attempts": 0,
                    "next_at": j.next_at,
                    "created_at": now,
                    "bulk": j.bulk,
                }
                for j in jobs
            ],
        )
        count = int(result.rowcount or 0) if result.rowcount != -1 else len(jobs)
        self.enqueued += count
        return count

    def pending(self, after_id: int, limit: int, *, bulk: bool = False) -> list[Job]:
        """Pending outbox rows of one kind (bulk or not) after an id, oldest first."""
        result = self.conn.execute(
            select(outbox)
            .where(outbox.c.state == "pending", outbox.c.bulk == bulk, outbox.c.id > after_id)
            .order_by(outbox.c.id)
            .limit(limit)
        )
        return [_job(row) for row in result]

    # -- leases (PostgreSQL, several processes) -------------------------------------------

    def lease_candidates(
        self,
        worker: str,
        limit: int,
        *,
        bulk: bool,
        now: float,
        skip_groups: Sequence[str] = (),
    ) -> list[Job]:
        """The first pending rows of one kind that this worker may take: held by no live
        process, in a lane no other live process holds a row of. `skip_groups`: accounts
        (first rate keys) whose rows are not wanted now."""
        held = outbox.alias("held")
        query = (
            select(outbox)
            .where(
                outbox.c.state == "pending",
                outbox.c.bulk == bulk,
                outbox.c.lease_until < now,
                ~exists().where(
                    held.c.lane == outbox.c.lane,
                    held.c.state == "pending",
                    held.c.id != outbox.c.id,
                    held.c.lease_until >= now,
                    held.c.owner != worker,
                ),
            )
            .order_by(outbox.c.id)
            .limit(limit)
        )
        if skip_groups:
            query = query.where(
                func.split_part(outbox.c.rate_keys, " ", 1).notin_(list(skip_groups))
            )
        return [_job(row) for row in self.conn.execute(query)]

    def lease(self, worker: str, job_ids: Sequence[int], now: float, until: float) -> set[int]:
        """Take the lease of rows no live process holds, whose lane no other live process holds
        a row of; return the ids taken. A transaction-scoped advisory lock per lane keeps two
        processes from taking rows of one lane at the same moment."""
        if not job_ids:
            return set()
        result = self.conn.execute(
            text(
                "UPDATE outbox AS o SET owner = :worker, lease_until = :until"
                " WHERE o.id = ANY(:ids) AND o.state = 'pending' AND o.lease_until < :now"
                " AND NOT EXISTS (SELECT 1 FROM outbox AS h WHERE h.lane = o.lane"
                " AND h.state = 'pending' AND h.id <> o.id AND h.lease_until >= :now"
                " AND h.owner <> :worker)"
                " AND pg_try_advisory_xact_lock(hashtext(o.lane))"
                " RETURNING o.id"
            ).bindparams(bindparam("ids", type_=postgresql.ARRAY(BigInteger))),
            {"worker": worker, "until": until, "now": now, "ids": list(job_ids)},
        )
        return {int(row[0]) for row in result}

    def renew_leases(self, worker: str, until: float) -> int:
        """Extend the lease of every pending row this worker holds."""
        result = self.conn.execute(
            update(outbox)
            .where(outbox.c.owner == worker, outbox.c.state == "pending")
            .values(lease_until=until)
        )
        return int(result.rowcount or 0)

    def release_leases(self, worker: str) -> None:
        """Give up every pending row this worker holds (another process may take them now)."""
        self.conn.execute(
            update(outbox)
            .where(outbox.c.owner == worker, outbox.c.state == "pending")
            .values(owner=None, lease_until=0.0)
        )

    def claim(self, job_ids: Sequence[int]) -> None:
        """Count an attempt before sending, so a restart knows what may have gone out."""
        if job_ids:
            self.conn.execute(
                update(outbox)
                .where(outbox.c.id.in_(list(job_ids)))
                .values(attempts=outbox.c.attempts + 1)
            )

    def unclaim(self, job_ids: Sequence[int]) -> None:
        """Take back a counted attempt: the row was not sent (a 429, a hold)."""
        if job_ids:
            self.conn.execute(
                update(outbox)
                .where(outbox.c.id.in_(list(job_ids)), outbox.c.attempts > 0)
                .values(attempts=outbox.c.attempts - 1)
            )

    def finish(self, job_ids: Sequence[int], now: float, error: str | None = None) -> None:
        """Mark rows done (or failed, with the reason)."""
        if job_ids and self.dialect == "sqlite":
            marks = ",".join("?" * len(job_ids))
            self.conn.exec_driver_sql(
                f"UPDATE outbox SET state = ?, done_at = ?, last_error = ? WHERE id IN ({marks})",
                ("failed" if error else "done", now, error, *job_ids),
            )
        elif job_ids:
            self.conn.execute(
                update(outbox)
                .where(outbox.c.id.in_(list(job_ids)))
                .values(state="failed" if error else "done", done_at=now, last_error=error)
            )

    def reschedule(self, job_id: int, next_at: float, error: str) -> None:
        """Try a row again later."""
        self.conn.execute(
            update(outbox).where(outbox.c.id == job_id).values(next_at=next_at, last_error=error)
        )

    def outbox_counts(self) -> dict[str, int]:
        """Rows per state."""
        result = self.conn.execute(select(outbox.c.state, func.count()).group_by(outbox.c.state))
        return {row[0]: int(row[1]) for row in result}

    def outbox_pending(self) -> int:
        """Rows still to send: read from the index on state, never from the done rows."""
        query = select(func.count()).select_from(outbox).where(outbox.c.state == "pending")
        return int(self.conn.execute(query).scalar_one())

    def apply(self, completions: Sequence[Completion], now: float) -> int:
        """Write finished jobs and what they produced; return how many new rows were queued."""
        done = [i for c in completions if c.failed_reason is None for i in c.job_ids]
        self.finish(done, now)
        for c in completions:
            if c.failed_reason is not None:
                self.finish(c.job_ids, now, c.failed_reason)
        self.add_threads([t for c in completions for t in c.threads])
        self.add_refs([r for c in completions for r in c.refs])
        self.write_statuses([s for c in completions for s in c.statuses])
        grouped: dict[Callable[[Tx, list[Any]], None], list[Any]] = {}
        for c in completions:
            for writer, item in c.rows:
                grouped.setdefault(writer, []).append(item)
        for writer, items in grouped.items():
            writer(self, items)
        jobs = [j for c in completions for j in c.jobs]
        for c in completions:
            for write in c.also:
                jobs.extend(write(self))
        return self.enqueue(jobs, now)


__all__ = [
    "Completion",
    "early_key",
    "ContactRecord",
    "ConversationRecord",
    "Job",
    "MessageRecord",
    "MessageStatusWrite",
    "NewJob",
    "Tx",
]
