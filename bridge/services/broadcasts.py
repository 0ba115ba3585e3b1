"""Broadcasts: newsletters to subscriber channels or whole messengers, prepared as a draft
with their audience, started (or scheduled) once confirmed, followed, cancelled, paused and
resumed."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from bridge import publish
from bridge.broadcasts import (
    PLACEHOLDERS,
    allowed_rate,
    fill,
    placeholders,
    progress_text,
    start_jobs,
    unknown_placeholders,
    values_for,
)
from bridge.errors import Conflict, Invalid, NotFound, Refused
from bridge.jobs import broadcast_key_range
from bridge.links import ShortLinks
from bridge.services import Services
from bridge.types import SurfaceName
from storage import Tx
from storage.broadcasts_store import BroadcastRecord, PostRecord

STARTED = "started"
SAMPLE_NAME = "Anna Schmidt"
# What cancel, pause and resume do: the states they act on, and the state they leave.
TRANSITIONS = {
    "cancel": (("draft", "scheduled", "running", "paused"), "cancelled"),
    "pause": (("scheduled", "running"), "paused"),
    "resume": (("paused",), "running"),
}


@dataclass(frozen=True, slots=True)
class Origin:
    """Who prepares a broadcast, when, and where its progress is shown."""

    who: str
    now: datetime
    surface: SurfaceName
    channel: str | None = None


@dataclass(frozen=True, slots=True)
class Draft:
    """What a new broadcast says and whom it goes to (checked by `prepare`).

    `template` is `{"name", "language"}` (its `params` are set by `prepare`), `text` the
    newsletter's own text, which a template may do without."""

    channel_ids: list[int]
    platforms: list[str]
    text: str
    template: dict[str, Any] | None
    params: list[str]
    scheduled: datetime | None
    publish_to: list[str]


@dataclass(frozen=True, slots=True)
class Preview:
    """Who a broadcast would reach now, per platform, and how its text reads."""

    record: BroadcastRecord
    # Per platform: "to" → recipients, and each reason for skipping → how many it skips.
    counts: dict[str, dict[str, int]]
    sample: str  # the text as a made-up recipient, Anna Schmidt, reads it
    problems: list[tuple[str, str]]  # (target, why it cannot be published there)


@dataclass(frozen=True, slots=True)
class Status:
    """A broadcast with the figures `/broadcast status` shows of it."""

    record: BroadcastRecord
    counts: dict[str, dict[str, int]]  # per platform, contacts per state (sent, failed, …)
    clicks: tuple[int, int]  # clicks on its links, and the recipients who clicked
    posts: dict[str, PostRecord]  # per publishing target done with

    @property
    def finished(self) -> bool:
        """Whether its figures are final."""
        return self.record.state in ("done", "cancelled")


# -- preparing --------------------------------------------------------------------------------


async def prepare(services: Services, draft: Draft, origin: Origin) -> int:
    """Check and store a draft broadcast (its links made its short links); its id."""
    own = text = draft.text.strip()
    template, params = draft.template, draft.params
    publish_to = list(dict.fromkeys(draft.publish_to))
    if template is not None:
        template["params"] = params
        text = text or f"[template {template['name']}] " + " | ".join(params)
    if not text:
        raise Invalid("the newsletter needs a text (or a --template)")
    unknown = unknown_placeholders(" ".join([text, *params]))
    if unknown:
        known = ", ".join("{" + name + "}" for name in PLACEHOLDERS)
        raise Invalid(f"unknown placeholder {{{unknown[0]}}}; known: {known}")
    if draft.scheduled is not None and draft.scheduled <= origin.now:
        raise Invalid("--at is in the past")
    if publish_to:
        _check_publishing(services, publish_to, own)

    def create(tx: Tx) -> int:
        return tx.broadcasts.create(
            by=origin.who,
            at=origin.now,
            surface=origin.surface,
            channel=origin.channel,
            text=text,
            template=template,
            file_id=None,
            channel_ids=draft.channel_ids,
            platforms=draft.platforms,
            scheduled_at=draft.scheduled,
            publish=publish_to,
        )

    broadcast_id = await services.write(create)
    public = services.settings.bridge.public_url
    if public:
        # Links become the broadcast's short links now, so clicks can be counted.
        links = ShortLinks(services.db, public, writer=services.writer)
        short, codes = await links.rewrite(text, broadcast_id=broadcast_id, by=origin.who)
        if codes:
            await services.write(lambda tx: tx.broadcasts.change(broadcast_id, text=short))
    return broadcast_id


