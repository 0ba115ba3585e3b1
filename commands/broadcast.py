"""`/broadcast`: newsletters to subscriber channels or whole messengers, previewed before they
go, with progress shown where they were started."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from functools import partial
from typing import Any

from sqlalchemy import update
from sqlalchemy.engine import Connection

from bridge import publish
from bridge.broadcasts import (
    PLACEHOLDERS,
    fill,
    placeholders,
    start_jobs,
    unknown_placeholders,
    values_for,
)
from bridge.jobs import broadcast_key_range
from bridge.links import ShortLinks
from bridge.types import PLATFORMS
from commands.base import (
    CommandError,
    Conflict,
    Context,
    Form,
    FormField,
    NotFound,
    Reply,
    Role,
    command,
)
from storage import Tx, shortlinks, subscriptions
from storage import broadcasts_store as store
from storage.tables import outbox

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
    broadcast_id = await prepare_broadcast(
        ctx,
        channel_ids=channel_ids,
        platforms=platforms,
        text=" ".join(words),
        template=template,
        params=params,
        scheduled=scheduled,
        publish_to=publish_to,
    )
    return await _preview(ctx, broadcast_id, "prepared")


async def prepare_broadcast(
    ctx: Context,
    *,
    channel_ids: list[int],
    platforms: list[str],
    text: str,
    template: dict[str, Any] | None,
    params: list[str],
    scheduled: datetime | None,
    publish_to: list[str],
) -> int:
    """Check and store a draft broadcast (its links made its short links); its id.

    `template` is `{"name", "language"}` (its `params` are set here), `text` the newsletter's
    own text, which a template may do without."""
    own = text = text.strip()
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
        _check_publishing(ctx, publish_to, own)
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
    return broadcast_id


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


@dataclass(frozen=True, slots=True)
class Preview:
    """Who a broadcast would reach now, per platform, and how its text reads."""

    record: store.BroadcastRecord
    # Per platform: "to" → recipients, and each reason for skipping → how many it skips.
    counts: dict[str, dict[str, int]]
    sample: str  # the text as a made-up recipient, Anna Schmidt, reads it
    problems: list[tuple[str, str]]  # (target, why it cannot be published there)


SAMPLE_NAME = "Anna Schmidt"


async def preview(ctx: Context, broadcast_id: int) -> Preview:
    """The audience of a broadcast after exclusions, as `/broadcast new` shows it."""
    b = await _get(ctx, broadcast_id)
    counts = await ctx.services.read(lambda conn: store.preview(conn, b, ctx.now))
    sample = fill(b.text, values_for(SAMPLE_NAME, "+4915100000000", 1, "telegram"))
    return Preview(b, counts, sample, _publishing_problems(ctx, b))


async def _preview(ctx: Context, broadcast_id: int, word: str) -> Reply:
    shown = await preview(ctx, broadcast_id)
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


async def _get(ctx: Context, broadcast_id: int) -> store.BroadcastRecord:
    found = await ctx.services.read(lambda conn: store.get(conn, broadcast_id))
    if found is None:
        raise NotFound(f"there is no broadcast #{broadcast_id}; `/broadcast list` shows them")
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
    check_confirmable(ctx, await _get(ctx, broadcast_id))
    outcome = await ctx.services.write(lambda tx: start(tx, broadcast_id, ctx.now))
    if outcome != STARTED:
        raise not_started(broadcast_id, outcome)
    b = await _get(ctx, broadcast_id)
    when = f"at {b.scheduled_at:%Y-%m-%d %H:%M} UTC" if b.scheduled_at else "now"
    return Reply(
        title=f"Broadcast #{broadcast_id} starts {when}",
        lines=("Its progress shows in this channel.",),
    )


STARTED = "started"


def check_confirmable(ctx: Context, prepared: store.BroadcastRecord) -> None:
    """Refuse to start a draft that cannot be published where it says."""
    problems = _publishing_problems(ctx, prepared) if prepared.state == "draft" else []
    if problems:
        target, problem = problems[0]
        raise CommandError(
            f"Broadcast #{prepared.id} is not sent: {problem}. Prepare it again with a text"
            f" that fits, or without {target} in --publish, and drop this one:"
            f" `/broadcast cancel {prepared.id}`"
        )


def start(tx: Tx, broadcast_id: int, now: datetime, at: datetime | None = None) -> str:
    """Start a draft (at `at`, or at its own time, else now) in the writer's transaction:
    STARTED, "missing", or the state that keeps it from starting."""
    b = store.get(tx.conn, broadcast_id)
    if b is None:
        return "missing"
    if b.state != "draft":
        return b.state
    if at is not None:
        b = replace(b, scheduled_at=at)
        store.change(tx.conn, b.id, state="scheduled", scheduled_at=at)
    else:
        store.change(tx.conn, b.id, state="scheduled")
    tx.enqueue(start_jobs(b, now), now.timestamp())
    return STARTED


def not_started(broadcast_id: int, outcome: str) -> CommandError:
    """Why `start` did not start a broadcast."""
    if outcome == "missing":
        return NotFound(f"there is no broadcast #{broadcast_id}")
    return Conflict(f"broadcast #{broadcast_id} is {outcome}; only a prepared one starts")


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
    broadcast_id = _number(ctx, args)
    found = await ctx.services.read(lambda conn: read_status(conn, broadcast_id))
    if found is None:
        raise NotFound(f"there is no broadcast #{broadcast_id}; `/broadcast list` shows them")
    first, *rest = status_text(ctx, found).split("\n")
    return Reply(title=first, lines=tuple(rest))


@dataclass(frozen=True, slots=True)
class Status:
    """A broadcast with the figures `/broadcast status` shows of it."""

    record: store.BroadcastRecord
    counts: dict[str, dict[str, int]]  # per platform, contacts per state (sent, failed, …)
    clicks: tuple[int, int]  # clicks on its links, and the recipients who clicked
    posts: dict[str, store.PostRecord]  # per publishing target done with

    @property
    def finished(self) -> bool:
        """Whether its figures are final."""
        return self.record.state in ("done", "cancelled")


def read_status(conn: Connection, broadcast_id: int) -> Status | None:
    """A broadcast's status figures, in one read."""
    b = store.get(conn, broadcast_id)
    if b is None:
        return None
    return Status(
        record=b,
        counts=store.per_platform(conn, broadcast_id),
        clicks=shortlinks.broadcast_clicks(conn, broadcast_id),
        posts=store.posts(conn, broadcast_id),
    )


