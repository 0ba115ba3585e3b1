"""Typed outbox jobs: each row kind, its payload as a frozen dataclass, and how its row is built.

This is the only place where an outbox row's kind, payload keys, idempotency key and lane are
spelled. Rows outlive upgrades (a row queued before a restart is carried out after it), so every
persisted spelling here keeps its bytes: a broadcast recipient's payload keeps its short keys
"b", "c", "p", "a", "chat", "n" although its fields read `broadcast`, `contact`, and so on.

Each payload class offers `to_payload()` (the row's payload, key for key and in order as the
producers have always written it), `from_payload()`/`from_job()` (reading it back, tolerant of
the keys its handler has always treated as optional) and `new_job(...)`, the `NewJob` with its
kind, idempotency key, lane and rate keys (the rate keys come from the connector or surface that
carries the row out). A field's stored key is written beside it: `Annotated[..., Key("conv")]`;
the few payloads whose shape depends on where they come from spell it out by hand.

A broadcast's recipient rows are also written in SQL by storage (one INSERT … SELECT per batch
of the audience, see `tx.broadcasts.expand`); `BroadcastSendJob` spells the same format, and a
test holds the two together.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from enum import Enum, StrEnum
from typing import Annotated, Any, ClassVar, Self, get_type_hints

from bridge.types import (
    AccountId,
    ChatId,
    ContactId,
    ConversationId,
    DeliveryStatus,
    MessageId,
    Platform,
    StaffMessageRef,
    StaffUserId,
    SurfaceName,
    TemplateCall,
    ThreadRef,
)
from storage.queries import Job, NewJob

# The widths of the outbox's `idem_key` and `lane` columns.
KEY_MAX = 256
LANE_MAX = 128


class JobKind(StrEnum):
    """Every kind of outbox row; the values are stored in the rows and never change."""

    STAFF_OPEN = "staff.open"
    STAFF_POST = "staff.post"
    STAFF_CARD = "staff.card"
    STAFF_EDIT = "staff.edit"
    STAFF_MARK = "staff.mark"
    STAFF_NOTICE = "staff.notice"
    STAFF_TELL = "staff.tell"
    STAFF_WINDOW = "staff.window"
    STAFF_TOMBSTONE = "staff.tombstone"
    STAFF_REACT = "staff.react"
    CUSTOMER_SEND = "customer.send"
    CUSTOMER_EDIT = "customer.edit"
    CUSTOMER_DELETE = "customer.delete"
    RULE_MAIL = "rule.mail"
    RULE_HTTP = "rule.http"
    RULE_SMS = "rule.sms"
    BROADCAST_EXPAND = "broadcast.expand"
    BROADCAST_SEND = "broadcast.send"
    BROADCAST_PROGRESS = "broadcast.progress"
    BROADCAST_PUBLISH = "broadcast.publish"
    WEBHOOK_DELIVER = "webhook.deliver"


def thread_lane(conversation: int, surface: str) -> str:
    """The lane of a conversation's rows on one surface: its thread's posts stay in order."""
    return f"c{conversation}:{surface}"


def customer_lane(conversation: int) -> str:
    """The lane of what a conversation sends to the customer: one message after another."""
    return f"c{conversation}:out"


def webhook_lane(webhook_id: int) -> str:
    """The lane (and rate key) of a subscription's deliveries: one after another, in order."""
    return f"wh:{webhook_id}"


def broadcast_key_range(broadcast_id: int) -> tuple[str, str]:
    """Bounds of a broadcast's recipient keys (for an index range scan)."""
    return f"bc:{broadcast_id}:", f"bc:{broadcast_id};"


@dataclass(frozen=True, slots=True)
class Key:
    """Where a payload field is stored: its key for good, how a stored value is read back
    (`read`), whether a row may lack it (`optional`: then read from None), and whether it is
    written only when set (`if_set`: rows without it keep the bytes they always had)."""

    name: str
    read: Callable[[Any], Any] | None = None
    optional: bool = False
    if_set: bool = False


_KEYS: dict[type, tuple[tuple[str, Key], ...]] = {}


