"""`/broadcast`: newsletters to subscriber channels or whole messengers, previewed before they
go, with progress shown where they were started."""

from __future__ import annotations

from datetime import datetime
from functools import partial
from typing import Any

from sqlalchemy import update

from bridge import publish
from bridge.broadcasts import (
    PLACEHOLDERS,
    fill,
    key_range,
    placeholders,
    start_jobs,
    unknown_placeholders,
    values_for,
)
from bridge.links import ShortLinks
from commands.base import CommandError, Context, Form, FormField, Reply, Role, command
from storage import Tx, shortlinks, subscriptions
from storage import broadcasts_store as store
from storage.tables import outbox

broadcast = command("broadcast", "Newsletters to channels and messengers, with progress")

PLATFORMS = ("telegram", "whatsapp", "messenger", "sms")
NEW_EXAMPLE = '/broadcast new news "Hello {FIRSTNAME}, our sale starts on Friday!"'


@broadcast.sub(
    "new",
    usage="<channel|messenger>[,…] [--template <name>[:<language>] [--param <value>]…]"
    ' [--at "YYYY-MM-DD HH:MM"] [--publish facebook,x] <text…>',
    summary="prepare a newsletter and see who gets it; nothing is sent before `confirm`",
    example=NEW_EXAMPLE,
    role=Role.MANAGER,
)
async def _new(ctx: Context, args: list[str]) -> Reply:
    if not args:
        channels = await ctx.services.read(subscriptions.all_channels)
        return Reply(
            title="A new broadcast",
            lines=(f"Type it as one line, e.g. `{NEW_EXAMPLE}`", "`/broadcast help` shows all."),
            form=_form([c.name for c in channels], publish.labels(ctx.services.settings)),
        )
    ctx.need(args, 2)
    target_words = [w.strip() for w in args[0].split(",") if w.strip()]
    channel_ids: list[int] = []
    platforms: list[str] = []
    for word in target_words:
        if word.lower() in PLATFORMS:
            platforms.append(word.lower())
            continue
        found = await ctx.services.read(partial(subscriptions.channel_by_name, name=word))
        if found is None:
            raise ctx.usage(
                f"{word} is neither a channel nor a messenger ({', '.join(PLATFORMS)});"
                " `/channel list` shows the channels"
            )
        channel_ids.append(found.id)
    rest = list(args[1:])
    template: dict[str, Any] | None = None
    params: list[str] = []
    scheduled: datetime | None = None
    publish_to: list[str] = []
    words: list[str] = []
    while rest:
        word = rest.pop(0)
        if word in ("--template", "--param", "--at", "--publish"):
            if not rest:
                raise ctx.usage(f"{word} needs a value")
            value = rest.pop(0)
            if word == "--template":
                name, _, language = value.partition(":")
                template = {"name": name, "language": language or None}
            elif word == "--param":
                params.append(value)
            elif word == "--publish":
                publish_to.extend(t.strip().lower() for t in value.split(",") if t.strip())
            else:
                scheduled = ctx.local_time(value)
        else:
            words.append(word)
    text = " ".join(words).strip()
    publish_to = list(dict.fromkeys(publish_to))
    if template is not None:
        template["params"] = params
        text = text or f"[template {template['name']}] " + " | ".join(params)
    if not text:
        raise ctx.usage("the newsletter needs a text (or a --template)")
    unknown = unknown_placeholders(" ".join([text, *params]))
    if unknown:
        known = ", ".join("{" + p + "}" for p in PLACEHOLDERS)
        raise ctx.usage(f"unknown placeholder {{{unknown[0]}}}; known: {known}")
    if scheduled is not None and scheduled <= ctx.now:
        raise ctx.usage("--at is in the past")
    if publish_to:
        _check_publishing(ctx, publish_to, text if words else "")
    request = ctx.request

    def create(tx: Tx) -> int:
        return store.create(
            tx.conn,
            by=ctx.who,
            at=ctx.now,
            surface=request.surface,
            channel=request.channel,
            text=text,
            template=template,
            file_id=None,
            channel_ids=channel_ids,
            platforms=platforms,
            scheduled_at=scheduled,
            publish=publish_to,
        )

    broadcast_id = await ctx.services.write(create)
    public = ctx.services.settings.bridge.public_url
    if public:
        # Links become the broadcast's short links now, so clicks can be counted.
        links = ShortLinks(ctx.services.db, public, writer=ctx.services.writer)
        short, codes = await links.rewrite(text, broadcast_id=broadcast_id, by=ctx.who)
        if codes:
            await ctx.services.write(lambda tx: store.change(tx.conn, broadcast_id, text=short))
    return await _preview(ctx, broadcast_id, "prepared")


