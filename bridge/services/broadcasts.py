"""Broadcasts: newsletters to subscriber channels or whole messengers, prepared as a draft
with their audience, started (or scheduled) once confirmed, followed, cancelled, paused and
resumed."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from functools import partial
from typing import Any

from sqlalchemy.engine import Connection

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
from storage import Tx, shortlinks
from storage import broadcasts_store as store

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

    record: store.BroadcastRecord
    # Per platform: "to" → recipients, and each reason for skipping → how many it skips.
    counts: dict[str, dict[str, int]]
    sample: str  # the text as a made-up recipient, Anna Schmidt, reads it
    problems: list[tuple[str, str]]  # (target, why it cannot be published there)


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
        known = ", ".join("{" + p + "}" for p in PLACEHOLDERS)
        raise Invalid(f"unknown placeholder {{{unknown[0]}}}; known: {known}")
    if draft.scheduled is not None and draft.scheduled <= origin.now:
        raise Invalid("--at is in the past")
    if publish_to:
        _check_publishing(services, publish_to, own)

    def create(tx: Tx) -> int:
        return store.create(
            tx.conn,
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
            await services.write(lambda tx: store.change(tx.conn, broadcast_id, text=short))
    return broadcast_id


def _check_publishing(services: Services, targets: list[str], text: str) -> None:
    """Refuse publishing that cannot work: unknown or unconfigured targets, personal texts."""
    unknown = [t for t in targets if t not in publish.TARGETS]
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
        names = ", ".join("{" + n + "}" for n in used)
        raise Refused(
            f"A public post cannot be personal: the text uses {names}, which only each"
            " recipient's own copy can fill. Publish a text without placeholders, or leave"
            " out --publish"
        )


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def _publishing_problems(services: Services, b: store.BroadcastRecord) -> list[tuple[str, str]]:
    """(target, problem) for each target the broadcast cannot be posted on as it is."""
    configured = publish.labels(services.settings)
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


async def preview(services: Services, broadcast_id: int, now: datetime) -> Preview:
    """The audience of a broadcast after exclusions, as `/broadcast new` shows it."""
    b = await get(services, broadcast_id)
    counts = await services.read(lambda conn: store.preview(conn, b, now))
    sample = fill(b.text, values_for(SAMPLE_NAME, "+4915100000000", 1, "telegram"))
    return Preview(b, counts, sample, _publishing_problems(services, b))


# -- reading ----------------------------------------------------------------------------------


async def find(services: Services, broadcast_id: int) -> store.BroadcastRecord | None:
    """A broadcast by id."""
    return await services.read(lambda conn: store.get(conn, broadcast_id))


async def get(services: Services, broadcast_id: int) -> store.BroadcastRecord:
    """A broadcast by id, or NotFound."""
    found = await find(services, broadcast_id)
    if found is None:
        raise NotFound(f"there is no broadcast #{broadcast_id}; `/broadcast list` shows them")
    return found


async def latest(services: Services) -> list[tuple[store.BroadcastRecord, int]]:
    """The latest broadcasts, each with how many recipients it has handled."""
    found = await services.read(store.latest)
    handled = []
    for b in found:
        counts = await services.read(partial(store.counts, broadcast_id=b.id))
        handled.append((b, sum(counts.values())))
    return handled


async def page(
    services: Services, after: int | None, limit: int
) -> list[tuple[store.BroadcastRecord, int]]:
    """Broadcasts by id from after `after`, each with how many recipients it has handled."""

    def read(conn: Connection) -> list[tuple[store.BroadcastRecord, int]]:
        found = store.page(conn, after=after, limit=limit)
        handled = store.handled(conn, [b.id for b in found])
        return [(b, handled.get(b.id, 0)) for b in found]

    return await services.read(read)


def _status(conn: Connection, broadcast_id: int) -> Status | None:
    b = store.get(conn, broadcast_id)
    if b is None:
        return None
    return Status(
        record=b,
        counts=store.per_platform(conn, broadcast_id),
        clicks=shortlinks.broadcast_clicks(conn, broadcast_id),
        posts=store.posts(conn, broadcast_id),
    )


def status_in(tx: Tx, broadcast_id: int) -> Status | None:
    """A broadcast's status figures, read in the writer's transaction."""
    return _status(tx.conn, broadcast_id)


async def status(services: Services, broadcast_id: int) -> Status | None:
    """A broadcast's status figures, in one read."""
    return await services.read(lambda conn: _status(conn, broadcast_id))


def status_text(services: Services, found: Status, now: datetime) -> str:
    """The status in a few lines, as the progress message words it."""
    b, counts = found.record, found.counts
    limit_rate = allowed_rate(services.pipeline.connectors, counts or b.platforms)
    return progress_text(b, counts, found.finished, now, found.clicks, found.posts, limit_rate)


# -- starting and changing --------------------------------------------------------------------


def check_confirmable(services: Services, prepared: store.BroadcastRecord) -> None:
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


def not_started(broadcast_id: int, outcome: str) -> Refused:
    """Why `start` did not start a broadcast."""
    if outcome == "missing":
        return NotFound(f"there is no broadcast #{broadcast_id}")
    return Conflict(f"broadcast #{broadcast_id} is {outcome}; only a prepared one starts")


async def confirm(services: Services, broadcast_id: int, now: datetime) -> store.BroadcastRecord:
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
        b = store.get(tx.conn, broadcast_id)
        if b is None:
            return "missing", 0
        if b.state not in allowed:
            return b.state, 0
        store.change(tx.conn, b.id, state=new)
        stopped = 0
        if new == "cancelled":
            low, high = broadcast_key_range(b.id)
            stopped = store.cancel_pending(tx.conn, low, high, "the broadcast was cancelled")
        return "ok", stopped

    outcome, stopped = await services.write(change)
    if outcome == "missing":
        raise NotFound(f"there is no broadcast #{broadcast_id}")
    if outcome != "ok":
        raise Conflict(f"broadcast #{broadcast_id} is {outcome}")
    return stopped
