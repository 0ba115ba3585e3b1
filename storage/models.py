"""The database schema. Rows stay inside `storage`; the rest of the bridge sees records."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
    true,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Stores UTC, hands back aware datetimes on every database (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            msg = "naive datetime given to the database; use an aware UTC datetime"
            raise ValueError(msg)
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets BIGINT identities.
Id = BigInteger().with_variant(Integer(), "sqlite")
# Ids that name things outside their row (a contact "#12", a conversation's thread, a message
# in flight) must never come back after their rows are erased; SQLite reuses the highest id
# unless the table says AUTOINCREMENT (PostgreSQL identities never repeat).
NEVER_REUSED = {"sqlite_autoincrement": True}


class Base(DeclarativeBase):
    """Declarative base of every table."""


class Contact(Base):
    """A customer on one platform account."""

    __tablename__ = "contacts"
    __table_args__ = (
        UniqueConstraint("platform", "account", "chat_id", name="uq_contact_address"),
        NEVER_REUSED,
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    platform: Mapped[str] = mapped_column(String(16))
    account: Mapped[str] = mapped_column(String(64))
    chat_id: Mapped[str] = mapped_column(String(128))
    display_name: Mapped[str] = mapped_column(String(256))
    username: Mapped[str | None] = mapped_column(String(128))
    language: Mapped[str | None] = mapped_column(String(16))
    first_seen: Mapped[datetime] = mapped_column(UTCDateTime())
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime())
    message_count: Mapped[int] = mapped_column(Integer, default=0)
    opt_in_source: Mapped[str | None] = mapped_column(String(256))
    opt_in_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Set while the customer has opted out (e.g. replied STOP to an SMS); cleared by START.
    opted_out_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    opt_out_source: Mapped[str | None] = mapped_column(String(128))
    # Staff's own notes: `note` for the team, `remark` for the CRM (exported, API-visible).
    note: Mapped[str | None] = mapped_column(Text)
    remark: Mapped[str | None] = mapped_column(Text)
    assigned_to: Mapped[str | None] = mapped_column(String(128))


class Conversation(Base):
    """One support case with a contact; it has one thread per staff surface."""

    __tablename__ = "conversations"
    __table_args__ = (
        Index("ix_conversation_contact_status", "contact_id", "status"),
        NEVER_REUSED,
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16))
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime())
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    previous_id: Mapped[int | None] = mapped_column(
        ForeignKey("conversations.id", ondelete="SET NULL")
    )
    last_inbound_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class StaffThread(Base):
    """Where a conversation lives on a staff surface."""

    __tablename__ = "staff_threads"
    __table_args__ = (
        UniqueConstraint("surface", "thread_ref", name="uq_thread_ref"),
        UniqueConstraint("conversation_id", "surface", name="uq_thread_conversation"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    surface: Mapped[str] = mapped_column(String(16))
    thread_ref: Mapped[str] = mapped_column(String(256))


class Message(Base):
    """A message of a conversation: from the customer, to the customer, or an internal note."""

    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("platform", "account", "external_id", name="uq_message_external"),
        Index("ix_message_conversation", "conversation_id", "id"),
        NEVER_REUSED,
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    direction: Mapped[str] = mapped_column(String(8))
    platform: Mapped[str] = mapped_column(String(16))
    account: Mapped[str] = mapped_column(String(64))
    external_id: Mapped[str | None] = mapped_column(String(256))
    author: Mapped[str | None] = mapped_column(String(256))
    text: Mapped[str] = mapped_column(Text)
    attachments: Mapped[list[dict[str, object]] | None] = mapped_column(JSON)
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime())
    edited_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    deleted: Mapped[bool] = mapped_column(default=False)
    status: Mapped[str | None] = mapped_column(String(16))
    error_code: Mapped[str | None] = mapped_column(String(32))
    error_reason: Mapped[str | None] = mapped_column(Text)


class StaffRef(Base):
    """Which staff-surface message shows (kind 'mirror') or wrote (kind 'origin') a message."""

    __tablename__ = "staff_refs"
    __table_args__ = (
        UniqueConstraint("surface", "ref", "message_id", name="uq_staff_ref"),
        Index("ix_staff_ref_message", "message_id"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"))
    surface: Mapped[str] = mapped_column(String(16))
    ref: Mapped[str] = mapped_column(String(256))
    kind: Mapped[str] = mapped_column(String(8))


class OutboxRow(Base):
    """A side effect waiting to happen: durable, ordered per lane, rate-limited per key."""

    __tablename__ = "outbox"
    # The dispatcher reads pending rows of one kind (conversation traffic or bulk) in id order;
    # with several processes, a row waits while an earlier pending row of its lane is held.
    __table_args__ = (
        Index("ix_outbox_state_bulk_id", "state", "bulk", "id"),
        Index(
            "ix_outbox_pending_lane",
            "lane",
            "id",
            postgresql_where=text("state = 'pending'"),
            sqlite_where=text("state = 'pending'"),
        ),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32))
    idem_key: Mapped[str] = mapped_column(String(256), unique=True)
    lane: Mapped[str] = mapped_column(String(128))
    rate_keys: Mapped[str] = mapped_column(String(512), default="")
    payload: Mapped[dict[str, object]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_at: Mapped[float] = mapped_column(Float, default=0.0)
    created_at: Mapped[float] = mapped_column(Float)
    done_at: Mapped[float | None] = mapped_column(Float)
    last_error: Mapped[str | None] = mapped_column(Text)
    # A broadcast's row: sent from the spare rate, never ahead of conversation traffic.
    bulk: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # PostgreSQL with several processes: which process holds the row, and until when (epoch
    # seconds; it renews the lease while it holds the row, and a dead process's lapse).
    owner: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")


class CryptoState(Base):
    """A part's end-to-end encryption state (Matrix: the bot's Olm/Megolm store), one blob."""

    __tablename__ = "crypto_state"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    updated_at: Mapped[float] = mapped_column(Float)


class KeyValue(Base):
    """Small durable state (cursors, offsets)."""

    __tablename__ = "kv"

    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class MediaFile(Base):
    """A file served at a signed, expiring URL for platforms that fetch media by URL (MMS)."""

    __tablename__ = "media_files"
    __table_args__ = (Index("ix_media_expires", "expires_at"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    filename: Mapped[str] = mapped_column(String(256))
    mime_type: Mapped[str] = mapped_column(String(128))
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float] = mapped_column(Float)


class StaffRole(Base):
    """A staff member's role on a surface: admin, manager or agent."""

    __tablename__ = "staff_roles"

    surface: Mapped[str] = mapped_column(String(16), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    role: Mapped[str] = mapped_column(String(16))
    granted_by: Mapped[str] = mapped_column(String(128))
    granted_at: Mapped[datetime] = mapped_column(UTCDateTime())


class SubscriberChannel(Base):
    """A subscriber channel (a newsletter list) customers join and leave by keyword."""

    __tablename__ = "channels"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    join_keyword: Mapped[str | None] = mapped_column(String(64), unique=True)
    leave_keyword: Mapped[str | None] = mapped_column(String(64), unique=True)
    join_reply: Mapped[str | None] = mapped_column(Text)
    leave_reply: Mapped[str | None] = mapped_column(Text)
    # Signing up on this platform (a first message there) joins the channel by itself.
    platform: Mapped[str | None] = mapped_column(String(16))
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ChannelMember(Base):
    """A contact subscribed to a channel, with how and when they joined."""

    __tablename__ = "channel_members"
    __table_args__ = (Index("ix_member_contact", "contact_id"),)

    channel_id: Mapped[int] = mapped_column(
        ForeignKey("channels.id", ondelete="CASCADE"), primary_key=True
    )
    contact_id: Mapped[int] = mapped_column(
        ForeignKey("contacts.id", ondelete="CASCADE"), primary_key=True
    )
    joined_at: Mapped[datetime] = mapped_column(UTCDateTime())
    source: Mapped[str] = mapped_column(String(128))
    # Set when the contact left (a leave keyword, STOP); START brings back what STOP ended.
    left_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    left_source: Mapped[str | None] = mapped_column(String(128))


class BlacklistEntry(Base):
    """A blocked contact: inbound, outbound or both, permanently or until a time."""

    __tablename__ = "blacklist"

    contact_id: Mapped[int] = mapped_column(
        ForeignKey("contacts.id", ondelete="CASCADE"), primary_key=True
    )
    direction: Mapped[str] = mapped_column(String(8))
    until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    reason: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class MessageTemplate(Base):
    """A WhatsApp message template as the bridge knows it: name, language, body."""

    __tablename__ = "templates"
    __table_args__ = (UniqueConstraint("name", "language", name="uq_template_name_language"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(512))
    language: Mapped[str] = mapped_column(String(16))
    body: Mapped[str] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class TextBlock(Base):
    """A saved reply with placeholders, sent into a conversation with `!tb <name>`."""

    __tablename__ = "text_blocks"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    body: Mapped[str] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ConsentWord(Base):
    """A word that, as a whole message, unsubscribes (stop) or resubscribes (start) a customer."""

    __tablename__ = "consent_words"

    word: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(8))
    language: Mapped[str] = mapped_column(String(16))


class RuleRow(Base):
    """A chatbot rule: when it fires (keyword, messengers, schedule, limit) and what it does."""

    __tablename__ = "rules"
    __table_args__ = NEVER_REUSED

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    keyword_type: Mapped[str] = mapped_column(String(16))
    pattern: Mapped[str | None] = mapped_column(Text)
    # Comma-separated platform names; empty: every platform.
    platforms: Mapped[str] = mapped_column(String(128), default="", server_default="")
    start_time: Mapped[str | None] = mapped_column(String(5))  # HH:MM in the rule zone
    end_time: Mapped[str | None] = mapped_column(String(5))
    # The weekdays the rule is valid on, 0 = Monday.
    weekdays: Mapped[str] = mapped_column(String(7), default="0123456", server_default="0123456")
    limit_type: Mapped[str] = mapped_column(String(8), default="always", server_default="always")
    limit_seconds: Mapped[int | None] = mapped_column(Integer)
    priority: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    enabled: Mapped[bool] = mapped_column(default=True, server_default=true())
    actions: Mapped[list[dict[str, object]]] = mapped_column(JSON)
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_by: Mapped[str] = mapped_column(String(128))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class RuleChange(Base):
    """Who changed which rule when, with the rule as it was afterwards."""

    __tablename__ = "rule_changes"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    rule_id: Mapped[int] = mapped_column(Id)
    rule_name: Mapped[str] = mapped_column(String(64))
    change: Mapped[str] = mapped_column(String(16))  # add, edit, enable, disable, delete
    by: Mapped[str] = mapped_column(String(128))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    snapshot: Mapped[dict[str, object] | None] = mapped_column(JSON)


class RuleFiring(Base):
    """When a rule last fired for a contact, for its limit (once, once per N)."""

    __tablename__ = "rule_firings"

    rule_id: Mapped[int] = mapped_column(
        ForeignKey("rules.id", ondelete="CASCADE"), primary_key=True
    )
    contact_id: Mapped[int] = mapped_column(
        ForeignKey("contacts.id", ondelete="CASCADE"), primary_key=True
    )
    count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_at: Mapped[datetime] = mapped_column(UTCDateTime())


class RuleFile(Base):
    """A file a rule answers with (autoAnswerMedia), stored when the rule is saved."""

    __tablename__ = "rule_files"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    filename: Mapped[str] = mapped_column(String(256))
    mime_type: Mapped[str] = mapped_column(String(128))
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class BroadcastRow(Base):
    """A newsletter: what is sent to whom, when, and how far it has got."""

    __tablename__ = "broadcasts"
    __table_args__ = NEVER_REUSED

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # Where it was started: progress is shown there.
    surface: Mapped[str] = mapped_column(String(16))
    channel: Mapped[str | None] = mapped_column(String(128))
    progress_ref: Mapped[str | None] = mapped_column(String(256))
    text: Mapped[str] = mapped_column(Text)
    template: Mapped[dict[str, object] | None] = mapped_column(JSON)
    file_id: Mapped[int | None] = mapped_column(Integer)
    channel_ids: Mapped[list[int]] = mapped_column(JSON)
    platforms: Mapped[list[str]] = mapped_column(JSON)
    scheduled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # draft, scheduled, running, paused, cancelled, done
    state: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Expansion into the outbox: the last contact id queued, and how many were queued.
    cursor: Mapped[int] = mapped_column(Id, default=0, server_default="0")
    queued: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    expanded: Mapped[bool] = mapped_column(default=False, server_default=false())
    # Where the text is also posted publicly ("facebook", "x"); empty: nowhere.
    publish: Mapped[list[str]] = mapped_column(JSON, default=list, server_default="[]")


class BroadcastPost(Base):
    """What became of publishing a broadcast's text on one target (a page, X)."""

    __tablename__ = "broadcast_posts"
    __table_args__ = (UniqueConstraint("broadcast_id", "target", name="uq_broadcast_target"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    broadcast_id: Mapped[int] = mapped_column(ForeignKey("broadcasts.id", ondelete="CASCADE"))
    target: Mapped[str] = mapped_column(String(16))
    # posted, failed, cancelled
    state: Mapped[str] = mapped_column(String(16))
    post_id: Mapped[str | None] = mapped_column(String(128))
    url: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(UTCDateTime())


class BroadcastSend(Base):
    """What became of a broadcast for one contact."""

    __tablename__ = "broadcast_sends"
    __table_args__ = (
        UniqueConstraint("broadcast_id", "contact_id", name="uq_broadcast_contact"),
        Index("ix_bsend_contact", "contact_id"),
        Index("ix_bsend_external", "platform", "account", "external_id"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    broadcast_id: Mapped[int] = mapped_column(ForeignKey("broadcasts.id", ondelete="CASCADE"))
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"))
    # sent, delivered, read, failed, skipped, cancelled
    state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    platform: Mapped[str] = mapped_column(String(16))
    account: Mapped[str] = mapped_column(String(64))
    external_id: Mapped[str | None] = mapped_column(String(128))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    replied_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class ShortLinkRow(Base):
    """A short link of the bridge (`<public_url>/s/<code>`) and the URL it leads to."""

    __tablename__ = "short_links"
    __table_args__ = (Index("ix_short_link_broadcast", "broadcast_id"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    code: Mapped[str] = mapped_column(String(16), unique=True)
    url: Mapped[str] = mapped_column(Text)
    # The broadcast whose text carried the link (no foreign key until broadcasts have a table).
    broadcast_id: Mapped[int | None] = mapped_column(Id)
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class LinkClick(Base):
    """One click on a short link: when, and which contact when their own link was clicked.

    Nothing else about the client is kept (no address, no user agent); erasing the contact
    leaves an anonymous click.
    """

    __tablename__ = "link_clicks"
    __table_args__ = (
        Index("ix_link_click_link", "link_id", "at"),
        Index("ix_link_click_contact", "contact_id"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    link_id: Mapped[int] = mapped_column(ForeignKey("short_links.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id", ondelete="SET NULL"))


class ApiKey(Base):
    """A key for the REST API: only its SHA-256 is kept, with a prefix to tell keys apart."""

    __tablename__ = "api_keys"
    __table_args__ = (NEVER_REUSED,)

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64))
    # admin, manager or agent: what the key may do, as for staff members.
    role: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class ApiRequest(Base):
    """The answer to an API request that carried an Idempotency-Key, to give again on a retry."""

    __tablename__ = "api_requests"
    __table_args__ = (
        UniqueConstraint("api_key_id", "idem_key", name="uq_api_request_key"),
        Index("ix_api_request_created", "created_at"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    api_key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"))
    idem_key: Mapped[str] = mapped_column(String(128))
    method: Mapped[str] = mapped_column(String(8))
    path: Mapped[str] = mapped_column(String(512))
    # SHA-256 of the request body: the same key with another body is a client's mistake.
    fingerprint: Mapped[str] = mapped_column(String(64))
    status: Mapped[int] = mapped_column(Integer)
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Webhook(Base):
    """An outgoing webhook: events POSTed to a URL, signed with HMAC-SHA256 of its secret."""

    __tablename__ = "webhooks"
    __table_args__ = (NEVER_REUSED,)

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    url: Mapped[str] = mapped_column(Text)
    # Event names (message.received, message.status, contact.opted_in, contact.opted_out,
    # broadcast.finished); the secret is kept as is, since every delivery is signed with it.
    events: Mapped[list[str]] = mapped_column(JSON)
    secret: Mapped[str] = mapped_column(String(128))
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
