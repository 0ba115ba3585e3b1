"""`/webhook`: a CRM's URL subscribed to the bridge's events, each POST signed with a secret."""

from __future__ import annotations

from bridge.services import webhooks
from bridge.services.webhooks import shown_url
from bridge.staffio import Reply
from commands.base import Context, Role, command
from commands.shorten import typed_url
from storage import webhooks_store as store
from storage.webhooks_store import WebhookRecord

webhook = command(
    "webhook", "Send events (messages, statuses, opt-outs, broadcasts) to a CRM, signed"
)

EVENTS_HINT = f"{', '.join(store.EVENT_TYPES)} or {store.ALL}"


@webhook.sub(
    "add",
    usage="<url> <event,...|all>",
    summary=(
        f"POST these events to the URL, signed with a new secret shown to you once ({EVENTS_HINT})"
    ),
    example="/webhook add https://crm.example.com/bridge-events message.received,contact.opted_out",
    role=Role.ADMIN,
    private=True,  # the answer holds the signing secret
)
async def _add(ctx: Context, args: list[str]) -> Reply:
    ctx.need(args, 2)
    created = await webhooks.add_webhook(
        ctx.services, typed_url(args[0]), args[1:], ctx.who, ctx.now
    )
    return Reply(
        title=f"Webhook {created.id} added: {_events(created)} go to {shown_url(created.url)}",
        lines=(
            "Each POST carries `X-Bridge-Signature: sha256=<hex>`, the HMAC-SHA256 of"
            " `<X-Bridge-Timestamp>.<body>` keyed with the secret below; check it before"
            " trusting the body.",
            "The secret is shown this once only. Lost it? Remove the webhook and add it again.",
            f"`/webhook test {created.id}` sends a ping event now.",
        ),
        fields=(("Signing secret", f"`{created.secret}`"),),
        private=True,
    )


@webhook.sub(
    "list",
    summary="every webhook: its URL, its events and the deliveries waiting",
    example="/webhook list",
    role=Role.ADMIN,
)
async def _list(ctx: Context, args: list[str]) -> Reply:
    if args:
        raise ctx.usage(f"`/webhook list` takes nothing after it, and got {' '.join(args)}")
    found = await webhooks.list_webhooks(ctx.services)
    if not found:
        return Reply(
            title="No webhooks yet",
            lines=("Add one with `/webhook add <url> <event,...|all>`.",),
        )
    lines = []
    for w, queued in ((s.webhook, s.waiting) for s in found):
        behind = f", *{queued} waiting*" if queued else ""
        lines.append(
            f"*{w.id}* {shown_url(w.url)}: {_events(w)}"
            f" ({w.created_by}, {w.created_at:%Y-%m-%d}{behind})"
        )
    return Reply(title=f"{len(found)} webhook{'' if len(found) == 1 else 's'}", lines=tuple(lines))


@webhook.sub(
    "remove",
    usage="<id>",
    summary="stop sending to a webhook; its undelivered events are dropped",
    example="/webhook remove 2",
    role=Role.ADMIN,
)
async def _remove(ctx: Context, args: list[str]) -> Reply:
    webhook_id = _id(ctx, args)
    await webhooks.remove_webhook(ctx.services, webhook_id)
    return Reply(title=f"Webhook {webhook_id} removed", lines=("Nothing more is sent to it.",))


@webhook.sub(
    "test",
    usage="<id>",
    summary="send a ping event to a webhook (after the events already waiting for it)",
    example="/webhook test 2",
    role=Role.ADMIN,
)
async def _test(ctx: Context, args: list[str]) -> Reply:
    hook = await webhooks.ping_webhook(ctx.services, _id(ctx, args), ctx.who)
    return Reply(
        title=f"A ping is on its way to webhook {hook.id}",
        lines=(
            f"It goes to {shown_url(hook.url)} with the header `X-Bridge-Event: ping`;"
            " `/webhook list` shows deliveries still waiting (a receiver that answers with an"
            " error is tried again with growing pauses).",
        ),
    )


def _id(ctx: Context, args: list[str]) -> int:
    ctx.need(args, 1)
    if len(args) > 1:
        raise ctx.usage("name one webhook by its number")
    word = args[0].lstrip("#")
    if not word.isdigit():
        raise ctx.usage(f"{args[0]} is not a webhook's number (`/webhook list` shows them)")
    return int(word)


def _events(w: WebhookRecord) -> str:
    return "every event" if store.ALL in w.events else ", ".join(w.events)
