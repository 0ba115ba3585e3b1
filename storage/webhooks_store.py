"""Outgoing webhooks: subscriptions, and the outbox rows that deliver an event to them.

A subscription names a URL, the event types it wants and the secret its deliveries are signed
with. An event becomes one `webhook.deliver` row per active subscription that wants it, in the
transaction that stores what caused it: the row's key `wh:<subscription>:<event id>` makes a
repeated event a no-op, and its lane `wh:<subscription>` hands one subscriber its events in
order. Slash commands and the REST API both manage subscriptions through `WebhookStore`.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import delete, func, select, update

from storage.records import NewJob, Repository
from storage.tables import contacts, conversations, messages, outbox, webhooks

# The event types a subscription may ask for; `all` stands for every one, including types
# added later. `ping` is only ever sent on request, to the subscription it names.
EVENT_TYPES = (
    "message.received",
    "message.status",
    "contact.opted_in",
    "contact.opted_out",
    "broadcast.finished",
)
ALL = "all"
PING = "ping"
DELIVER = "webhook.deliver"
# Active subscriptions are read again at most this often by the inbound path (and at once
# after a change made in this process).
CACHE_S = 5.0
SECRET_BYTES = 32
URL_MAX = 2048
# The outbox's idempotency key column.
IDEM_KEY_MAX = 256


@dataclass(frozen=True, slots=True)
class WebhookRecord:
    """A subscription: where events go, which ones, and the secret that signs them."""

    id: int
    url: str
    events: tuple[str, ...]
    secret: str = field(repr=False)
    created_by: str
    created_at: datetime
    active: bool

    def wants(self, event_type: str) -> bool:
        """Whether events of this type go to this subscription."""
        return ALL in self.events or event_type in self.events


@dataclass(frozen=True, slots=True)
class WebhookEvent:
    """One event, as subscribers receive it: `{"id", "type", "created_at", "data"}`."""

    # Derived from what caused the event, so the same cause never makes two events.
    id: str
    type: str
    created_at: datetime
    data: Mapping[str, Any]
    # The contact the event is about: erasing the contact drops its undelivered events too.
    contact_id: int | None = None

    def body(self) -> dict[str, Any]:
        """The JSON object POSTed to subscribers."""
        return {
            "id": self.id,
            "type": self.type,
            "created_at": iso(self.created_at),
            "data": dict(self.data),
        }


def iso(value: datetime | None) -> str | None:
    """A time as subscribers see it: ISO 8601 in UTC, e.g. 2026-12-01T09:30:00.000Z."""
    if value is None:
        return None
    if value.tzinfo is None:  # SQLite hands back naive UTC
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _record(row: Any) -> WebhookRecord:
    m = row._mapping
    return WebhookRecord(
        id=int(m["id"]),
        url=m["url"],
        events=tuple(m["events"] or ()),
        secret=m["secret"],
        created_by=m["created_by"],
        created_at=m["created_at"],
        active=bool(m["active"]),
    )


def check_url(url: str) -> str:
    """The URL if events can be POSTed to it (http or https, with a host); else ValueError."""
    url = url.strip()
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises on a port that is not a number)
    except ValueError:
        raise ValueError(f"{url} is not a URL") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise ValueError("a webhook URL must start with https:// (or http://)")
    if not parts.hostname:
        raise ValueError(f"{url} names no host")
    if len(url) > URL_MAX:
        raise ValueError(f"a webhook URL may be {URL_MAX} characters long at most")
    if any(c.isspace() for c in url):
        raise ValueError("a webhook URL has no spaces")
    return url


def parse_events(words: Iterable[str]) -> tuple[str, ...]:
    """Event types from `message.received,contact.opted_out` or `all`; else ValueError."""
    wanted: list[str] = []
    for word in words:
        for part in word.split(","):
            name = part.strip().lower()
            if name and name not in wanted:
                wanted.append(name)
    if not wanted:
        raise ValueError(f"name the events: {', '.join(EVENT_TYPES)} or {ALL}")
    unknown = [name for name in wanted if name not in (*EVENT_TYPES, ALL)]
    if unknown:
        raise ValueError(
            f"unknown event{'s' if len(unknown) > 1 else ''} {', '.join(unknown)};"
            f" choose from {', '.join(EVENT_TYPES)} or {ALL}"
        )
    return (ALL,) if ALL in wanted else tuple(wanted)


def new_secret() -> str:
    """A fresh signing secret: 64 hex digits."""
    return secrets.token_hex(SECRET_BYTES)


def lane(webhook_id: int) -> str:
    """The outbox lane of a subscription's deliveries: one after another, in order."""
    return f"wh:{webhook_id}"


def deliver_job(webhook_id: int, event: WebhookEvent) -> NewJob:
    """The outbox row that delivers one event to one subscription."""
    payload: dict[str, Any] = {"webhook": webhook_id, "event": event.body()}
    if event.contact_id is not None:
        payload["contact"] = event.contact_id
    key = f"wh:{webhook_id}:{event.id}"
    if len(key) > IDEM_KEY_MAX:  # an event id made of a long platform id
        key = f"wh:{webhook_id}:sha256:{hashlib.sha256(event.id.encode()).hexdigest()}"
    return NewJob(
        kind=DELIVER,
        idem_key=key,
        lane=lane(webhook_id),
        rate_keys=(lane(webhook_id),),
        payload=payload,
    )