def _keys(cls: type) -> tuple[tuple[str, Key], ...]:
    """A payload class's fields with their keys, in the payload's order (worked out once)."""
    found = _KEYS.get(cls)
    if found is None:
        hints = get_type_hints(cls, include_extras=True)
        found = tuple((f.name, _key_of(cls, f.name, hints[f.name])) for f in fields(cls))
        _KEYS[cls] = found
    return found


def _key_of(cls: type, name: str, hint: Any) -> Key:
    for extra in getattr(hint, "__metadata__", ()):
        if isinstance(extra, Key):
            return extra
    raise TypeError(f"{cls.__name__}.{name} names no stored key: Annotated[..., Key(...)]")


class JobPayload:
    """What every payload class offers: its kind, its payload, and reading it back."""

    __slots__ = ()
    KIND: ClassVar[JobKind]

    def to_payload(self) -> dict[str, Any]:
        """The row's payload, key for key as it is stored."""
        payload = {}
        for name, key in _keys(type(self)):
            value = getattr(self, name)
            if value is None and key.if_set:
                continue
            payload[key.name] = value.value if isinstance(value, Enum) else value
        return payload

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> Self:
        """Read a stored payload back."""
        values = {}
        for name, key in _keys(cls):
            raw = payload.get(key.name) if key.optional else payload[key.name]
            values[name] = key.read(raw) if key.read is not None else raw
        return cls(**values)

    @classmethod
    def from_job(cls, job: Job) -> Self:
        """Read a pending row's payload."""
        return cls.from_payload(job.payload)

    def _row(
        self,
        idem_key: str,
        lane: str,
        rate_keys: Sequence[str] = (),
        *,
        next_at: float = 0.0,
        bulk: bool = False,
    ) -> NewJob:
        return NewJob(
            kind=self.KIND.value,
            idem_key=idem_key,
            lane=lane,
            payload=self.to_payload(),
            rate_keys=tuple(rate_keys),
            next_at=next_at,
            bulk=bulk,
        )


def _files(payload: Mapping[str, Any]) -> tuple[Mapping[str, Any], ...]:
    return tuple(payload.get("files") or ())


# -- into the staff threads --------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class StaffOpenJob(JobPayload):
    """staff.open: open a conversation's thread on a surface, in a channel (None: the default)."""

    KIND: ClassVar[JobKind] = JobKind.STAFF_OPEN
    conversation: Annotated[ConversationId, Key("conv")]
    surface: Annotated[SurfaceName, Key("surface")]
    channel: Annotated[str | None, Key("channel", optional=True)]

    def new_job(self, rate_keys: Sequence[str]) -> NewJob:
        """The row: one per conversation and surface."""
        key = f"open:{self.conversation}:{self.surface}"
        return self._row(key, thread_lane(self.conversation, self.surface), rate_keys)


