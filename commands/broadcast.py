"""`/broadcast`: newsletters to subscriber channels or whole messengers, previewed before they
go, with progress shown where they were started."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bridge import publish
from bridge.broadcasts import PLACEHOLDERS
from bridge.config_sections import PLATFORMS
from bridge.services import broadcasts, channels
from bridge.services.broadcasts import SAMPLE_NAME, TRANSITIONS, Draft, Origin
from bridge.staffio import Form, FormField, Reply
from commands.base import Context, NotFound, Role, command

broadcast = command("broadcast", "Newsletters to channels and messengers, with progress")

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
        listed = await channels.list_channels(ctx.services)
        return Reply(
            title="A new broadcast",
            lines=(f"Type it as one line, e.g. `{NEW_EXAMPLE}`", "`/broadcast help` shows all."),
            form=_form([c.name for c in listed], publish.labels(ctx.services.settings)),
        )
    ctx.need(args, 2)
    target_words = [w.strip() for w in args[0].split(",") if w.strip()]
    channel_ids: list[int] = []
    platforms: list[str] = []
    for word in target_words:
        if word.lower() in PLATFORMS:
            platforms.append(word.lower())
            continue
        found = await channels.channel_by_name(ctx.services, word)
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
    draft = Draft(
        channel_ids=channel_ids,
        platforms=platforms,
        text=" ".join(words),
        template=template,
        params=params,
        scheduled=scheduled,
        publish_to=publish_to,
    )
    request = ctx.request
    origin = Origin(ctx.who, ctx.now, request.surface, request.channel)
    broadcast_id = await broadcasts.prepare(ctx.services, draft, origin)
    return await _preview(ctx, broadcast_id, "prepared")


async def _preview(ctx: Context, broadcast_id: int, word: str) -> Reply:
    shown = await broadcasts.preview(ctx.services, broadcast_id, ctx.now)
    b, counts = shown.record, shown.counts
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
    lines.append(f"It reads (for {SAMPLE_NAME}): {shown.sample}")
    if b.publish:
        names = publish.labels(ctx.services.settings)
        where = " and ".join(names.get(t, publish.name(t)) for t in b.publish)
        lines.append(f"It is also published, as written, on {where}")
    for target, problem in shown.problems:
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
    b = await broadcasts.confirm(ctx.services, broadcast_id, ctx.now)
    when = f"at {b.scheduled_at:%Y-%m-%d %H:%M} UTC" if b.scheduled_at else "now"
    return Reply(
        title=f"Broadcast #{broadcast_id} starts {when}",
        lines=("Its progress shows in this channel.",),
    )


@broadcast.sub("list", summary="the latest broadcasts", example="/broadcast list")
async def _list(ctx: Context, args: list[str]) -> Reply:
    found = await broadcasts.latest(ctx.services)
    if not found:
        return Reply(title="No broadcasts yet", lines=(f"Prepare one: `{NEW_EXAMPLE}`",))
    lines = []
    for b, done in found:
        lines.append(
            f"`#{b.id}` {b.state}, {done} of {b.queued} handled · {b.created_at:%Y-%m-%d %H:%M}"
            f" by {b.created_by}: {b.text[:60]}"
        )
    return Reply(title=f"{len(found)} broadcasts", lines=tuple(lines))


@broadcast.sub(
    "status", usage="<number>", summary="how far a broadcast has got", example="/broadcast status 7"
)
async def _status(ctx: Context, args: list[str]) -> Reply:
    broadcast_id = _number(ctx, args)
    found = await broadcasts.status(ctx.services, broadcast_id)
    if found is None:
        raise NotFound(f"there is no broadcast #{broadcast_id}; `/broadcast list` shows them")
    first, *rest = broadcasts.status_text(ctx.services, found, ctx.now).split("\n")
    return Reply(title=first, lines=tuple(rest))


async def _set_state(ctx: Context, args: list[str], action: str) -> Reply:
    broadcast_id = _number(ctx, args)
    stopped = await broadcasts.change_state(ctx.services, broadcast_id, action)
    new = TRANSITIONS[action][1]
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
    return await _set_state(ctx, args, "cancel")


@broadcast.sub(
    "pause",
    usage="<number>",
    summary="hold a running broadcast",
    example="/broadcast pause 7",
    role=Role.MANAGER,
)
async def _pause(ctx: Context, args: list[str]) -> Reply:
    return await _set_state(ctx, args, "pause")


@broadcast.sub(
    "resume",
    usage="<number>",
    summary="carry on with a paused broadcast",
    example="/broadcast resume 7",
    role=Role.MANAGER,
)
async def _resume(ctx: Context, args: list[str]) -> Reply:
    return await _set_state(ctx, args, "resume")


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
