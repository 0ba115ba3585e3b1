"""Outgoing webhook subscriptions: list, add (the signing secret is answered once), remove and
ping them (the `/webhook` command's logic; admin)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import Field

from bridge.api.errors import not_found
from bridge.api.framework import Call, Resource
from bridge.api.paging import Page, PageQuery
from bridge.api.schemas import Body, Record
from bridge.services import webhooks
from bridge.services.webhooks import Subscribed, shown_url
from bridge.types import Role
from storage import webhooks_store as store
from storage.webhooks_store import WebhookRecord

resource = Resource(
    "Webhooks",
    "URLs the bridge POSTs its events to, each signed with the subscription's secret"
    " (`X-Bridge-Signature`); see the README for the events and the signature.",
)

EVENTS_MAX = 16


class Webhook(Record):
    """A subscription (never its secret)."""

    id: int
    url: str = Field(description="Where events go; a query string is shown as `?…`.")
    events: list[str] = Field(description=f"{', '.join(store.EVENT_TYPES)} or {store.ALL}.")
    created_by: str
    created_at: datetime
    waiting: int = Field(
        description="Deliveries not yet made (a receiver that is down holds them)."
    )


class WebhookPage(Page):
    """A page of active subscriptions, oldest first."""

    items: list[Webhook]


class WebhookCreate(Body):
    """A URL and the events it wants, as `/webhook add` takes them."""

    url: str = Field(
        min_length=1,
        max_length=store.URL_MAX,
        description="http:// or https://; redirects are not followed.",
        examples=["https://crm.example.com/bridge-events"],
    )
    events: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        min_length=1,
        max_length=EVENTS_MAX,
        description=f"Any of {', '.join(store.EVENT_TYPES)}, or {store.ALL} (every event, also"
        " types added later).",
        examples=[["message.received", "contact.opted_out"]],
    )


class WebhookCreated(Record):
    """A new subscription, with its signing secret: shown this once only."""

    secret: str = Field(description="The HMAC-SHA256 key of X-Bridge-Signature; store it now.")
    webhook: Webhook


class Ping(Record):
    """A ping event on its way (after the events already waiting for the subscription)."""

    webhook: Webhook


def _webhook(w: WebhookRecord, waiting: int) -> Webhook:
    return Webhook(
        id=w.id,
        url=shown_url(w.url),
        events=list(w.events),
        created_by=w.created_by,
        created_at=w.created_at,
        waiting=waiting,
    )


def _shown(found: Subscribed) -> Webhook:
    return _webhook(found.webhook, found.waiting)


async def _show(call: Call, webhook_id: int) -> Webhook:
    shown = await webhooks.webhook(call.services, webhook_id)
    if shown is None:
        raise not_found(f"there is no webhook {webhook_id}")
    return _shown(shown)


@resource.get(
    "/webhooks",
    summary="List webhooks",
    role=Role.ADMIN,
    query=PageQuery,
    response=WebhookPage,
)
async def list_webhooks(call: Call) -> WebhookPage:
    """The active subscriptions, with the deliveries waiting for each (as `/webhook list`)."""
    after, limit = call.after(), call.limit
    rows = await webhooks.list_webhooks(call.services, after=after, limit=limit + 1)
    return call.page(WebhookPage, rows, key=lambda s: s.webhook.id, item=_shown)


@resource.post(
    "/webhooks",
    summary="Add a webhook",
    role=Role.ADMIN,
    body=WebhookCreate,
    response=WebhookCreated,
    status=201,
)
async def create_webhook(call: Call) -> WebhookCreated:
    """As `/webhook add`: events are POSTed to the URL from now on, each signed with the new
    secret, which this answer holds and no other will (lost it: delete the webhook and add it
    again)."""
    body = call.body(WebhookCreate)
    created = await webhooks.add_webhook(call.services, body.url, body.events, call.who, call.now)
    return WebhookCreated(secret=created.secret, webhook=_webhook(created, 0))


@resource.get(
    "/webhooks/{webhook_id}",
    summary="Show a webhook",
    role=Role.ADMIN,
    response=Webhook,
)
async def show_webhook(call: Call) -> Webhook:
    """Its URL, events and the deliveries waiting."""
    return await _show(call, call.id("webhook_id"))


@resource.delete(
    "/webhooks/{webhook_id}",
    summary="Remove a webhook",
    role=Role.ADMIN,
    status=204,
)
async def delete_webhook(call: Call) -> None:
    """As `/webhook remove`: nothing more is sent to it, and its undelivered events are
    dropped."""
    await webhooks.remove_webhook(call.services, call.id("webhook_id"))


@resource.post(
    "/webhooks/{webhook_id}/test",
    summary="Send a webhook a ping",
    role=Role.ADMIN,
    response=Ping,
    status=202,
)
async def test_webhook(call: Call) -> Ping:
    """As `/webhook test`: a `ping` event, after the events already waiting for it."""
    hook = await webhooks.ping_webhook(call.services, call.id("webhook_id"), call.who)
    return Ping(webhook=await _show(call, hook.id))