@dataclass(frozen=True, slots=True, kw_only=True)
class StaffPostJob(JobPayload):
    """staff.post: a message shown in the conversation's thread.

    Either a customer's message (`platform`, `account` and `chat` say where its files are
    fetched), or what staff wrote on another surface (`origin`: its files are fetched there,
    and it stays under the writer's name); the payload holds the keys of one or the other."""

    KIND: ClassVar[JobKind] = JobKind.STAFF_POST
    conversation: ConversationId
    surface: SurfaceName
    message: MessageId
    author: str
    text: str
    files: tuple[Mapping[str, Any], ...] = ()
    platform: Platform | None = None
    account: AccountId | None = None
    chat: ChatId | None = None
    origin: SurfaceName | None = None
    quote: str | None = None  # what a customer's reply answers; stored only when there is one
    answers: MessageId | None = None  # the stored message it answers, when the bridge has it
    # The text with the customer's formatting (InboundMessage.styled); stored only when set.
    styled: str | None = None

    def to_payload(self) -> dict[str, Any]:
        """The row's payload, key for key as it is stored."""
        payload: dict[str, Any] = {
            "conv": self.conversation,
            "surface": self.surface,
            "msg": self.message,
            "author": self.author,
            "text": self.text,
            "files": [dict(f) for f in self.files],
        }
        if self.origin is not None:
            payload["origin"] = self.origin
        else:
            payload.update(platform=self.platform, account=self.account, chat=self.chat)
        if self.quote is not None:
            payload["quote"] = self.quote
        if self.answers is not None:
            payload["answers"] = self.answers
        if self.styled is not None:
            payload["styled"] = self.styled
        return payload

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> Self:
        """Read a stored payload back."""
        return cls(
            conversation=ConversationId(payload["conv"]),
            surface=SurfaceName(payload["surface"]),
            message=MessageId(payload["msg"]),
            # Read as the notice of a lost message always read it: a missing author is none.
            author=payload.get("author") or "",
            text=payload["text"],
            files=_files(payload),
            platform=payload.get("platform"),
            account=payload.get("account"),
            chat=payload.get("chat"),
            origin=payload.get("origin"),
            quote=payload.get("quote"),
            answers=MessageId(payload["answers"]) if payload.get("answers") else None,
            styled=payload.get("styled"),
        )

    def new_job(self, rate_keys: Sequence[str]) -> NewJob:
        """The row: one per message and surface (an echo of staff's words has its own key)."""
        cause = "echo" if self.origin is not None else "post"
        key = f"{cause}:{self.message}:{self.surface}"
        return self._row(key, thread_lane(self.conversation, self.surface), rate_keys)


