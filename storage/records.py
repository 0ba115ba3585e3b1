"""What queries return and take: records, outbox rows and the outcome of a finished job.

Also the base every group of statements on `Tx` builds on: one connection and its dialect.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from bridge.types import (
    AccountId,
    ChatId,
    ContactId,
    ConversationId,
    ConversationStatus,
    MessageId,
    Platform,
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


def reaction_key(message_id: int) -> str:
    """The kv key of a customer's current reactions on a stored message (erased with it)."""
    return f"reaction:{message_id}"


def quote_key(message_id: int) -> str:
    """The kv key of what a customer's stored reply answers, as its quote shows it (erased
    with it): an edit of the reply shows the quote again."""
    return f"quote:{message_id}"


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


def job_record(row: Any) -> Job:
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


def sqlite_time(value: datetime) -> str:
    """A datetime as SQLAlchemy stores it on SQLite (naive UTC text)."""
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    return value.replace(tzinfo=None).isoformat(" ", "microseconds")


def read_time(value: datetime | str | None) -> datetime | None:
    """A stored UTC time as read past SQLAlchemy: aware already, or SQLite's naive UTC text."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def message_record(row: Any) -> MessageRecord:
    """A messages row as a record."""
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


def contact_record(row: Any) -> ContactRecord:
    """A contacts row (whole or in part) as a record."""
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


def conversation_record(row: Any) -> ConversationRecord:
    """A conversations row as a record."""
    return ConversationRecord(
        id=ConversationId(row.id),
        contact_id=ContactId(row.contact_id),
        status=ConversationStatus(row.status),
        previous_id=ConversationId(row.previous_id) if row.previous_id is not None else None,
    )


class Repository:
    """The statements of one subject on one connection, reached as an attribute of `Tx`
    (`tx.subscriptions`, `tx.broadcasts`, ...); callers never hold the connection."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.dialect = conn.dialect.name

    def _insert(self, table: Any) -> Any:
        return upsert_insert(self.conn, table)


class TxBase(Repository):
    """One connection and its dialect, with what a transaction adds: the rows it enqueued and
    what runs after its commit; every group of statements on `Tx` works with it."""

    def __init__(self, conn: Connection) -> None:
        super().__init__(conn)
        self.enqueued = 0
        self.after_commit: list[Callable[[], None]] = []