def status_text(ctx: Context, found: Status) -> str:
    """The status in a few lines, as the progress message words it."""
    from bridge.broadcasts import allowed_rate, progress_text

    b, counts = found.record, found.counts
    limit_rate = allowed_rate(ctx.services.pipeline, counts or b.platforms)
    return progress_text(b, counts, found.finished, ctx.now, found.clicks, found.posts, limit_rate)


# What cancel, pause and resume do: the states they act on, and the state they leave.
TRANSITIONS = {
    "cancel": (("draft", "scheduled", "running", "paused"), "cancelled"),
    "pause": (("scheduled", "running"), "paused"),
    "resume": (("paused",), "running"),
}


async def change_state(ctx: Context, broadcast_id: int, action: str) -> int:
    """Cancel, pause or resume a broadcast; how many unsent messages a cancel stopped."""
    allowed, new = TRANSITIONS[action]

    def change(tx: Tx) -> tuple[str, int]:
        b = store.get(tx.conn, broadcast_id)
        if b is None:
            return "missing", 0
        if b.state not in allowed:
            return b.state, 0
        store.change(tx.conn, b.id, state=new)
        stopped = 0
        if new == "cancelled":
            low, high = broadcast_key_range(b.id)
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
        raise NotFound(f"there is no broadcast #{broadcast_id}")
    if outcome != "ok":
        raise Conflict(f"broadcast #{broadcast_id} is {outcome}")
    return stopped


async def _set_state(ctx: Context, args: list[str], action: str) -> Reply:
    broadcast_id = _number(ctx, args)
    stopped = await change_state(ctx, broadcast_id, action)
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