def event_jobs(subscribed: Iterable[WebhookRecord], event: WebhookEvent) -> list[NewJob]:
    """One delivery row per active subscription that wants the event."""
    return [deliver_job(w.id, event) for w in subscribed if w.active and w.wants(event.type)]


def ping_event(webhook_id: int, *, by: str, at: datetime) -> WebhookEvent:
    """A test event for one subscription (every request makes a new one)."""
    return WebhookEvent(
        id=f"{PING}:{webhook_id}:{secrets.token_hex(6)}",
        type=PING,
        created_at=at,
        data={"webhook_id": webhook_id, "requested_by": by},
    )


@dataclass(frozen=True, slots=True)
class MessageState:
    """What a message.status event tells about an outgoing message, read after the change."""

    message_id: int
    conversation_id: int
    contact_id: int
    direction: str
    platform: str
    account: str
    external_id: str | None
    status: str | None
    code: str | None
    reason: str | None


class WebhookStore(Repository):
    """Webhook subscriptions, their waiting deliveries and what their events read."""

    def create(self, url: str, events: Sequence[str], *, by: str, at: datetime) -> WebhookRecord:
        """A new active subscription with a new secret; ValueError for an unusable URL or event."""
        url = check_url(url)
        wanted = parse_events(events)
        secret = new_secret()
        new_id = self.conn.execute(
            webhooks.insert()
            .values(
                url=url,
                events=list(wanted),
                secret=secret,
                created_by=by,
                created_at=at,
                active=True,
            )
            .returning(webhooks.c.id)
        ).scalar_one()
        return WebhookRecord(int(new_id), url, wanted, secret, by, at, True)

    def all_webhooks(self, *, active_only: bool = True) -> list[WebhookRecord]:
        """Subscriptions, oldest first (only the active ones unless asked)."""
        query = select(webhooks).order_by(webhooks.c.id)
        if active_only:
            query = query.where(webhooks.c.active.is_(True))
        return [_record(row) for row in self.conn.execute(query)]

    def get(self, webhook_id: int) -> WebhookRecord | None:
        """A subscription by id, active or not."""
        row = self.conn.execute(select(webhooks).where(webhooks.c.id == webhook_id)).first()
        return _record(row) if row is not None else None

    def deactivate(self, webhook_id: int) -> bool:
        """Stop sending to a subscription; False if it is unknown or inactive already."""
        # Its undelivered events are dropped by the handler, which reads the subscription each time.
        result = self.conn.execute(
            update(webhooks)
            .where(webhooks.c.id == webhook_id, webhooks.c.active.is_(True))
            .values(active=False)
        )
        return bool(result.rowcount)

    def delete_webhook(self, webhook_id: int) -> bool:
        """Delete a subscription and its secret for good; False if there is none."""
        result = self.conn.execute(delete(webhooks).where(webhooks.c.id == webhook_id))
        return bool(result.rowcount)

    def waiting(self, webhook_ids: Sequence[int]) -> dict[int, int]:
        """Deliveries not yet made, per subscription (a receiver that is down holds them)."""
        if not webhook_ids:
            return {}
        lanes = {lane(i): i for i in webhook_ids}
        rows = self.conn.execute(
            select(outbox.c.lane, func.count())
            .where(outbox.c.state == "pending", outbox.c.lane.in_(list(lanes)))
            .group_by(outbox.c.lane)
        )
        return {lanes[str(row[0])]: int(row[1]) for row in rows}

    def contact_exists(self, contact_id: int) -> bool:
        """Whether a contact is still there (not erased)."""
        found = self.conn.execute(select(contacts.c.id).where(contacts.c.id == contact_id)).first()
        return found is not None

    def message_state(self, message_id: int) -> MessageState | None:
        """A message's delivery state now, with its conversation's contact."""
        m = messages.c
        row = self.conn.execute(
            select(
                m.id,
                m.conversation_id,
                conversations.c.contact_id,
                m.direction,
                m.platform,
                m.account,
                m.external_id,
                m.status,
                m.error_code,
                m.error_reason,
            )
            .join(conversations, conversations.c.id == m.conversation_id)
            .where(m.id == message_id)
        ).first()
        if row is None:
            return None
        return MessageState(
            message_id=int(row[0]),
            conversation_id=int(row[1]),
            contact_id=int(row[2]),
            direction=row[3],
            platform=row[4],
            account=row[5],
            external_id=row[6],
            status=row[7],
            code=row[8],
            reason=row[9],
        )


class ActiveWebhooks:
    """The active subscriptions, kept in memory for at most `ttl` seconds or until `changed`."""

    # The inbound path asks for them with every batch of messages: no query each time.

    def __init__(self, ttl: float = CACHE_S, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl
        self._clock = clock
        self._cached: tuple[float, tuple[WebhookRecord, ...]] | None = None

    def load(self, store: WebhookStore) -> tuple[WebhookRecord, ...]:
        """The active subscriptions, from memory while fresh, else read from `store`."""
        cached = self._cached
        if cached is not None and self._clock() - cached[0] < self._ttl:
            return cached[1]
        found = tuple(store.all_webhooks())
        self._cached = (self._clock(), found)
        return found

    def wanting(self, store: WebhookStore, event_type: str) -> tuple[WebhookRecord, ...]:
        """The active subscriptions that want events of a type."""
        return tuple(w for w in self.load(store) if w.wants(event_type))

    def changed(self) -> None:
        """Subscriptions were added, changed or removed: read them again next time."""
        self._cached = None