def _check_publishing(services: Services, targets: list[str], text: str) -> None:
    """Refuse publishing that cannot work: unknown or unconfigured targets, personal texts."""
    unknown = [target for target in targets if target not in publish.TARGETS]
    if unknown:
        raise Invalid(
            f"cannot publish to {unknown[0]}; --publish takes {', '.join(publish.TARGETS)}"
        )
    configured = publish.labels(services.settings)
    for target in targets:
        if target not in configured:
            raise Refused(_sentence(publish.not_configured(target)))
    if not text:
        raise Invalid("--publish needs a text of its own (a WhatsApp template is no post)")
    used = placeholders(text)
    if used:
        names = ", ".join("{" + name + "}" for name in used)
        raise Refused(
            f"A public post cannot be personal: the text uses {names}, which only each"
            " recipient's own copy can fill. Publish a text without placeholders, or leave"
            " out --publish"
        )


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def _publishing_problems(services: Services, broadcast: BroadcastRecord) -> list[tuple[str, str]]:
    """(target, problem) for each target the broadcast cannot be posted on as it is."""
    configured = publish.labels(services.settings)
    found: list[tuple[str, str]] = []
    for target in broadcast.publish:
        problem = (
            publish.problem(target, broadcast.text)
            if target in configured
            else publish.not_configured(target)
        )
        if problem is not None:
            found.append((target, problem))
    return found


async def preview(services: Services, broadcast_id: int, now: datetime) -> Preview:
    """The audience of a broadcast after exclusions, as `/broadcast new` shows it."""
    broadcast = await get(services, broadcast_id)
    counts = await services.read(lambda tx: tx.broadcasts.preview(broadcast, now))
    sample = fill(broadcast.text, values_for(SAMPLE_NAME, "+4915100000000", 1, "telegram"))
    return Preview(broadcast, counts, sample, _publishing_problems(services, broadcast))


# -- reading ----------------------------------------------------------------------------------


async def find(services: Services, broadcast_id: int) -> BroadcastRecord | None:
    """A broadcast by id."""
    return await services.read(lambda tx: tx.broadcasts.get(broadcast_id))


async def get(services: Services, broadcast_id: int) -> BroadcastRecord:
    """A broadcast by id, or NotFound."""
    found = await find(services, broadcast_id)
    if found is None:
        raise NotFound(f"there is no broadcast #{broadcast_id}; `/broadcast list` shows them")
    return found


async def latest(services: Services) -> list[tuple[BroadcastRecord, int]]:
    """The latest broadcasts, each with how many recipients it has handled."""

    def read(tx: Tx) -> list[tuple[BroadcastRecord, int]]:
        found = tx.broadcasts.latest()
        return [
            (broadcast, sum(tx.broadcasts.counts(broadcast.id).values())) for broadcast in found
        ]

    return await services.read(read)


async def page(
    services: Services, after: int | None, limit: int
) -> list[tuple[BroadcastRecord, int]]:
    """Broadcasts by id from after `after`, each with how many recipients it has handled."""

    def read(tx: Tx) -> list[tuple[BroadcastRecord, int]]:
        found = tx.broadcasts.page(after=after, limit=limit)
        handled = tx.broadcasts.handled([broadcast.id for broadcast in found])
        return [(broadcast, handled.get(broadcast.id, 0)) for broadcast in found]

    return await services.read(read)