def _check_publishing(ctx: Context, targets: list[str], text: str) -> None:
    """Refuse publishing that cannot work: unknown or unconfigured targets, personal texts."""
    unknown = [t for t in targets if t not in publish.TARGETS]
    if unknown:
        raise ctx.usage(
            f"cannot publish to {unknown[0]}; --publish takes {', '.join(publish.TARGETS)}"
        )
    configured = publish.labels(ctx.services.settings)
    for target in targets:
        if target not in configured:
            raise CommandError(_sentence(publish.not_configured(target)))
    if not text:
        raise ctx.usage("--publish needs a text of its own (a WhatsApp template is no post)")
    used = placeholders(text)
    if used:
        names = ", ".join("{" + n + "}" for n in used)
        raise CommandError(
            f"A public post cannot be personal: the text uses {names}, which only each"
            " recipient's own copy can fill. Publish a text without placeholders, or leave"
            " out --publish"
        )


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def _publishing_problems(ctx: Context, b: store.BroadcastRecord) -> list[tuple[str, str]]:
    """(target, problem) for each target the broadcast cannot be posted on as it is."""
    configured = publish.labels(ctx.services.settings)
    found: list[tuple[str, str]] = []
    for target in b.publish:
        problem = (
            publish.problem(target, b.text)
            if target in configured
            else publish.not_configured(target)
        )
        if problem is not None:
            found.append((target, problem))
    return found


async def _preview(ctx: Context, broadcast_id: int, word: str) -> Reply:
    b = await _get(ctx, broadcast_id)
    counts = await ctx.services.read(lambda conn: store.preview(conn, b, ctx.now))
    lines = []
    total = 0
    for platform in sorted(counts):
        per = dict(counts[platform])
        going = per.pop("to", 0)
        total += going
        skipped = "; ".join(f"skipped {n}: {reason}" for reason, n in sorted(per.items()))
        lines.append(f"*{platform}*: to {going}{'; ' + skipped if skipped else ''}")
    if not counts:
        lines.append("Nobody is in this audience yet.")
    sample = fill(b.text, values_for("Anna Schmidt", "+4915100000000", 1, "telegram"))
    lines.append(f"It reads (for Anna Schmidt): {sample}")
    if b.publish:
        names = publish.labels(ctx.services.settings)
        where = " and ".join(names.get(t, publish.name(t)) for t in b.publish)
        lines.append(f"It is also published, as written, on {where}")
    for target, problem in _publishing_problems(ctx, b):
        lines.append(
            f"*Cannot publish on {publish.name(target)}*: {problem}. `/broadcast confirm`"
            f" refuses it as it is: prepare it again with a text that fits, or without"
            f" {target} in --publish"
        )
    when = f" at {b.scheduled_at:%Y-%m-%d %H:%M} UTC" if b.scheduled_at else " now"
    lines.append(
        f"Send it{when}: `/broadcast confirm {b.id}` · drop it: `/broadcast cancel {b.id}`"
    )
    return Reply(title=f"Broadcast #{b.id} {word}: {total} recipients", lines=tuple(lines))


