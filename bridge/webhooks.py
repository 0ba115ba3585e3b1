"""Outgoing webhooks: events for a CRM, queued with what caused them, POSTed signed.

The pipeline and the broadcasts call `WebhookEvents` inside the writer's transaction that stores
the cause (a customer message, a delivery status, an opt-out, a broadcast's summary); it returns
one outbox row per subscription that wants the event. The outbox handler
(`bridge.handlers.webhooks.WebhookDelivery`) POSTs the event, signed per the Standard Webhooks
specification (standardwebhooks.com), so that a receiver can check it with a stock library:

    webhook-id: msg_<32 hex digits>, from the outbox row's idempotency key: the same on every
        try of one delivery, another for each subscription and event
    webhook-timestamp: <Unix seconds of this try>
    webhook-signature: v1,<base64 HMAC-SHA256 of "<webhook-id>.<webhook-timestamp>.<body>">

The HMAC key is the subscription's secret as it was shown, taken as its UTF-8 bytes: the same
key as the bridge's own signature. The specification writes a secret as `whsec_` and the key in
base64, so a stock verifier takes `"whsec_" + base64(secret)` (or the key's bytes as they are).

The bridge's own signature headers are still sent for one more release, then they go
(X-Bridge-Event and X-Bridge-Delivery stay):

    X-Bridge-Timestamp: <Unix seconds of this try>
    X-Bridge-Signature: sha256=<hex HMAC-SHA256 of "<X-Bridge-Timestamp>.<body>" with the secret>

2xx is delivered; 429 waits for Retry-After; 408, 5xx, timeouts and connection errors are
retried with the outbox's backoff (for up to 24 hours); any other answer fails the delivery.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any

from bridge.jobs import WebhookDeliverJob
from bridge.types import ContactId, ConversationId, InboundMessage, MessageId
from storage import ContactRecord, NewJob, Tx
from storage import webhooks_store as store
from storage.webhooks_store import ActiveWebhooks, WebhookEvent, WebhookRecord, iso

log = logging.getLogger(__name__)

DELIVERY_TIMEOUT_S = 10.0
# A 429 without a usable Retry-After waits this long; a longer ask is cut to the maximum.
DEFAULT_RETRY_AFTER_S = 30.0
MAX_RETRY_AFTER_S = 3600.0
USER_AGENT = "support-bridge-webhooks/1"

MESSAGE_RECEIVED = "message.received"
MESSAGE_STATUS = "message.status"
OPTED_IN = "contact.opted_in"
OPTED_OUT = "contact.opted_out"
BROADCAST_FINISHED = "broadcast.finished"

# What an opt-in or opt-out covers: every subscriber channel (newsletters; replies still reach
# the customer), or the contact as a whole (nothing at all is sent to them).
SCOPE_CHANNELS = "channels"
SCOPE_CONTACT = "contact"

BROADCAST_STATES = ("sent", "delivered", "read", "failed", "skipped", "cancelled", "interrupted")


def encode(event: Mapping[str, Any]) -> bytes:
    """The request body: the event as compact UTF-8 JSON (the signature covers these bytes)."""
    return json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode()


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """`sha256=` and the hex HMAC-SHA256 of `<timestamp>.<body>` keyed with the secret."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def standard_id(idem_key: str) -> str:
    """The `webhook-id` of a delivery, made from its outbox row's idempotency key."""
    # The key is stable across the tries of a delivery, but holds dots and parts that come from
    # outside (event types, platform ids); the specification asks for an id without either.
    return "msg_" + hashlib.sha256(idem_key.encode()).hexdigest()[:32]


