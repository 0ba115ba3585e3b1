"""Typed ids and the frozen dataclasses that cross the bridge's boundaries.

Connectors and staff surfaces turn wire payloads into these types at the edge; the pipeline,
the outbox and the commands only ever see these.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, time
from enum import IntEnum, StrEnum
from typing import Literal, NewType

Platform = NewType("Platform", str)
Platform.__doc__ = "A customer-side platform name, one of bridge.config_sections.PLATFORMS."
AccountId = NewType("AccountId", str)
AccountId.__doc__ = "One account on a platform: a bot id, a phone-number id, a page id, a number."
ChatId = NewType("ChatId", str)
ChatId.__doc__ = "The customer's address on the platform (Telegram chat id, wa_id, PSID, E.164)."
ExternalMessageId = NewType("ExternalMessageId", str)
ExternalMessageId.__doc__ = "A message id as the platform knows it."
ContactId = NewType("ContactId", int)
ConversationId = NewType("ConversationId", int)
MessageId = NewType("MessageId", int)
SurfaceName = NewType("SurfaceName", str)
SurfaceName.__doc__ = "A staff-side surface: slack or matrix."
ThreadRef = NewType("ThreadRef", str)
ThreadRef.__doc__ = "A staff thread, opaque outside its surface (Slack: '<channel>/<thread_ts>')."
StaffMessageRef = NewType("StaffMessageRef", str)
StaffMessageRef.__doc__ = "One message on a staff surface (Slack: '<channel>/<ts>')."
StaffUserId = NewType("StaffUserId", str)
StaffUserId.__doc__ = "A staff member's id on a surface (Slack 'U…', Matrix '@user:server')."

_PLACEHOLDER = re.compile(r"\{\{(\d+)\}\}")

TELEGRAM = Platform("telegram")
WHATSAPP = Platform("whatsapp")
MESSENGER = Platform("messenger")
SMS = Platform("sms")


class Role(IntEnum):
    """What a staff member may do; each role may do everything of the roles below it."""

    NONE = 0
    AGENT = 1  # reply to customers, use thread actions, look things up
    MANAGER = 2  # change channels, templates, text blocks, the blacklist; broadcast
    ADMIN = 3  # give roles

    @property
    def label(self) -> str:
        """The role's name as people type it."""
        return self.name.lower()


class MediaKind(StrEnum):
    """What kind of file an attachment is; platforms send each kind with its own call."""

    IMAGE = "image"
    DOCUMENT = "document"
    AUDIO = "audio"
    VIDEO = "video"


class DeliveryStatus(StrEnum):
    """Where an outbound message is on its way to the customer."""

    QUEUED = "queued"
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    FAILED = "failed"


class Consent(StrEnum):
    """A customer's opt-out or opt-in word, as the platform (or its carrier rules) defines it."""

    STOP = "stop"
    START = "start"


class ConversationStatus(StrEnum):
    """Whether a conversation still takes new customer messages into its thread."""

    OPEN = "open"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True, kw_only=True)
class Attachment:
    """A file as a reference on the platform it came from; fetched only when it is forwarded."""

    kind: MediaKind
    ref: str
    filename: str | None = None
    mime_type: str | None = None
    size: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class FileData:
    """A file's bytes, on their way from one side to the other."""

    kind: MediaKind
    filename: str
    data: bytes = field(repr=False)
    mime_type: str = "application/octet-stream"