def status_in(tx: Tx, broadcast_id: int) -> Status | None:
    """A broadcast's status figures, read in the given transaction."""
    broadcast = tx.broadcasts.get(broadcast_id)
    if broadcast is None:
        return None
    return Status(
        record=broadcast,
        counts=tx.broadcasts.per_platform(broadcast_id),
        clicks=tx.links.broadcast_clicks(broadcast_id),
        posts=tx.broadcasts.posts(broadcast_id),
    )


async def status(services: Services, broadcast_id: int) -> Status | None:
    """A broadcast's status figures, in one read."""
    return await services.read(lambda tx: status_in(tx, broadcast_id))


def status_text(services: Services, found: Status, now: datetime) -> str:
    """The status in a few lines, as the progress message words it."""
    broadcast, counts = found.record, found.counts
    limit_rate = allowed_rate(services.pipeline.connectors, counts or broadcast.platforms)
    return progress_text(
        broadcast, counts, found.finished, now, found.clicks, found.posts, limit_rate
    )


# -- starting and changing --------------------------------------------------------------------


def check_confirmable(services: Services, prepared: BroadcastRecord) -> None:
    """Refuse to start a draft that cannot be published where it says."""
    problems = _publishing_problems(services, prepared) if prepared.state == "draft" else []
    if problems:
        target, problem = problems[0]
        raise Refused(
            f"Broadcast #{prepared.id} is not sent: {problem}. Prepare it again with a text"
            f" that fits, or without {target} in --publish, and drop this one:"
            f" `/broadcast cancel {prepared.id}`"
        )


def start(tx: Tx, broadcast_id: int, now: datetime, at: datetime | None = None) -> str:
    """Start a draft (at `at`, or at its own time, else now) in the writer's transaction:
    STARTED, "missing", or the state that keeps it from starting."""
    broadcast = tx.broadcasts.get(broadcast_id)
    if broadcast is None:
        return "missing"
    if broadcast.state != "draft":
        return broadcast.state
    if at is not None:
        broadcast = replace(broadcast, scheduled_at=at)
        tx.broadcasts.change(broadcast.id, state="scheduled", scheduled_at=at)
    else:
        tx.broadcasts.change(broadcast.id, state="scheduled")
    tx.enqueue(start_jobs(broadcast, now), now.timestamp())
    return STARTED


def not_started(broadcast_id: int, outcome: str) -> Refused:
    """Why `start` did not start a broadcast."""
    if outcome == "missing":
        return NotFound(f"there is no broadcast #{broadcast_id}")
    return Conflict(f"broadcast #{broadcast_id} is {outcome}; only a prepared one starts")


async def confirm(services: Services, broadcast_id: int, now: datetime) -> BroadcastRecord:
    """Start a prepared broadcast (at its own time, else now); the broadcast as it is now."""
    check_confirmable(services, await get(services, broadcast_id))
    outcome = await services.write(lambda tx: start(tx, broadcast_id, now))
    if outcome != STARTED:
        raise not_started(broadcast_id, outcome)
    return await get(services, broadcast_id)


async def change_state(services: Services, broadcast_id: int, action: str) -> int:
    """Cancel, pause or resume a broadcast; how many unsent messages a cancel stopped."""
    allowed, new = TRANSITIONS[action]

    def change(tx: Tx) -> tuple[str, int]:
        broadcast = tx.broadcasts.get(broadcast_id)
        if broadcast is None:
            return "missing", 0
        if broadcast.state not in allowed:
            return broadcast.state, 0
        tx.broadcasts.change(broadcast.id, state=new)
        stopped = 0
        if new == "cancelled":
            low, high = broadcast_key_range(broadcast.id)
            stopped = tx.broadcasts.cancel_pending(low, high, "the broadcast was cancelled")
        return "ok", stopped

    outcome, stopped = await services.write(change)
    if outcome == "missing":
        raise NotFound(f"there is no broadcast #{broadcast_id}")
    if outcome != "ok":
        raise Conflict(f"broadcast #{broadcast_id} is {outcome}")
    return stopped