@dataclass(frozen=True, slots=True, kw_only=True)
class StaffCardJob(JobPayload):
    """staff.card: redraw the contact card at the top of the conversation's thread."""

    KIND: ClassVar[JobKind] = JobKind.STAFF_CARD
    conversation: Annotated[ConversationId, Key("conv")]
    surface: Annotated[SurfaceName, Key("surface")]

    def new_job(self, rate_keys: Sequence[str], *, window: int | None, every: float) -> NewJob:
        """The row. With a `window` (a count of `every` seconds), one per conversation per
        window, carried out when the window ends; without, one right away."""
        when = window if window is not None else time.time()
        return self._row(
            f"card:{self.conversation}:{self.surface}:{when}",
            f"card{self.conversation}:{self.surface}",
            rate_keys,
            next_at=(window + 1) * every if window is not None else 0.0,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class StaffEditJob(JobPayload):
    """staff.edit: show a customer's edit of their message in the thread."""

    KIND: ClassVar[JobKind] = JobKind.STAFF_EDIT
    conversation: Annotated[ConversationId, Key("conv")]
    surface: Annotated[SurfaceName, Key("surface")]
    message: Annotated[MessageId, Key("msg")]
    # The new text with the customer's formatting (InboundEdit.styled).
    styled: Annotated[str | None, Key("styled", optional=True, if_set=True)] = None

    def new_job(self, rate_keys: Sequence[str], *, edited_at: datetime) -> NewJob:
        """The row: one per edit."""
        key = f"edit:{self.message}:{self.surface}:{edited_at.timestamp()}"
        return self._row(key, thread_lane(self.conversation, self.surface), rate_keys)


@dataclass(frozen=True, slots=True, kw_only=True)
class StaffMarkJob(JobPayload):
    """staff.mark: show a delivery status on a staff member's message."""

    KIND: ClassVar[JobKind] = JobKind.STAFF_MARK
    surface: Annotated[SurfaceName, Key("surface")]
    ref: Annotated[StaffMessageRef, Key("ref")]
    status: Annotated[DeliveryStatus, Key("status", DeliveryStatus)]

    def new_job(self, conversation: int, message: int, rate_keys: Sequence[str]) -> NewJob:
        """The row of a message's status: one per message, surface and status."""
        key = f"mark:{message}:{self.surface}:{self.status.value}"
        return self._row(key, thread_lane(conversation, self.surface), rate_keys)

    def refused_job(self, conversation: int, rate_keys: Sequence[str]) -> NewJob:
        """The row marking a staff action refused for want of a role: one per action."""
        key = f"mark:refused:{self.surface}:{self.ref}"
        return self._row(key, thread_lane(conversation, self.surface), rate_keys)


@dataclass(frozen=True, slots=True, kw_only=True)
class StaffNoticeJob(JobPayload):
    """staff.notice: a notice from the bridge in the conversation's thread."""

    KIND: ClassVar[JobKind] = JobKind.STAFF_NOTICE
    conversation: Annotated[ConversationId, Key("conv")]
    surface: Annotated[SurfaceName, Key("surface")]
    text: Annotated[str, Key("text")]

    def new_job(self, cause: str, rate_keys: Sequence[str]) -> NewJob:
        """The row: one per `cause` (what the notice is about) and surface."""
        key = f"notice:{cause}:{self.surface}"
        return self._row(key, thread_lane(self.conversation, self.surface), rate_keys)


@dataclass(frozen=True, slots=True, kw_only=True)
class StaffTellJob(JobPayload):
    """staff.tell: tell one person in a thread something only they are meant to read."""

    KIND: ClassVar[JobKind] = JobKind.STAFF_TELL
    surface: Annotated[SurfaceName, Key("surface")]
    thread: Annotated[ThreadRef, Key("thread")]
    user: Annotated[StaffUserId | None, Key("user", optional=True)]
    ref: Annotated[StaffMessageRef, Key("ref")]  # the event it answers
    text: Annotated[str, Key("text")]

    def new_job(self, conversation: int, what: str, rate_keys: Sequence[str]) -> NewJob:
        """The row: one per `what` (the refused action) and event answered."""
        key = f"tell:{what}:{self.surface}:{self.ref}"
        return self._row(key, thread_lane(conversation, self.surface), rate_keys)


@dataclass(frozen=True, slots=True, kw_only=True)
class StaffWindowJob(JobPayload):
    """staff.window: a reply was not sent; the notice lists the templates that could be."""

    KIND: ClassVar[JobKind] = JobKind.STAFF_WINDOW
    conversation: Annotated[ConversationId, Key("conv")]
    surface: Annotated[SurfaceName, Key("surface")]
    platform: Annotated[Platform, Key("platform")]
    account: Annotated[AccountId, Key("account")]
    reason: Annotated[str, Key("reason")]

    def new_job(self, message: int, rate_keys: Sequence[str]) -> NewJob:
        """The row: one per message not sent and surface."""
        key = f"window:{message}:{self.surface}"
        return self._row(key, thread_lane(self.conversation, self.surface), rate_keys)


@dataclass(frozen=True, slots=True, kw_only=True)
class StaffTombstoneJob(JobPayload):
    """staff.tombstone: clear an erased contact's thread, leaving a tombstone text."""

    KIND: ClassVar[JobKind] = JobKind.STAFF_TOMBSTONE
    surface: Annotated[SurfaceName, Key("surface")]
    thread: Annotated[ThreadRef, Key("thread")]
    text: Annotated[str, Key("text")]

    def new_job(self, rate_keys: Sequence[str]) -> NewJob:
        """The row: one per thread, named by the thread alone (it outlives the contact's id)."""
        name = f"forget:{self.surface}:{self.thread}"
        return self._row(name[:KEY_MAX], name[:LANE_MAX], rate_keys)


@dataclass(frozen=True, slots=True, kw_only=True)
class StaffReactJob(JobPayload):
    """staff.react: show a customer's changed reactions on the post of a message in the
    thread (their own message's mirror, or the agent's message they reacted to)."""

    KIND: ClassVar[JobKind] = JobKind.STAFF_REACT
    conversation: Annotated[ConversationId, Key("conv")]
    surface: Annotated[SurfaceName, Key("surface")]
    message: Annotated[MessageId, Key("msg")]
    author: Annotated[str, Key("author")]  # the customer's name, for a line in the thread
    added: Annotated[tuple[str, ...], Key("added", tuple)]
    removed: Annotated[tuple[str, ...], Key("removed", tuple)]
    customer: Annotated[str | None, Key("customer", optional=True)]

    def to_payload(self) -> dict[str, Any]:
        """The row's payload, key for key as it is stored (lists for the emoji, as JSON has)."""
        payload = JobPayload.to_payload(self)
        payload["added"], payload["removed"] = list(self.added), list(self.removed)
        return payload

    def new_job(self, cause: str, rate_keys: Sequence[str]) -> NewJob:
        """The row: one per `cause` (the count of the message's reaction changes) and
        surface, in the thread's lane, after the post it reacts to."""
        name = f"react:{self.message}:{self.surface}:{cause}"
        return self._row(name, thread_lane(self.conversation, self.surface), rate_keys)


# -- to the customer ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class CustomerSendJob(JobPayload):
    """customer.send: a message to the customer, from staff or from the bridge itself.

    A staff reply names the surface and the message it was written as (`surface` and `ref`,
    None when it came through the API); the bridge's own answers (`automatic`: a rule, a
    keyword, a bot) name neither, not even as None."""

    KIND: ClassVar[JobKind] = JobKind.CUSTOMER_SEND
    conversation: ConversationId
    message: MessageId
    platform: Platform
    account: AccountId
    chat: ChatId
    text: str
    files: tuple[Mapping[str, Any], ...] = ()
    surface: SurfaceName | None = None
    ref: StaffMessageRef | None = None
    automatic: bool = False
    last_inbound: float | None = None  # epoch seconds of the customer's last message
    template: TemplateCall | None = None  # a template's language "" is looked up at send

    def to_payload(self) -> dict[str, Any]:
        """The row's payload, key for key as it is stored."""
        payload: dict[str, Any] = {
            "conv": self.conversation,
            "msg": self.message,
            "platform": self.platform,
            "account": self.account,
            "chat": self.chat,
            "text": self.text,
            "files": [dict(f) for f in self.files],
        }
        if not self.automatic:
            payload.update(surface=self.surface, ref=self.ref)
        payload["last_in"] = self.last_inbound
        if self.template is not None:
            payload["template"] = {
                "name": self.template.name,
                "language": self.template.language,
                "params": list(self.template.params),
            }
        return payload

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> Self:
        """Read a stored payload back."""
        spec = payload.get("template")
        template = None
        if spec:
            template = TemplateCall(
                name=spec["name"],
                language=spec.get("language") or "",
                params=tuple(spec["params"]),
            )
        return cls(
            conversation=ConversationId(payload["conv"]),
            message=MessageId(payload["msg"]),
            platform=Platform(payload["platform"]),
            account=AccountId(payload["account"]),
            chat=ChatId(payload["chat"]),
            text=payload["text"],
            files=_files(payload),
            surface=payload.get("surface"),
            ref=payload.get("ref"),
            automatic="surface" not in payload and "ref" not in payload,
            last_inbound=payload.get("last_in"),
            template=template,
        )

    def new_job(self, rate_keys: Sequence[str], *, cause: str | None = None) -> NewJob:
        """The row: one per stored message, or for the bridge's own answer one per `cause`
        (what it answers) on the account."""
        if cause is not None:
            key = f"auto:{self.platform}:{self.account}:{cause}"
        else:
            key = f"send:{self.message}"
        return self._row(key, customer_lane(self.conversation), rate_keys)


@dataclass(frozen=True, slots=True, kw_only=True)
class CustomerChange(JobPayload):
    """What an edit or a deletion for the customer names: the message, in its conversation."""

    conversation: Annotated[ConversationId, Key("conv")]
    message: Annotated[MessageId, Key("msg")]


@dataclass(frozen=True, slots=True, kw_only=True)
class CustomerEditJob(CustomerChange):
    """customer.edit: apply a staff member's edit to the message the customer received."""

    KIND: ClassVar[JobKind] = JobKind.CUSTOMER_EDIT

    def new_job(self, rate_keys: Sequence[str]) -> NewJob:
        """The row: one per edit, after any send of the same message."""
        key = f"cedit:{self.message}:{time.time()}"
        return self._row(key, customer_lane(self.conversation), rate_keys)


@dataclass(frozen=True, slots=True, kw_only=True)
class CustomerDeleteJob(CustomerChange):
    """customer.delete: delete, for the customer, a message staff deleted in the thread."""

    KIND: ClassVar[JobKind] = JobKind.CUSTOMER_DELETE

    def new_job(self, rate_keys: Sequence[str]) -> NewJob:
        """The row: one per message, after any send or edit of it."""
        return self._row(f"cdel:{self.message}", customer_lane(self.conversation), rate_keys)


# -- rule forwards -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class RuleMailJob(JobPayload):
    """rule.mail: a rule forwards a customer's message by mail."""

    KIND: ClassVar[JobKind] = JobKind.RULE_MAIL
    to: Annotated[str, Key("to")]
    subject: Annotated[str, Key("subject")]
    body: Annotated[str, Key("body")]
    conversation: Annotated[ConversationId, Key("conv")]
    rule: Annotated[str | None, Key("rule", optional=True)]  # the rule's name

    def new_job(self, cause: str) -> NewJob:
        """The row: one per `cause` (the rule's action on a message); all mail shares a rate."""
        return self._row(f"mail:{cause}", f"rulemail:{self.conversation}", ("mail",))


@dataclass(frozen=True, slots=True, kw_only=True)
class RuleHttpJob(JobPayload):
    """rule.http: a rule POSTs a customer's message to a web service; with `answer` (a bot),
    what the service answers is sent to the customer."""

    KIND: ClassVar[JobKind] = JobKind.RULE_HTTP
    url: Annotated[str, Key("url")]
    body: Annotated[Mapping[str, Any], Key("body")]
    answer: Annotated[bool, Key("answer", bool, optional=True)]
    conversation: Annotated[ConversationId, Key("conv")]
    contact: Annotated[ContactId, Key("contact")]
    platform: Annotated[Platform, Key("platform")]
    account: Annotated[AccountId, Key("account")]
    chat: Annotated[ChatId, Key("chat")]
    rule: Annotated[str | None, Key("rule", optional=True)]  # the rule's name
    # The rule's action on a message: the row's key, and the key of the bot's answer.
    cause: Annotated[str, Key("cause")]

    def new_job(self) -> NewJob:
        """The row: one per cause; the service's own rate is its business."""
        return self._row(f"http:{self.cause}", f"rulehttp:{self.conversation}")


@dataclass(frozen=True, slots=True, kw_only=True)
class RuleSmsJob(JobPayload):
    """rule.sms: a rule forwards a customer's message as SMS to a fixed number."""

    KIND: ClassVar[JobKind] = JobKind.RULE_SMS
    number: Annotated[str, Key("number")]
    account: Annotated[AccountId, Key("account")]  # the SMS account that sends it
    text: Annotated[str, Key("text")]
    conversation: Annotated[ConversationId, Key("conv")]
    rule: Annotated[str | None, Key("rule", optional=True)]  # the rule's name

    def new_job(self, cause: str, rate_keys: Sequence[str]) -> NewJob:
        """The row: one per `cause` (the rule's action on a message)."""
        return self._row(f"sms:{cause}", f"rulesms:{self.conversation}", rate_keys)


# -- broadcasts --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class BroadcastExpandJob(JobPayload):
    """broadcast.expand: queue a broadcast's audience into the outbox, batch by batch."""

    KIND: ClassVar[JobKind] = JobKind.BROADCAST_EXPAND
    broadcast: Annotated[int, Key("b", int)]

    def new_job(self, *, next_at: float) -> NewJob:
        """The row: one per broadcast, at its time."""
        key = f"bcx:{self.broadcast}:0"
        return self._row(key, f"bcx:{self.broadcast}", next_at=next_at)


@dataclass(frozen=True, slots=True, kw_only=True)
class BroadcastSendJob(JobPayload):
    """broadcast.send: one recipient of a broadcast (written by storage's expansion in SQL)."""

    KIND: ClassVar[JobKind] = JobKind.BROADCAST_SEND
    broadcast: Annotated[int, Key("b", int)]
    contact: Annotated[ContactId, Key("c", int)]
    platform: Annotated[Platform, Key("p")]
    account: Annotated[AccountId, Key("a")]
    chat: Annotated[ChatId, Key("chat")]
    name: Annotated[str, Key("n")]  # the contact's display name, "" when none

    def new_job(self, rate_keys: Sequence[str]) -> NewJob:
        """The row: one per broadcast and contact (never sent twice), in the contact's lane."""
        key = f"bc:{self.broadcast}:{self.contact}"
        return self._row(key, f"bc:{self.contact}", rate_keys, bulk=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class BroadcastProgressJob(JobPayload):
    """broadcast.progress: update the progress message; each run queues the next (`number`
    counts them) until the broadcast ends."""

    KIND: ClassVar[JobKind] = JobKind.BROADCAST_PROGRESS
    broadcast: Annotated[int, Key("b", int)]
    number: Annotated[int, Key("n", int)]

    def following(self) -> BroadcastProgressJob:
        """The next update of the same broadcast."""
        return BroadcastProgressJob(broadcast=self.broadcast, number=self.number + 1)

    def new_job(self, *, next_at: float) -> NewJob:
        """The row: one per update."""
        key = f"bcp:{self.broadcast}:{self.number}"
        return self._row(key, f"bcp:{self.broadcast}", next_at=next_at)


@dataclass(frozen=True, slots=True, kw_only=True)
class BroadcastPublishJob(JobPayload):
    """broadcast.publish: post a broadcast's text on a publishing target (a page, X)."""

    KIND: ClassVar[JobKind] = JobKind.BROADCAST_PUBLISH
    broadcast: Annotated[int, Key("b", int)]
    target: Annotated[str, Key("t", str)]

    def new_job(self, *, next_at: float) -> NewJob:
        """The row: one per broadcast and target. One rate key per target: a 429 from X holds
        back every broadcast's post to X."""
        name = f"bcpub:{self.broadcast}:{self.target}"
        return self._row(name, name, (f"publish:{self.target}",), next_at=next_at)


# -- outgoing webhooks -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class WebhookDeliverJob(JobPayload):
    """webhook.deliver: POST one event to one subscription; `contact`, when the event is
    about one, drops it should the contact be erased before it leaves."""

    KIND: ClassVar[JobKind] = JobKind.WEBHOOK_DELIVER
    webhook: int
    event: Mapping[str, Any]  # the JSON object POSTed: {"id", "type", "created_at", "data"}
    contact: int | None = None

    def to_payload(self) -> dict[str, Any]:
        """The row's payload, key for key as it is stored."""
        payload: dict[str, Any] = {"webhook": self.webhook, "event": dict(self.event)}
        if self.contact is not None:
            payload["contact"] = self.contact
        return payload

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> Self:
        """Read a stored payload back."""
        return cls(
            webhook=int(payload["webhook"]),
            event=payload["event"],
            contact=payload.get("contact"),
        )

    def new_job(self) -> NewJob:
        """The row: one per subscription and event, in the subscription's lane and rate."""
        event_id = str(self.event["id"])
        key = f"wh:{self.webhook}:{event_id}"
        if len(key) > KEY_MAX:  # an event id made of a long platform id
            digest = hashlib.sha256(event_id.encode()).hexdigest()
            key = f"wh:{self.webhook}:sha256:{digest}"
        lane = webhook_lane(self.webhook)
        return self._row(key, lane, (lane,))


PAYLOADS: Mapping[JobKind, type[JobPayload]] = {
    cls.KIND: cls
    for cls in (
        StaffOpenJob,
        StaffPostJob,
        StaffCardJob,
        StaffEditJob,
        StaffMarkJob,
        StaffNoticeJob,
        StaffTellJob,
        StaffWindowJob,
        StaffTombstoneJob,
        StaffReactJob,
        CustomerSendJob,
        CustomerEditJob,
        CustomerDeleteJob,
        RuleMailJob,
        RuleHttpJob,
        RuleSmsJob,
        BroadcastExpandJob,
        BroadcastSendJob,
        BroadcastProgressJob,
        BroadcastPublishJob,
        WebhookDeliverJob,
    )
}
"""The payload class of each kind."""