def standard_signature(secret: str, message_id: str, timestamp: str, body: bytes) -> str:
    """`v1,` and the base64 HMAC-SHA256 of `<id>.<timestamp>.<body>` keyed with the secret."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    mac = hmac.new(secret.encode(), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def retry_after(value: str | None, now: float) -> float:
    """Seconds to wait from a Retry-After header (seconds or an HTTP date)."""
    if not value:
        return DEFAULT_RETRY_AFTER_S
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - now
        except (TypeError, ValueError):
            return DEFAULT_RETRY_AFTER_S
    if seconds != seconds:  # NaN
        return DEFAULT_RETRY_AFTER_S
    return min(max(seconds, 1.0), MAX_RETRY_AFTER_S)


def delivery(webhook_id: int, event: WebhookEvent) -> NewJob:
    """The outbox row that delivers one event to one subscription."""
    return WebhookDeliverJob(
        webhook=webhook_id, event=event.body(), contact=event.contact_id
    ).new_job()


def deliveries(subscribed: Iterable[WebhookRecord], event: WebhookEvent) -> list[NewJob]:
    """One delivery row per active subscription that wants the event."""
    return [delivery(w.id, event) for w in subscribed if w.active and w.wants(event.type)]


class WebhookEvents:
    """Turns what the bridge stores into webhook events, queued in the same transaction."""

    # Each method returns the outbox rows to enqueue: none when no subscription wants the
    # event, which costs a look at the subscriptions cached in memory and nothing else.

    def __init__(self, clock: Callable[[], datetime]) -> None:
        self.subscriptions = ActiveWebhooks()
        self._clock = clock

    def changed(self) -> None:
        """Subscriptions were changed: read them again before the next event."""
        self.subscriptions.changed()

    def emit(self, tx: Tx, event: WebhookEvent) -> list[NewJob]:
        """One delivery row per active subscription that wants the event."""
        return deliveries(self.subscriptions.wanting(tx.webhooks, event.type), event)

    def ping(self, webhook: WebhookRecord, by: str) -> list[NewJob]:
        """A test event for one subscription, whatever events it asked for."""
        event = store.ping_event(webhook.id, by=by, at=self._clock())
        return [delivery(webhook.id, event)]

    def messages_received(
        self,
        tx: Tx,
        received: Sequence[tuple[MessageId, ConversationId, ContactId, InboundMessage]],
    ) -> list[NewJob]:
        """message.received for customer messages just stored."""
        subscribed = self.subscriptions.wanting(tx.webhooks, MESSAGE_RECEIVED)
        if not subscribed or not received:
            return []
        now = self._clock()
        jobs: list[NewJob] = []
        for message_id, conversation_id, contact_id, m in received:
            data = {
                "message_id": int(message_id),
                "conversation_id": int(conversation_id),
                "contact_id": int(contact_id),
                "platform": str(m.platform),
                "account": str(m.account),
                "chat_id": str(m.chat_id),
                "external_id": str(m.external_id),
                "author": m.profile.display_name,
                "username": m.profile.username,
                "text": m.text,
                "attachments": [
                    {
                        "kind": a.kind.value,
                        "filename": a.filename,
                        "mime_type": a.mime_type,
                        "size": a.size,
                    }
                    for a in m.attachments
                ],
                "sent_at": iso(m.sent_at),
            }
            event = WebhookEvent(
                id=f"{MESSAGE_RECEIVED}:{message_id}",
                type=MESSAGE_RECEIVED,
                created_at=now,
                data=data,
                contact_id=int(contact_id),
            )
            jobs.extend(deliveries(subscribed, event))
        return jobs

    def message_status(self, tx: Tx, message_id: MessageId, status: str) -> list[NewJob]:
        """message.status when an outgoing message has just reached `status`."""
        # Called after the status was written: one that did not move (a late `delivered`
        # after `read`) is not the message's status now, and makes no event.
        subscribed = self.subscriptions.wanting(tx.webhooks, MESSAGE_STATUS)
        if not subscribed:
            return []
        state = tx.webhooks.message_state(message_id)
        if state is None or state.direction != "out" or state.status != status:
            return []
        failed = status == "failed"
        event = WebhookEvent(
            id=f"{MESSAGE_STATUS}:{message_id}:{status}",
            type=MESSAGE_STATUS,
            created_at=self._clock(),
            data={
                "message_id": state.message_id,
                "conversation_id": state.conversation_id,
                "contact_id": state.contact_id,
                "platform": state.platform,
                "account": state.account,
                "external_id": state.external_id,
                "status": status,
                "code": state.code if failed else None,
                "reason": state.reason if failed else None,
            },
            contact_id=state.contact_id,
        )
        return deliveries(subscribed, event)

    def opted(
        self,
        tx: Tx,
        contact: ContactRecord | ContactId,
        *,
        opted_in: bool,
        scope: str,
        source: str,
        cause: str,
        channels: Sequence[int] = (),
    ) -> list[NewJob]:
        """contact.opted_in or contact.opted_out; `cause` (what asked for it) makes the id."""
        kind = OPTED_IN if opted_in else OPTED_OUT
        subscribed = self.subscriptions.wanting(tx.webhooks, kind)
        if not subscribed:
            return []
        record = contact if isinstance(contact, ContactRecord) else tx.contact(contact)
        if record is None:
            return []
        event = WebhookEvent(
            id=f"{kind}:{record.id}:{cause}",
            type=kind,
            created_at=self._clock(),
            data={
                "contact_id": int(record.id),
                "platform": str(record.platform),
                "account": str(record.account),
                "chat_id": str(record.chat_id),
                "display_name": record.display_name,
                "username": record.username,
                "scope": scope,
                "source": source,
                "channels": sorted(channels),
            },
            contact_id=int(record.id),
        )
        return deliveries(subscribed, event)

    def broadcast_finished(
        self,
        tx: Tx,
        *,
        broadcast_id: int,
        state: str,
        queued: int,
        counts: Mapping[str, Mapping[str, int]],
        clicks: tuple[int, int],
        created_by: str,
        started_at: datetime | None,
        finished_at: datetime,
    ) -> list[NewJob]:
        """broadcast.finished with the summary's figures."""
        subscribed = self.subscriptions.wanting(tx.webhooks, BROADCAST_FINISHED)
        if not subscribed:
            return []
        totals = dict.fromkeys(BROADCAST_STATES, 0)
        for per in counts.values():
            for name, n in per.items():
                totals[name] = totals.get(name, 0) + n
        event = WebhookEvent(
            id=f"{BROADCAST_FINISHED}:{broadcast_id}",
            type=BROADCAST_FINISHED,
            created_at=self._clock(),
            data={
                "broadcast_id": broadcast_id,
                "state": state,
                "created_by": created_by,
                "queued": queued,
                "counts": totals,
                "platforms": {p: dict(per) for p, per in sorted(counts.items())},
                "clicks": clicks[0],
                "clicked_by": clicks[1],
                "started_at": iso(started_at),
                "finished_at": iso(finished_at),
            },
        )
        return deliveries(subscribed, event)
