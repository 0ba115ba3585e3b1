"""Webhooks: a CRM's URLs subscribed to the bridge's events, each POST signed with a secret."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

from bridge.errors import AddressRefused, Invalid, NotFound, Refused
from bridge.services import Services
from storage import Tx
from storage import webhooks_store as store
from storage.webhooks_store import WebhookRecord


@dataclass(frozen=True, slots=True)
class Subscribed:
    """An active webhook and the deliveries waiting for it."""

    webhook: WebhookRecord
    waiting: int


def shown_url(url: str) -> str:
    """A webhook's URL as staff see it: a query string (often a token) is left out."""
    parts = urlsplit(url)
    shown = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"
    return shown + ("?…" if parts.query else "")


async def add_webhook(
    services: Services, url: str, events: Sequence[str], by: str, now: datetime
) -> WebhookRecord:
    """Subscribe a URL to events (Invalid names the url or the events at fault, Refused says
    that the outbound guard refuses the URL); it gets them from now on, and this process
    knows at once."""
    try:
        checked = store.check_url(url)
    except ValueError as exc:
        raise Invalid(str(exc), field="url") from None
    try:
        wanted = store.parse_events(events)
    except ValueError as exc:
        raise Invalid(str(exc), field="events") from None
    try:
        await services.pipeline.outbound.check(checked)
    except AddressRefused as exc:
        raise Refused(f"The webhook was not added: {exc.reason}") from None
    created = await services.write(lambda tx: tx.webhooks.create(checked, wanted, by=by, at=now))
    services.pipeline.webhooks.changed()
    return created


async def remove_webhook(services: Services, webhook_id: int) -> None:
    """Stop sending to a webhook (its undelivered events are dropped)."""
    removed = await services.write(lambda tx: tx.webhooks.deactivate(webhook_id))
    if not removed:
        raise NotFound(f"There is no webhook {webhook_id}; `/webhook list` shows them")
    services.pipeline.webhooks.changed()


async def ping_webhook(services: Services, webhook_id: int, by: str) -> WebhookRecord:
    """Queue a ping event for a webhook, after the events already waiting for it."""
    events = services.pipeline.webhooks

    def write(tx: Tx) -> WebhookRecord | None:
        found = tx.webhooks.get(webhook_id)
        if found is None or not found.active:
            return None
        tx.enqueue(events.ping(found, by), time.time())
        return found

    hook = await services.write(write)
    if hook is None:
        raise NotFound(f"There is no webhook {webhook_id}; `/webhook list` shows them")
    return hook


async def list_webhooks(
    services: Services, *, after: int | None = None, limit: int | None = None
) -> list[Subscribed]:
    """The active webhooks by id (from after `after`, at most `limit`), each with its backlog."""

    def read(tx: Tx) -> list[Subscribed]:
        # Subscriptions are a handful: one read, paged here.
        found = [w for w in tx.webhooks.all_webhooks() if after is None or w.id > after]
        shown = found if limit is None else found[:limit]
        waiting = tx.webhooks.waiting([w.id for w in shown])
        return [Subscribed(w, waiting.get(w.id, 0)) for w in shown]

    return await services.read(read)


async def webhook(services: Services, webhook_id: int) -> Subscribed | None:
    """An active webhook with its backlog; None when there is none of that id."""

    def read(tx: Tx) -> Subscribed | None:
        found = tx.webhooks.get(webhook_id)
        if found is None or not found.active:
            return None
        return Subscribed(found, tx.webhooks.waiting([found.id]).get(found.id, 0))

    return await services.read(read)
