"""The outbox handler of outgoing webhooks: POST one event, signed, to its subscriber."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import aiohttp

from bridge.errors import (
    AddressRefused,
    PermanentError,
    RateLimited,
    TransientError,
    Unreachable,
)
from bridge.jobs import JobKind, WebhookDeliverJob
from bridge.security import OutboundGuard
from bridge.webhooks import (
    DELIVERY_TIMEOUT_S,
    USER_AGENT,
    encode,
    retry_after,
    signature,
    standard_id,
    standard_signature,
)
from storage import Completion, Database, Job

log = logging.getLogger(__name__)


def handlers(db: Database, outbound: OutboundGuard | None) -> dict[str, Any]:
    """The outbox handler of deliveries (none without the outbound guard)."""
    if outbound is None:
        return {}
    return {JobKind.WEBHOOK_DELIVER: WebhookDelivery(outbound, db)}


class WebhookDelivery:
    """The outbox handler of `webhook.deliver`: POSTs one event, signed, to its subscriber."""

    def __init__(
        self,
        outbound: OutboundGuard,
        db: Database,
        *,
        timeout: float = DELIVERY_TIMEOUT_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._outbound = outbound
        self._db = db
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._seconds = timeout
        self._clock = clock

    def coalesce(self, head: Job, following: Sequence[Job]) -> int:
        """Every event is a request of its own."""
        return 0

    async def run(self, jobs: Sequence[Job]) -> Completion:
        """POST the event; raise the outbox's errors for what the receiver answered."""
        [job] = jobs
        row = WebhookDeliverJob.from_job(job)
        webhook_id, event, contact = row.webhook, row.event, row.contact
        # Read at each attempt: a removed webhook gets nothing more, and a contact erased while
        # the event waited (the dispatcher holds a copy of the row) is not sent to the CRM.
        hook, erased = await self._db.read_tx(
            lambda tx: (
                tx.webhooks.get(webhook_id),
                contact is not None and not tx.webhooks.contact_exists(int(contact)),
            )
        )
        if hook is None or not hook.active:
            raise PermanentError("removed", f"webhook {webhook_id} was removed")
        if erased:
            return Completion([job.id], failed_reason="the contact was erased")
        body = encode(event)
        timestamp = str(int(self._clock()))
        message_id = standard_id(job.idem_key)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "webhook-id": message_id,
            "webhook-timestamp": timestamp,
            "webhook-signature": standard_signature(hook.secret, message_id, timestamp, body),
            "X-Bridge-Event": str(event["type"]),
            "X-Bridge-Delivery": str(event["id"]),
            # The bridge's own signature, kept for one more release beside the standard one.
            "X-Bridge-Timestamp": timestamp,
            "X-Bridge-Signature": signature(hook.secret, timestamp, body),
        }
        # The URL stays out of errors and logs: it may carry a token of the receiver's.
        where = f"webhook {webhook_id}"
        try:
            # The guard refuses internal addresses (permanent: the delivery fails at once).
            async with self._outbound.request(
                "POST", hook.url, data=body, headers=headers, timeout=self._timeout
            ) as response:
                status = response.status
                wait = response.headers.get("Retry-After")
        except AddressRefused as exc:
            raise AddressRefused(exc.code, f"{where}: {exc.reason}") from None
        except TimeoutError:
            raise TransientError(f"{where} did not answer within {self._seconds:g} s") from None
        except aiohttp.InvalidURL:
            raise PermanentError("bad_url", f"{where} has a URL that cannot be used") from None
        except aiohttp.ClientConnectionError as exc:
            raise Unreachable(f"{where} could not be reached ({type(exc).__name__})") from None
        except aiohttp.ClientError as exc:
            raise TransientError(f"{where}: {type(exc).__name__}") from None
        if 200 <= status < 300:
            return Completion([job.id])
        if status == 429:
            raise RateLimited(
                retry_after(wait, self._clock()), f"{where} answered 429", per_recipient=True
            )
        if status == 408 or status >= 500:
            raise TransientError(f"{where} answered HTTP {status}")
        raise PermanentError(str(status), f"{where} answered HTTP {status}")

    async def failed(self, jobs: Sequence[Job], error: PermanentError) -> Completion:
        """Record the delivery as failed; the receiver does not get this event."""
        for job in jobs:
            row = WebhookDeliverJob.from_job(job)
            log.warning(
                "webhook %s: event %s (%s) not delivered: %s",
                row.webhook,
                row.event.get("id"),
                row.event.get("type"),
                error,
            )
        return Completion([j.id for j in jobs], failed_reason=str(error))