@dataclass(frozen=True, slots=True, kw_only=True)
class CustomerProfile:
    """What the platform tells about the customer who wrote."""

    display_name: str
    username: str | None = None
    language: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class InboundMessage:
    """A customer's new message."""

    platform: Platform
    account: AccountId
    chat_id: ChatId
    external_id: ExternalMessageId
    profile: CustomerProfile
    text: str
    sent_at: datetime
    attachments: tuple[Attachment, ...] = ()
    # Where the customer came from: a Telegram /start payload, a Messenger m.me `ref`.
    start_payload: str | None = None
    # Set when the message is an opt-out/opt-in keyword the platform itself acts on (Twilio
    # STOP/START on long codes): the bridge records it on the contact.
    consent: Consent | None = None
    # The earlier message this one answers (its platform id), and what the platform itself
    # quotes of it (Telegram's reply_to_message text), for a message the bridge does not know.
    reply_to: ExternalMessageId | None = None
    quoted: str | None = None
    # The text with the customer's formatting in the staff dialect (Slack's mrkdwn), for the
    # thread only, when the platform sends formatting beside the text (Telegram's entities);
    # `text` stays the plain words rules, keywords, history and the API read.
    styled: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class InboundEdit:
    """A customer changed the text of a message they sent earlier."""

    platform: Platform
    account: AccountId
    chat_id: ChatId
    external_id: ExternalMessageId
    text: str
    edited_at: datetime
    styled: str | None = None  # as InboundMessage.styled


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusUpdate:
    """The platform reports what happened to a message the bridge sent."""

    platform: Platform
    account: AccountId
    external_id: ExternalMessageId
    status: DeliveryStatus
    at: datetime
    code: str | None = None
    reason: str | None = None
    # The platform refused because the customer unsubscribed (Twilio 21610 after STOP).
    opted_out: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class WatermarkUpdate:
    """Every message the bridge sent to this chat up to `watermark` has reached `status`.

    Messenger reports delivery and reads this way instead of per message.
    """

    platform: Platform
    account: AccountId
    chat_id: ChatId
    status: DeliveryStatus
    watermark: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class InboundReaction:
    """A customer's reactions on a message of their chat changed.

    `emoji` holds every reaction the customer has on the message after the change: WhatsApp
    and Messenger allow one per person (a new one replaces it), Telegram several; () when
    the customer took their reaction back."""

    platform: Platform
    account: AccountId
    chat_id: ChatId
    target: ExternalMessageId
    emoji: tuple[str, ...]
    at: datetime


InboundEvent = InboundMessage | InboundEdit | InboundReaction | StatusUpdate | WatermarkUpdate


@dataclass(frozen=True, slots=True, kw_only=True)
class TemplateCall:
    """An approved WhatsApp message template to send, with its body parameters in order."""

    name: str
    language: str
    params: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Template:
    """A message template the platform has approved (or not) for use outside the window."""

    name: str
    language: str
    status: str
    category: str | None = None
    body: str | None = None

    @property
    def param_count(self) -> int:
        """How many numbered parameters ({{1}}, {{2}}…) the body takes."""
        return len(set(_PLACEHOLDER.findall(self.body or "")))


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboundMessage:
    """A message for one customer on their platform."""

    platform: Platform
    account: AccountId
    chat_id: ChatId
    text: str
    files: tuple[FileData, ...] = ()
    # Instead of free text: an approved template (WhatsApp only).
    template: TemplateCall | None = None
    # When the customer last wrote: decides Messenger's messaging_type (RESPONSE or tagged).
    last_inbound_at: datetime | None = None
    # A stable key per outbox row, for platforms that accept one to avoid sending twice.
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class StaffMessage:
    """Something a staff member wrote in a conversation's thread."""

    surface: SurfaceName
    thread: ThreadRef
    ref: StaffMessageRef
    author: StaffUserId
    text: str
    at: datetime
    author_name: str | None = None
    attachments: tuple[Attachment, ...] = ()
    # The author is not one of the bridge's own staff (a Slack Connect member of another
    # organisation, a workspace the bridge does not serve): role `none` whatever is stored.
    stranger: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class StaffEdit:
    """A staff member changed a message of theirs in a thread."""

    surface: SurfaceName
    ref: StaffMessageRef
    text: str
    # Who made the change (None: the surface could not tell, and it counts as no role).
    author: StaffUserId | None = None
    stranger: bool = False
    # The change's own message, where the surface has one (a Matrix edit event).
    event: StaffMessageRef | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class StaffDelete:
    """A staff member deleted a message of theirs in a thread."""

    surface: SurfaceName
    ref: StaffMessageRef
    author: StaffUserId | None = None
    stranger: bool = False
    event: StaffMessageRef | None = None