async def _get(ctx: Context, broadcast_id: int) -> store.BroadcastRecord:
    found = await ctx.services.read(lambda conn: store.get(conn, broadcast_id))
    if found is None:
        raise CommandError(f"there is no broadcast #{broadcast_id}; `/broadcast list` shows them")
    return found


def _number(ctx: Context, args: list[str]) -> int:
    ctx.need(args, 1)
    word = args[0].lstrip("#")
    if not word.isdigit():
        raise ctx.usage(f"{args[0]} is not a broadcast number")
    return int(word)


@broadcast.sub(
    "confirm",
    usage="<number>",
    summary="send a prepared newsletter (or schedule it, with --at)",
    example="/broadcast confirm 7",
    role=Role.MANAGER,
)
async def _confirm(ctx: Context, args: list[str]) -> Reply:
    broadcast_id = _number(ctx, args)
    prepared = await _get(ctx, broadcast_id)
    problems = _publishing_problems(ctx, prepared) if prepared.state == "draft" else []
    if problems:
        target, problem = problems[0]
        raise CommandError(
            f"Broadcast #{broadcast_id} is not sent: {problem}. Prepare it again with a text"
            f" that fits, or without {target} in --publish, and drop this one:"
            f" `/broadcast cancel {broadcast_id}`"
        )

    def confirm(tx: Tx) -> str:
        b = store.get(tx.conn, broadcast_id)
        if b is None:
            return "missing"
        if b.state != "draft":
            return b.state
        store.change(tx.conn, b.id, state="scheduled")
        tx.enqueue(start_jobs(b, ctx.now), ctx.now.timestamp())
        return "started"

    outcome = await ctx.services.write(confirm)
    if outcome == "missing":
        raise CommandError(f"there is no broadcast #{broadcast_id}")
    if outcome != "started":
        raise CommandError(f"broadcast #{broadcast_id} is {outcome}; only a prepared one starts")
    b = await _get(ctx, broadcast_id)
    when = f"at {b.scheduled_at:%Y-%m-%d %H:%M} UTC" if b.scheduled_at else "now"
    return Reply(
        title=f"Broadcast #{broadcast_id} starts {when}",
        lines=("Its progress shows in this channel.",),
    )


@broadcast.sub("list", summary="the latest broadcasts", example="/broadcast list")
async def _list(ctx: Context, args: list[str]) -> Reply:
    found = await ctx.services.read(store.latest)
    if not found:
        return Reply(title="No broadcasts yet", lines=(f"Prepare one: `{NEW_EXAMPLE}`",))
    lines = []
    for b in found:
        counts = await ctx.services.read(partial(store.counts, broadcast_id=b.id))
        done = sum(counts.values())
        lines.append(
            f"`#{b.id}` {b.state}, {done} of {b.queued} handled · {b.created_at:%Y-%m-%d %H:%M}"
            f" by {b.created_by}: {b.text[:60]}"
        )
    return Reply(title=f"{len(found)} broadcasts", lines=tuple(lines))


@broadcast.sub(
    "status", usage="<number>", summary="how far a broadcast has got", example="/broadcast status 7"
)
async def _status(ctx: Context, args: list[str]) -> Reply:
    from bridge.broadcasts import allowed_rate, progress_text

    broadcast_id = _number(ctx, args)
    b = await _get(ctx, broadcast_id)
    counts = await ctx.services.read(lambda conn: store.per_platform(conn, broadcast_id))
    clicks = await ctx.services.read(lambda conn: shortlinks.broadcast_clicks(conn, broadcast_id))
    posts = await ctx.services.read(lambda conn: store.posts(conn, broadcast_id))
    finished = b.state in ("done", "cancelled")
    limit_rate = allowed_rate(ctx.services.pipeline, counts or b.platforms)
    text = progress_text(b, counts, finished, ctx.now, clicks, posts, limit_rate)
    first, *rest = text.split("\n")
    return Reply(title=first, lines=tuple(rest))