StaffEvent = StaffMessage | StaffEdit | StaffDelete


@dataclass(frozen=True, slots=True, kw_only=True)
class ContactCard:
    """The facts a thread's root message shows about the customer and the conversation."""

    conversation_id: ConversationId
    contact_id: ContactId
    display_name: str
    username: str | None
    platform: Platform
    chat_id: ChatId
    first_contact: datetime
    message_count: int
    status: ConversationStatus
    opt_in_source: str | None = None
    previous_thread_url: str | None = None
    account: AccountId | None = None
    # The customer unsubscribed (SMS STOP); nothing is sent to them until they opt back in.
    opted_out: bool = False
    # The staff member the conversation is assigned to (a surface's user id), if any.
    assigned_to: str | None = None
    # A blacklist entry: the direction it blocks (in, out, both) and until when (None: for good).
    blocked: str | None = None
    blocked_until: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class MirrorPost:
    """A message to show in a staff thread on behalf of the customer (or the bridge)."""

    author: str
    text: str
    files: tuple[FileData, ...] = ()
    edited: bool = False
    marker: str | None = None
    # Who is speaking, stable across messages ("telegram_123"), when it is a customer: a
    # surface that can show each customer as their own user (a Matrix appservice) uses it.
    customer: str | None = None
    # What the message answers, shown above it as a quote (the customer replied to it).
    quote: str | None = None
    # The post of the message it answers in this thread, when the bridge knows it: a surface
    # with replies of its own (Matrix) makes the post a reply to it.
    reply_to: StaffMessageRef | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ReactionChange:
    """A customer's reactions on one message in a staff thread changed: what to add and
    what to take away."""

    author: str
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    # The customer as a MirrorPost names them, for a surface that shows customers as users.
    customer: str | None = None
    # The start of the message reacted to, for a line in the thread that names it.
    on: str = ""
    # The outbox row showing the change: a line in the thread carries it, and when the row
    # was attempted before (`again`: a crash or a timeout), a line found with it is not
    # posted twice.
    marker: str | None = None
    again: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class RateLimit:
    """A token bucket: `rate` sends per second on average, `burst` at once."""

    rate: float
    burst: float = 1.0


# -- the chatbot rule model (matched by bridge.rules, stored by storage.rules_store) ------------

KeywordType = Literal["always", "rest", "contain", "regexp"]
LimitType = Literal["always", "once", "every"]


@dataclass(frozen=True, slots=True)
class Action:
    """What a rule does when it fires.

    `kind` is one of bridge.rules.ACTIONS. `target`: mailForward an e-mail address;
    webserviceForward and httpBotFwd an http(s) URL; smsFwd a number in international format
    (+4915…);
    addToChannel/removeFromChannel a channel name; i18nStop a language code, or None for all.
    `text`: autoAnswer the answer; autoAnswerMedia an optional caption; mailForward the body
    and smsFwd the SMS (both optional, the caller has a default). `subject`: mailForward.
    `media_id`: autoAnswerMedia, a stored file. Texts, subjects and e-mail/URL targets may
    hold placeholders such as {MSG}.
    """

    kind: str
    target: str | None = None
    text: str | None = None
    subject: str | None = None
    media_id: int | None = None


@dataclass(frozen=True, slots=True)
class Rule:
    """One chatbot rule; bridge.rules says what the fields mean when matching."""

    id: int
    name: str
    keyword_type: KeywordType
    pattern: str | None = None
    platforms: frozenset[str] = frozenset()
    start: time | None = None
    end: time | None = None
    weekdays: frozenset[int] = frozenset(range(7))
    limit: LimitType = "always"
    limit_seconds: int | None = None
    priority: int = 0
    enabled: bool = True
    actions: tuple[Action, ...] = ()