async def _set_state(ctx: Context, args: list[str], allowed: tuple[str, ...], new: str) -> Reply:
    broadcast_id = _number(ctx, args)

    def change(tx: Tx) -> tuple[str, int]:
        b = store.get(tx.conn, broadcast_id)
        if b is None:
            return "missing", 0
        if b.state not in allowed:
            return b.state, 0
        store.change(tx.conn, b.id, state=new)
        stopped = 0
        if new == "cancelled":
            low, high = key_range(b.id)
            result = tx.conn.execute(
                update(outbox)
                .where(
                    outbox.c.idem_key >= low,
                    outbox.c.idem_key < high,
                    outbox.c.state == "pending",
                )
                .values(state="cancelled", last_error="the broadcast was cancelled")
            )
            stopped = int(result.rowcount or 0)
        return "ok", stopped

    outcome, stopped = await ctx.services.write(change)
    if outcome == "missing":
        raise CommandError(f"there is no broadcast #{broadcast_id}")
    if outcome != "ok":
        raise CommandError(f"broadcast #{broadcast_id} is {outcome}")
    if new == "cancelled":
        return Reply(
            title=f"Broadcast #{broadcast_id} cancelled",
            lines=(f"{stopped} messages not yet sent will not be sent.",),
        )
    return Reply(title=f"Broadcast #{broadcast_id} {'paused' if new == 'paused' else 'resumed'}")


@broadcast.sub(
    "cancel",
    usage="<number>",
    summary="stop a broadcast: nothing not yet sent goes out",
    example="/broadcast cancel 7",
    role=Role.MANAGER,
)
async def _cancel(ctx: Context, args: list[str]) -> Reply:
    return await _set_state(ctx, args, ("draft", "scheduled", "running", "paused"), "cancelled")


@broadcast.sub(
    "pause",
    usage="<number>",
    summary="hold a running broadcast",
    example="/broadcast pause 7",
    role=Role.MANAGER,
)
async def _pause(ctx: Context, args: list[str]) -> Reply:
    return await _set_state(ctx, args, ("scheduled", "running"), "paused")


@broadcast.sub(
    "resume",
    usage="<number>",
    summary="carry on with a paused broadcast",
    example="/broadcast resume 7",
    role=Role.MANAGER,
)
async def _resume(ctx: Context, args: list[str]) -> Reply:
    return await _set_state(ctx, args, ("paused",), "running")


def _form(channel_names: list[str], publishing: dict[str, str]) -> Form:
    """The composer: audience, text or template, schedule, and where it is also published."""
    targets = tuple((n, f"#{n}") for n in channel_names) + tuple(
        (p, f"everyone on {p}") for p in PLATFORMS
    )
    # Only the targets the settings turn on are offered.
    posts = (
        (
            FormField(
                key="publish",
                label="Also publish to",
                kind="checks",
                option="--publish",
                choices=tuple(publishing.items()),
                optional=True,
                hint="the text as written, as a public post (no placeholders)",
            ),
        )
        if publishing
        else ()
    )
    return Form(
        title="New broadcast",
        submit="Preview",
        command="broadcast new",
        fields=(
            FormField(key="to", label="To", kind="multi", choices=targets),
            FormField(
                key="text",
                label="Text",
                kind="lines",
                optional=True,
                hint="placeholders: " + ", ".join("{" + p + "}" for p in PLACEHOLDERS),
                joined=True,
            ),
            FormField(
                key="template",
                label="WhatsApp template (name:language)",
                option="--template",
                optional=True,
                hint="needed for WhatsApp, e.g. order_update:en_US",
            ),
            FormField(
                key="params",
                label="Template parameters, one a line",
                kind="lines",
                option="--param",
                optional=True,
            ),
            FormField(
                key="at",
                label="Send at (empty: now)",
                option="--at",
                optional=True,
                hint="YYYY-MM-DD HH:MM in the rules' time zone",
            ),
            *posts,
        ),
    )
